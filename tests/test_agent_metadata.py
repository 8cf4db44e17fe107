"""Every parameter hacloud renders exists in the real agent's own metadata, and every cluster
option in the real Pacemaker daemons' metadata: a typo'd parameter is silently ignored at run
time, so only the agents themselves can vouch for the names."""

from __future__ import annotations

import itertools
import os
import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
from conftest import FENCING, VIPS, need, onprem_doc, render_doc
from tools import run

OCF_ROOT = Path("/usr/lib/ocf")
DAEMONS = ("pacemaker-schedulerd", "pacemaker-controld", "pacemaker-fenced")


def _names(xml_text: str) -> set[str]:
    return {p.get("name", "") for p in ET.fromstring(xml_text).iter("parameter")}


@cache
def agent_params(standard: str, provider: str | None, kind: str) -> frozenset[str]:
    if standard == "stonith":
        return frozenset(
            _names(run([kind, "-o", "metadata"]).stdout)
            | _names(run(["/usr/lib/pacemaker/pacemaker-fenced", "metadata"]).stdout)
        )
    script = OCF_ROOT / "resource.d" / str(provider) / kind
    env = {"OCF_ROOT": str(OCF_ROOT)}
    return frozenset(_names(run([str(script), "meta-data"], env=env).stdout))


@cache
def cluster_options() -> frozenset[str]:
    out: set[str] = set()
    for daemon in DAEMONS:
        out |= _names(run([f"/usr/lib/pacemaker/{daemon}", "metadata"]).stdout)
    return frozenset(out)


@pytest.mark.tools
@pytest.mark.parametrize(("fencing", "vip"), list(itertools.product(FENCING, VIPS)))
def test_rendered_params_exist_in_agent_metadata(fencing: str, vip: str) -> None:
    need(
        "/usr/lib/pacemaker/pacemaker-fenced", str(OCF_ROOT / "resource.d/heartbeat/IPaddr2"), "fence_ipmilan"
    )
    doc = onprem_doc(fencing, vip)
    doc["service"] = {
        "kind": "ocf",
        "agent": "ocf:heartbeat:Filesystem",
        "params": {"device": "/dev/sdz", "directory": "/mnt", "fstype": "ext4"},
    }
    _, bundle = render_doc(doc)
    cib = ET.fromstring(bundle.cib)
    for prim in cib.iter("primitive"):
        if prim.get("class") == "systemd":
            continue
        known = agent_params(prim.get("class", ""), prim.get("provider"), prim.get("type", ""))
        for nv in prim.iterfind("./instance_attributes/nvpair"):
            assert nv.get("name") in known, f"{prim.get('type')} has no parameter {nv.get('name')}"
    for nv in cib.iterfind("./configuration/crm_config/cluster_property_set/nvpair"):
        assert nv.get("name") in cluster_options(), nv.get("name")


@pytest.mark.tools
def test_metadata_check_can_fail() -> None:
    need("fence_ipmilan")
    assert "password_script" in agent_params("stonith", None, "fence_ipmilan")
    assert "pasword_script" not in agent_params("stonith", None, "fence_ipmilan")


@pytest.mark.tools
def test_fence_agent_reads_the_password_script(tmp_path: Path) -> None:
    """fence_ipmilan really runs password_script (so the password can stay out of the CIB):
    with a script that prints a marker, the agent's --password-script path is exercised
    without contacting any BMC (the ipmitool it calls is a stub that records its argv)."""
    need("fence_ipmilan")
    _, bundle = render_doc(onprem_doc("fence_ipmilan"))
    prim = next(p for p in ET.fromstring(bundle.cib).iter("primitive") if p.get("id") == "fence_node1")
    params = {nv.get("name"): nv.get("value") for nv in prim.iterfind("./instance_attributes/nvpair")}
    assert re.fullmatch(r"/bin/cat /etc/hacloud/fencing/node1\.secret", params["password_script"] or "")
    secret = tmp_path / "node1.secret"
    secret.write_text("s3cret-marker\n")
    stub = tmp_path / "ipmitool"
    log = tmp_path / "argv.txt"
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho 'Chassis Power is on'\n")
    stub.chmod(0o755)
    stdin = "\n".join(
        [
            "action=status",
            f"ip={params['ip']}",
            f"username={params['username']}",
            "lanplus=1",
            f"password_script=/bin/cat {secret}",
            f"ipmitool_path={stub}",
            "",
        ]
    )
    import subprocess

    proc = subprocess.run(
        ["fence_ipmilan"], input=stdin, capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-marker" in log.read_text()
