"""The deploy engine: read each node, then change only what differs, in a safe order.

Contracts:
- Every step re-reads the state it depends on right before acting, so a run that stopped
  anywhere (a broken connection, a killed process) converges when run again.
- With ``apply=False`` (``hacloud plan``) nothing is changed; the same steps report what they
  would do. A converged cluster yields no :class:`Change` at all.
- Data safety: DRBD metadata is created only on a disk with no metadata and no filesystem or
  partition signature, unless ``force``; a filesystem is made only on a brand-new device that
  Pacemaker does not manage yet; the full initial sync is skipped only when both sides carry
  brand-new metadata (nothing to keep).
- Fencing is never disabled: the CIB is applied as a diff (``crm_diff`` + ``cibadmin
  --patch``), in maintenance mode when resources change, and the run ends by checking that
  fencing is enabled and the devices and the service group are started.
"""

from __future__ import annotations

import re
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hacloud.errors import HacloudError
from hacloud.model import Inventory, RenderedFile
from hacloud.provider import NodeNeeds
from hacloud.remote import Connection, sha256_hex
from hacloud.render import Bundle
from hacloud.render.files import LINKS_SCRIPT
from hacloud.render.resources import volume_minor
from hacloud.spec import DemoService, IPaddr2Vip, Spec

STATE = "/var/lib/hacloud"
PACEMAKER_OWNED = {
    "dc-version",
    "cluster-infrastructure",
    "have-watchdog",
    "last-lrm-refresh",
    "cluster-name",
}
MANAGED_SECTIONS = ("resources", "constraints", "fencing-topology", "rsc_defaults", "op_defaults")
REQUIRED = (
    "drbdadm",
    "corosync",
    "pacemakerd",
    "cibadmin",
    "crm_mon",
    "crm_diff",
    "crm_attribute",
    "crm_resource",
    "fuser",
    "blkid",
    "wipefs",
    "python3",
    "curl",
)
PACKAGES = {
    "apt-get": "drbd-utils corosync pacemaker pacemaker-cli-utils resource-agents fence-agents "
    "ipmitool python3 curl xfsprogs e2fsprogs util-linux psmisc",
    "dnf": "drbd-utils corosync pacemaker resource-agents fence-agents-all python3 curl xfsprogs psmisc",
    "zypper": "drbd drbd-utils corosync pacemaker resource-agents fence-agents python3 curl xfsprogs psmisc",
}
INSTALL = {
    "apt-get": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends",
    "dnf": "dnf install -y -q",
    "zypper": "zypper --non-interactive install --no-recommends",
}


# Files earlier hacloud versions installed and this one replaced, with how to retire them:
# the demo ran as a systemd unit before it got its own OCF agent; a unit left running would
# keep the port and make the agent's start fail.
RETIRED_FILES = {
    "/etc/systemd/system/hacloud-demo.service": "systemctl stop hacloud-demo 2>/dev/null; "
    "rm -f /etc/systemd/system/hacloud-demo.service; systemctl daemon-reload",
}


@dataclass(frozen=True)
class Change:
    node: str  # "" for cluster-wide changes
    step: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.node}: " if self.node else "cluster: "
        return f"{where}{self.step}: {self.detail}"


@dataclass
class HostFacts:
    name: str
    os_id: str = ""
    family: str = ""
    package_manager: str = ""
    commands: set[str] = field(default_factory=set)
    pacemaker: str | None = None
    drbd: str | None = None
    sums: dict[str, str | None] = field(default_factory=dict)
    services: dict[str, tuple[str, str]] = field(default_factory=dict)


