"""The CIB step: hacloud's configuration sections merged into the live CIB and applied as a diff.

Contracts: :func:`merge_cib` keeps what Pacemaker maintains itself (nodes, status, dc-version
and the other PACEMAKER_OWNED options) and replaces only MANAGED_SECTIONS and the bootstrap
options. The live CIB is never replaced: ``crm_diff`` between the live and the desired
configuration (both without status) gives the patch, and a patch that would touch
``/cib/status`` is refused before anything is applied (it would erase node state and make
Pacemaker fence the nodes as unclean). When resources, constraints or the fencing topology
change, the cluster is in maintenance mode while the patch goes in, and maintenance mode is
cleared afterwards even when the patch fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from copy import deepcopy

from hacloud.deploy.step import EngineBase
from hacloud.errors import HacloudError

STATE = "/var/lib/hacloud"
PACEMAKER_OWNED = {
    "dc-version",
    "cluster-infrastructure",
    "have-watchdog",
    "last-lrm-refresh",
    "cluster-name",
}
MANAGED_SECTIONS = ("resources", "constraints", "fencing-topology", "rsc_defaults", "op_defaults")


def merge_cib(live: str, rendered: str) -> ET.Element:
    """The CIB hacloud wants: the live one with hacloud's configuration sections and cluster
    options, keeping what Pacemaker itself maintains (nodes, dc-version, ...)."""
    live_root = ET.fromstring(live)
    want = ET.fromstring(rendered)
    result = deepcopy(live_root)
    cfg = result.find("configuration")
    want_cfg = want.find("configuration")
    if cfg is None or want_cfg is None:
        raise HacloudError(
            "the live CIB has no configuration section", "check pacemaker on the nodes", code="HAC415"
        )
    for name in MANAGED_SECTIONS:
        old = cfg.find(name)
        new = want_cfg.find(name)
        index = list(cfg).index(old) if old is not None else len(cfg)
        if old is not None:
            cfg.remove(old)
        if new is not None:
            cfg.insert(index, deepcopy(new))
    crm_config = cfg.find("crm_config")
    want_props = want_cfg.find("./crm_config/cluster_property_set[@id='cib-bootstrap-options']")
    if crm_config is not None and want_props is not None:
        old_props = crm_config.find("./cluster_property_set[@id='cib-bootstrap-options']")
        merged = deepcopy(want_props)
        wanted = {nv.get("name") for nv in merged}
        if old_props is not None:
            for nv in old_props:
                if nv.get("name") in PACEMAKER_OWNED and nv.get("name") not in wanted:
                    merged.append(deepcopy(nv))
            crm_config.remove(old_props)
        crm_config.insert(0, merged)
    return result


def without_status(root: ET.Element) -> ET.Element:
    """A copy without the status section. Both sides of a diff must lack it: a patch that
    touched status would erase node state and make Pacemaker fence the nodes as unclean."""
    copy = deepcopy(root)
    status = copy.find("status")
    if status is not None:
        copy.remove(status)
    return copy


def _canonical(elem: ET.Element | None) -> str:
    if elem is None:
        return ""
    return ET.canonicalize(ET.tostring(elem, encoding="unicode"), strip_text=True)


def cib_differences(live: str, desired: ET.Element) -> list[str]:
    live_cfg = ET.fromstring(live).find("configuration")
    want_cfg = desired.find("configuration")
    out = []
    for name in ("crm_config", *MANAGED_SECTIONS):
        a = live_cfg.find(name) if live_cfg is not None else None
        b = want_cfg.find(name) if want_cfg is not None else None
        if _canonical(a) != _canonical(b):
            out.append(name)
    return out


#: the sections whose change moves or restarts resources: applied in maintenance mode
RESOURCE_SECTIONS = ("resources", "constraints", "fencing-topology")


class CibSteps(EngineBase):
    """The CIB step (see the module doc)."""

    def cib(self) -> None:
        conn = self.conns[self.names[0]]
        live = conn.run("cibadmin -Q", timeout=60).stdout
        desired = merge_cib(live, self.bundle.cib)
        diffs = cib_differences(live, desired)
        if not diffs:
            return
        self.change("", "cib", f"update {', '.join(diffs)}")
        if not self.apply:
            return
        resources_change = any(d in RESOURCE_SECTIONS for d in diffs)
        conn.run(f"mkdir -p {STATE} && chmod 700 {STATE}")
        live_cfg = ET.tostring(without_status(ET.fromstring(live)), encoding="unicode")
        conn.put(f"{STATE}/cib-live.xml", live_cfg.encode(), 0o600)
        conn.put(
            f"{STATE}/cib-desired.xml",
            ET.tostring(without_status(desired), encoding="unicode").encode(),
            0o600,
        )
        conn.run(
            f"crm_diff --no-version -o {STATE}/cib-live.xml -n {STATE}/cib-desired.xml "
            f"> {STATE}/cib.patch; test $? -le 1"
        )
        patch = conn.run(f"cat {STATE}/cib.patch").stdout
        if "/cib/status" in patch:
            raise HacloudError(
                "refusing a CIB patch that touches the status section",
                "this is a bug in hacloud; nothing was applied",
                code="HAC416",
            )
        if resources_change:
            conn.run("crm_attribute -t crm_config -n maintenance-mode -v true")
        try:
            conn.run(f"cibadmin --patch --xml-file {STATE}/cib.patch")
        finally:
            if resources_change:
                conn.run("crm_attribute -t crm_config -n maintenance-mode -D")