def facts_script(paths: list[str], commands: tuple[str, ...] = REQUIRED) -> str:
    q = " ".join(shlex.quote(p) for p in paths)
    cmds = " ".join(shlex.quote(c) for c in commands)
    return f"""
echo @os; (. /etc/os-release; echo "$ID ${{ID_LIKE:-}}")
echo @pm; for p in apt-get dnf zypper; do command -v $p >/dev/null 2>&1 && echo $p && break; done
echo @cmds; for c in {cmds}; do command -v $c >/dev/null 2>&1 && echo $c; done
echo @pacemaker; pacemakerd --version 2>/dev/null | head -1
echo @drbd; modprobe drbd 2>/dev/null; head -1 /proc/drbd 2>/dev/null
echo @sums; for f in {q}; do if [ -f "$f" ]; then sha256sum "$f"; else echo "- $f"; fi; done
echo @services; for s in corosync pacemaker; do \
  echo "$s $(systemctl is-enabled $s 2>/dev/null || true) $(systemctl is-active $s 2>/dev/null || true)"; done
echo @end
"""


def parse_facts(name: str, text: str) -> HostFacts:
    facts = HostFacts(name)
    section = ""
    for line in text.splitlines():
        if line.startswith("@"):
            section = line[1:]
            continue
        if not line.strip():
            continue
        if section == "os":
            facts.os_id = line.split()[0]
            words = line.split()
            facts.family = (
                "debian"
                if {"debian", "ubuntu"} & set(words)
                else "suse"
                if any("suse" in w for w in words)
                else "rhel"
            )
        elif section == "pm":
            facts.package_manager = line.strip()
        elif section == "cmds":
            facts.commands.add(line.strip())
        elif section == "pacemaker":
            m = re.search(r"(\d+\.\d+\.\d+)", line)
            facts.pacemaker = m.group(1) if m else None
        elif section == "drbd":
            m = re.search(r"version: (\d+)\.(\d+)", line)
            if m:
                facts.drbd = "9" if m.group(1) == "9" else f"{m.group(1)}.{m.group(2)}"
        elif section == "sums":
            digest, _, path = line.partition(" ")
            facts.sums[path.strip()] = None if digest == "-" else digest
        elif section == "services":
            parts = line.split()
            if len(parts) == 3:
                facts.services[parts[0]] = (parts[1], parts[2])
    return facts


def gather(conn: Connection, paths: list[str], commands: tuple[str, ...] = REQUIRED) -> HostFacts:
    return parse_facts(conn.endpoint.name, conn.run(facts_script(paths, commands), timeout=60).stdout)


def _parallel(fn: Callable[[str], Any], names: list[str]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return list(pool.map(fn, names))


# ---------------------------------------------------------------- cluster state


def crm_mon(conn: Connection) -> ET.Element | None:
    result = conn.run("crm_mon -1 --output-as=xml 2>/dev/null", check=False, timeout=60)
    if result.rc != 0 or "<pacemaker-result" not in result.stdout:
        return None
    try:
        return ET.fromstring(result.stdout)
    except ET.ParseError:
        return None


def fencing_enabled(mon: ET.Element) -> bool:
    """Pacemaker's effective fencing switch (defaults included) from crm_mon's summary."""
    options = mon.find("./summary/cluster_options")
    if options is None:
        return False
    value = options.get("stonith-enabled", options.get("fencing-enabled", "false"))
    return value.lower() == "true"


def online_nodes(mon: ET.Element) -> list[str]:
    return [n.get("name", "") for n in mon.iterfind("./nodes/node") if n.get("online") == "true"]


def resource_nodes(mon: ET.Element, rid: str) -> list[tuple[str, str]]:
    """[(role, node)] for a resource id (a primitive, or each member of a group/clone)."""
    out = []
    for res in mon.iter("resource"):
        if res.get("id") == rid or res.get("id", "").split(":")[0] == rid:
            for node in res.iter("node"):
                out.append((res.get("role", ""), node.get("name", "")))
    return out


def merge_cib(live: str, rendered: str) -> ET.Element:
    """The CIB hacloud wants: the live one with hacloud's configuration sections and cluster
    options, keeping what Pacemaker itself maintains (nodes, dc-version, ...)."""
    live_root = ET.fromstring(live)
    want = ET.fromstring(rendered)
    result = deepcopy(live_root)
    cfg = result.find("configuration")
    want_cfg = want.find("configuration")
    if cfg is None or want_cfg is None:
        raise HacloudError("the live CIB has no configuration section", "check pacemaker on the nodes")
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


# ---------------------------------------------------------------- the engine


class Engine:
    def __init__(
        self,
        spec: Spec,
        inventory: Inventory,
        bundle: Bundle,
        conns: dict[str, Connection],
        progress: Callable[[str], None],
        *,
        apply: bool,
        force: bool = False,
        needs: NodeNeeds | None = None,
    ) -> None:
        self.needs = needs or NodeNeeds()
        #: the commands the nodes must have: the core's and the provider's agents'
        self.commands = (*REQUIRED, *self.needs.commands)
        self.spec = spec
        self.inventory = inventory
        self.bundle = bundle
        self.conns = conns
        self.progress = progress
        self.apply = apply
        self.force = force
        self.names = [n.name for n in inventory.nodes]
        self.changes: list[Change] = []
        self.facts: dict[str, HostFacts] = {}

    def change(self, node: str, step: str, detail: str) -> None:
        c = Change(node, step, detail)
        self.changes.append(c)
        self.progress(("" if self.apply else "would: ") + str(c))

    def run_all(self) -> list[Change]:
        self.read_facts()
        self.packages()
        changed_files = self.files()
        self.drbd(changed_files)
        self.cluster_services(changed_files)
        self.provider_checks()
        if self.apply or self._cluster_running():
            self.cib()
        else:
            self.change("", "cib", "apply the whole configuration once the cluster runs")
        if self.apply:
            if any(changed_files.values()):
                self.clear_stale_failures()
            self.wait_healthy()
        return self.changes

    def clear_stale_failures(self) -> None:
        """After `up` replaced files the resources read (a fence password, an agent), failures
        recorded under the old files would keep a resource stopped (a fence device that failed
        to start stays down until cleaned up): clear them once so Pacemaker retries with what
        was just installed. A failure that persists is recorded again and reported by the
        health wait."""
        mon = crm_mon(self.conns[self.names[0]])
        failed = [f.get("op_key", "") for f in mon.iter("failure")] if mon is not None else []
        if failed:
            self.progress(f"clearing failures recorded before this run: {', '.join(sorted(failed))}")
            self.conns[self.names[0]].run("crm_resource --cleanup >/dev/null", check=False, timeout=120)

    # -------------------------------------------------------------- facts and packages

    def paths(self, node: str) -> list[str]:
        return [f.path for f in self.bundle.files[node]] + list(RETIRED_FILES)

    def read_facts(self) -> None:
        results = _parallel(lambda n: gather(self.conns[n], self.paths(n), self.commands), self.names)
        self.facts = dict(zip(self.names, results, strict=True))

    def packages(self) -> None:
        for name in self.names:
            facts = self.facts[name]
            missing = [c for c in self.commands if c not in facts.commands]
            if not missing:
                continue
            pm = facts.package_manager
            if pm not in PACKAGES:
                raise HacloudError(
                    f"{name}: missing {', '.join(missing)} and no apt-get, dnf or zypper",
                    "install DRBD utils, corosync, pacemaker and the agents by hand",
                )
            packages = " ".join(p for p in (PACKAGES[pm], self.needs.packages.get(pm, "")) if p)
            self.change(name, "packages", f"install {packages} (missing {', '.join(missing)})")
            if self.apply:
                if pm == "apt-get":
                    self.conns[name].run("apt-get update -q", timeout=600)
                self.conns[name].run(f"{INSTALL[pm]} {packages}", timeout=1800)
        if self.apply and any(c.step == "packages" for c in self.changes):
            self.read_facts()

    def provider_checks(self) -> None:
        """The provider's read-only node checks (IMDS, cloud API reach, agent listing), before
        the CIB that enables fencing goes in: a fence agent that cannot work must stop `up`."""
        for check in self.needs.checks:
            for name in self.names:
                res = self.conns[name].run(check.command, check=False, timeout=120)
                if res.rc != 0:
                    detail = " / ".join((res.stdout + res.stderr).strip().splitlines()[-3:]) or f"rc {res.rc}"
                    raise HacloudError(
                        f"{name}: check {check.code} failed: {check.what} ({detail})",
                        check.remedy,
                    )

    # -------------------------------------------------------------- files

    def files(self) -> dict[str, set[str]]:
        """Upload every file whose checksum differs; returns node -> changed paths."""
        changed: dict[str, set[str]] = {n: set() for n in self.names}
        for name in self.names:
            for path, retire in RETIRED_FILES.items():
                if self.facts[name].sums.get(path):
                    self.change(name, "file", f"retire {path} (replaced in this hacloud version)")
                    if self.apply:
                        self.conns[name].run(retire)
            for f in self.bundle.files[name]:
                if self.facts[name].sums.get(f.path) != sha256_hex(f.content):
                    changed[name].add(f.path)
                    what = "(secret, content not shown)" if f.secret else f"{len(f.content)} bytes"
                    self.change(name, "file", f"write {f.path} {what}")

        def upload(name: str) -> None:
            by_path: dict[str, RenderedFile] = {f.path: f for f in self.bundle.files[name]}
            for path in sorted(changed[name]):
                f = by_path[path]
                self.conns[name].put(f.path, f.content, f.mode)
            if any(p.startswith("/etc/systemd/") for p in changed[name]):
                self.conns[name].run("systemctl daemon-reload")
            if any(p.startswith("/etc/sysctl.d/") for p in changed[name]):
                self.conns[name].run("sysctl --system >/dev/null")
            if LINKS_SCRIPT in changed[name]:
                # corosync runs it before it starts; a running corosync reloads the new link
                # right after the files, so the address must be up now.
                self.conns[name].run(LINKS_SCRIPT)

        if self.apply:
            _parallel(upload, self.names)
        return changed

    # -------------------------------------------------------------- DRBD

    def _managed_by_pacemaker(self, resource: str) -> bool:
        result = self.conns[self.names[0]].run(
            f'cibadmin -Q -o resources 2>/dev/null | grep -c \'drbd_resource" value="{resource}"\'',
            check=False,
        )
        return result.stdout.strip() not in ("", "0")

    def drbd(self, changed_files: dict[str, set[str]]) -> None:
        for index, vol in enumerate(self.spec.volumes):
            self._drbd_volume(index, vol.name, vol.filesystem, vol.mount_point, changed_files)

    def _pacemaker_active(self, name: str) -> bool:
        return self.facts[name].services.get("pacemaker", ("", ""))[1] == "active"

    def _state(self, name: str, res: str) -> dict[str, str]:
        conn = self.conns[name]
        for _ in range(30):
            role = conn.run(f"drbdadm role {res} 2>/dev/null", check=False)
            if role.rc == 0 and role.stdout.strip():
                dstate = conn.run(f"drbdadm dstate {res}", check=False).stdout.strip()
                cstate = conn.run(f"drbdadm cstate {res}", check=False).stdout.strip()
                return {
                    "up": "yes",
                    "md": "yes",
                    "role": role.stdout.strip(),
                    "dstate": dstate,
                    "cstate": cstate,
                }
            md = conn.run(f"drbdadm dump-md {res} 2>&1 >/dev/null", check=False)
            if "busy" not in md.stdout:
                return {"up": "no", "md": "yes" if md.rc == 0 else "no"}
            # The disk is held open: right after a boot Pacemaker may be attaching it just now.
            time.sleep(1)
        raise HacloudError(
            f"{name}: the disk of DRBD resource {res} is in use but the resource is not up",
            "find what holds the disk (`fuser -v` on it, mounts) and stop it; hacloud will not touch it",
        )

    def _drbd_volume(
        self, index: int, res: str, fstype: str, mount: str, changed_files: dict[str, set[str]]
    ) -> None:
        states = dict(zip(self.names, _parallel(lambda n: self._state(n, res), self.names), strict=True))
        fresh: set[str] = set()
        for name in self.names:
            disk = self.inventory.node(name).volumes[res]
            if states[name]["md"] == "yes":
                continue
            conn = self.conns[name]
            exists = conn.run(f"test -b {shlex.quote(disk)}", check=False)
            if exists.rc != 0:
                raise HacloudError(
                    f"{name}: {disk} (volume {res}) is not a block device",
                    "name the data disk's stable path in nodes[].volumes",
                )
            sigs = conn.run(
                f"wipefs --no-act --noheadings --output TYPE {shlex.quote(disk)} 2>/dev/null; "
                f"lsblk -nro TYPE {shlex.quote(disk)} | grep -c part || true",
                check=False,
            )
            lines = sigs.stdout.split()
            found = [t for t in lines[:-1] if t]
            parts = int(lines[-1]) if lines and lines[-1].isdigit() else 0
            if "drbd" in found:
                # DRBD metadata is there (dump-md can fail while a booting node loads the module
                # or Pacemaker attaches the disk). Never re-create it, not even with --force:
                # that would throw away the data and the replication history.
                states[name]["md"] = "yes"
                continue
            if (found or parts) and not self.force:
                what = ", ".join(found) or f"{parts} partition(s)"
                raise HacloudError(
                    f"{name}: {disk} already holds {what}; hacloud will not put DRBD metadata over it",
                    "if that data may be destroyed, run again with --force; otherwise name an empty "
                    "disk for this node in nodes[].volumes",
                )
            self.change(
                name,
                "drbd",
                f"create metadata for {res} on {disk}"
                + (f" (--force: wiping {', '.join(found)})" if found else ""),
            )
            if self.apply:
                if found or parts:
                    conn.run(f"wipefs -a {shlex.quote(disk)}")
                conn.run(f"drbdadm -- --force create-md {res}")
                fresh.add(name)
        managed = self._managed_by_pacemaker(res)
        for name in self.names:
            if states[name]["up"] == "no" and managed and self._pacemaker_active(name):
                continue  # Pacemaker starts it (a node that just booted); two starters would collide
            if states[name]["up"] == "no":
                self.change(name, "drbd", f"bring {res} up")
                if self.apply:
                    self.conns[name].run(f"drbdadm up {res}")
            elif (
                f"/etc/drbd.d/{res}.res" in changed_files[name]
                or "/etc/drbd.d/global_common.conf" in changed_files[name]
            ):
                self.change(name, "drbd", f"adjust {res} to the new configuration")
                if self.apply:
                    self.conns[name].run(f"drbdadm adjust {res}")
        if not self.apply or managed:
            return
        self._initialise(res, index, fstype, mount, fresh)

    def _initialise(self, res: str, index: int, fstype: str, mount: str, fresh: set[str]) -> None:
        first = self.names[0]
        conn = self.conns[first]
        deadline = time.monotonic() + 60
        while True:
            states = {n: self._state(n, res) for n in self.names}
            # Connected alone is not enough: right after the handshake the peer's disk state
            # may still read DUnknown, and deciding on that would skip the brand-new check.
            if all(
                s.get("cstate") == "Connected" and "DUnknown" not in s.get("dstate", "DUnknown")
                for s in states.values()
            ):
                break
            if time.monotonic() > deadline:
                raise HacloudError(
                    f"DRBD {res} did not connect: {states}",
                    "check that the nodes reach each other on the replication address and port (firewall)",
                )
            time.sleep(1)
        disks = {s["dstate"] for s in states.values()}
        if disks == {"Inconsistent/Inconsistent"}:
            gis = [self.conns[n].run(f"drbdadm get-gi {res}").stdout.strip() for n in self.names]
            if not all(g.startswith("0000000000000004:") for g in gis):
                raise HacloudError(
                    f"DRBD {res} is Inconsistent on both nodes but not brand-new ({gis})",
                    "inspect it with `drbdadm status`; hacloud will not guess which side to keep",
                )
            # Both sides carry brand-new metadata: nothing to sync (DRBD UG, MS-NFS).
            self.change(first, "drbd", f"skip the initial sync of brand-new {res} (clear-bitmap)")
            clear = (
                f"drbdadm -- --clear-bitmap new-current-uuid {res}"
                if self.bundle.targets.drbd == "8.4"
                else f"drbdadm new-current-uuid --clear-bitmap {res}/0"
            )
            conn.run(clear)
            self._wait_dstate(res, "UpToDate/UpToDate")
        device = f"/dev/drbd{volume_minor(self.spec, index)}"
        disk = self.inventory.node(first).volumes[res]
        # Every signature on the backing disk: with internal metadata a used disk carries the
        # filesystem at the start and DRBD's at the end. (`blkid -p` answers "ambivalent" with
        # empty output for two signatures: read as "no filesystem", that meant mkfs over data
        # when a drop-in `down` had left the disk and a later `up` found no CIB.)
        probe = conn.run(f"wipefs --no-act --noheadings --output TYPE {shlex.quote(disk)}", check=False)
        if probe.rc != 0:
            why = probe.stderr.strip() or probe.stdout.strip()
            raise HacloudError(
                f"{first}: cannot read the signatures on {disk}: {why}",
                "check the disk; hacloud makes no filesystem on a disk it cannot read",
            )
        has_fs = bool({t for t in probe.stdout.split() if t} - {"drbd"})
        if not has_fs:
            self.change(first, "drbd", f"make a {fstype} filesystem on {res} ({device})")
            # ext4: initialise inode tables and journal now. Lazy init would write across the
            # whole disk in the background for minutes, and a primary that dies meanwhile has
            # every extent in DRBD's activity log: a full resync instead of a few MiB.
            mkfs = (
                f"mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 {device}"
                if fstype == "ext4"
                else f"mkfs.{fstype} -q -f {device}"
            )
            conn.run(
                f"drbdadm primary {res} && {mkfs}; rc=$?; drbdadm secondary {res}; exit $rc", timeout=600
            )
        for name in self.names:
            self.conns[name].run(f"mkdir -p {shlex.quote(mount)}")

    def _wait_dstate(self, res: str, want: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                self.conns[n].run(f"drbdadm dstate {res}", check=False).stdout.strip() == want
                for n in self.names
            ):
                return
            time.sleep(1)
        raise HacloudError(f"DRBD {res} did not reach {want}", "inspect it with `drbdadm status`")

    # -------------------------------------------------------------- corosync, pacemaker

    def _cluster_running(self) -> bool:
        return all(self.facts[n].services.get("pacemaker", ("", ""))[1] == "active" for n in self.names)

    def cluster_services(self, changed_files: dict[str, set[str]]) -> None:
        corosync_changed = [
            n
            for n in self.names
            if "/etc/corosync/corosync.conf" in changed_files[n]
            or "/etc/corosync/authkey" in changed_files[n]
        ]
        for service in ("corosync", "pacemaker"):
            to_start = [n for n in self.names if self.facts[n].services.get(service, ("", ""))[1] != "active"]
            to_enable = [
                n for n in self.names if self.facts[n].services.get(service, ("", ""))[0] != "enabled"
            ]
            for n in sorted(set(to_start) | set(to_enable)):
                self.change(n, service, "enable and start")
            if service == "corosync" and corosync_changed and not to_start:
                self.change("", "corosync", "reload the new configuration (corosync-cfgtool -R)")
                if self.apply:
                    self.conns[self.names[0]].run("corosync-cfgtool -R")
            if self.apply and (to_start or to_enable):
                # Both at once: with two_node/wait_for_all each waits for its peer once.
                command = f"systemctl enable {service} && systemctl start {service}"
                _parallel(partial(self._run_on, command=command), sorted(set(to_start) | set(to_enable)))
        if self.apply:
            self._wait(
                lambda mon: sorted(online_nodes(mon)) == sorted(self.names),
                "both nodes online in the cluster",
                240,
            )

    def _run_on(self, name: str, *, command: str) -> None:
        self.conns[name].run(command, timeout=180)

    def _wait(self, ok: Callable[[ET.Element], bool], what: str, timeout: float) -> ET.Element:
        deadline = time.monotonic() + timeout
        last: ET.Element | None = None
        while time.monotonic() < deadline:
            for name in self.names:
                try:
                    last = crm_mon(self.conns[name])
                except HacloudError:
                    last = None
                if last is not None:
                    break
            if last is not None and ok(last):
                return last
            time.sleep(2)
        failures = [
            f"{f.get('op_key')} on {f.get('node')}: {f.get('exitreason') or f.get('exitstatus')}"
            for f in (last.iter("failure") if last is not None else [])
        ]
        detail = "; ".join(failures) if failures else "no failed action recorded"
        raise HacloudError(
            f"timed out waiting for {what} ({detail})",
            "inspect the cluster with `hacloud status` and the node's /var/log/pacemaker/pacemaker.log; "
            "then run `hacloud up` again",
        )

    # -------------------------------------------------------------- CIB

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
        resources_change = any(d in ("resources", "constraints", "fencing-topology") for d in diffs)
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
            )
        if resources_change:
            conn.run("crm_attribute -t crm_config -n maintenance-mode -v true")
        try:
            conn.run(f"cibadmin --patch --xml-file {STATE}/cib.patch")
        finally:
            if resources_change:
                conn.run("crm_attribute -t crm_config -n maintenance-mode -D")

    # -------------------------------------------------------------- health

    def wait_healthy(self, timeout: float = 300) -> None:
        devices = [d.primitive.id for d in self.bundle.fence_devices]
        clones = [f"drbd_{v.name}" for v in self.spec.volumes]

        def healthy(mon: ET.Element) -> bool:
            started = all(any(role == "Started" for role, _ in resource_nodes(mon, d)) for d in devices)
            promoted = all(
                len([r for r, _ in resource_nodes(mon, c) if r in ("Promoted", "Master")]) == 1
                for c in clones
            )
            fs = resource_nodes(mon, f"fs_{self.spec.volumes[0].name}")
            return started and promoted and bool(fs) and fs[0][0] == "Started"

        self.progress("waiting for fencing devices, DRBD and the service group to start")
        mon = self._wait(healthy, "fencing devices and the service group to start", timeout)
        if not fencing_enabled(mon):
            raise HacloudError(
                "fencing is not enabled on the cluster",
                "never run a DRBD pair without fencing: run `hacloud up` again",
            )
        self.service_check(mon)

    def service_node(self, mon: ET.Element) -> str | None:
        fs = resource_nodes(mon, f"fs_{self.spec.volumes[0].name}")
        return fs[0][1] if fs else None

    def service_check(self, mon: ET.Element, timeout: float = 60) -> str | None:
        """For the demo service on an IPaddr2 VIP: wait until /health answers on the VIP."""
        if not (isinstance(self.spec.service, DemoService) and isinstance(self.spec.vip, IPaddr2Vip)):
            return None
        url = f"http://{self.spec.vip.address}:{self.spec.service.port}/health"
        node = self.service_node(mon) or self.names[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.conns[node].run(f"curl -fsS --max-time 3 {url}", check=False)
            if result.ok:
                return result.stdout
            time.sleep(1)
        raise HacloudError(
            f"the service does not answer on {url}",
            "see `hacloud status` and the service's journal on the active node",
        )
