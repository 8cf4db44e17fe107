"""Deploy-engine pieces that need no lab: facts parsing and the CIB merge/diff, checked with
Pacemaker's own crm_simulate/crm_diff on a CIB that Pacemaker produced."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import need, onprem_doc, render_doc
from tools import run, with_quorum

from hacloud.deploy import cib_differences, merge_cib, parse_facts, without_status

FACTS = """@os
debian
@pm
apt-get
@cmds
drbdadm
corosync
@pacemaker
Pacemaker 2.1.5
@drbd
version: 8.4.11 (api:1/proto:86-101)
@sums
0a1b /etc/corosync/corosync.conf
- /etc/drbd.d/r0.res
@services
corosync enabled active
pacemaker disabled inactive
@end
"""


def test_parse_facts() -> None:
    f = parse_facts("node1", FACTS)
    assert (f.family, f.package_manager, f.pacemaker, f.drbd) == ("debian", "apt-get", "2.1.5", "8.4")
    assert f.sums == {"/etc/corosync/corosync.conf": "0a1b", "/etc/drbd.d/r0.res": None}
    assert f.services == {"corosync": ("enabled", "active"), "pacemaker": ("disabled", "inactive")}
    assert {"drbdadm", "corosync"} == f.commands
    rhel = parse_facts("n", "@os\nrocky rhel centos fedora\n@drbd\nversion: 9.2.8 (api:2/proto:86-122)\n")
    assert (rhel.family, rhel.drbd) == ("rhel", "9")


def _live_cib(cib: str, tmp: Path) -> str:
    """A CIB as a running cluster has it: status from crm_simulate, plus what Pacemaker adds."""
    (tmp / "in.xml").write_text(with_quorum(cib))
    run(
        [
            "crm_simulate",
            "-x",
            str(tmp / "in.xml"),
            "-u",
            "node1",
            "-u",
            "node2",
            "-S",
            "-O",
            str(tmp / "live.xml"),
        ]
    )
    root = ET.parse(tmp / "live.xml").getroot()
    props = root.find("./configuration/crm_config/cluster_property_set")
    assert props is not None
    ET.SubElement(props, "nvpair", id="cib-bootstrap-options-dc-version", name="dc-version", value="2.1.5")
    return ET.tostring(root, encoding="unicode")


@pytest.mark.tools
def test_merge_keeps_pacemaker_state_and_diff_is_empty_when_converged(tmp_path: Path) -> None:
    need("crm_simulate", "crm_diff")
    _, bundle = render_doc(onprem_doc())
    live = _live_cib(bundle.cib, tmp_path)
    desired = merge_cib(live, bundle.cib)
    assert desired.find("status") is not None  # merge never drops node state
    assert desired.find(".//nvpair[@name='dc-version']") is not None
    assert cib_differences(live, desired) == []

    doc = onprem_doc()
    doc["overrides"] = {"pacemaker.resource_stickiness": 7}
    _, changed = render_doc(doc)
    desired2 = merge_cib(live, changed.cib)
    assert cib_differences(live, desired2) == ["rsc_defaults"]
    # Pacemaker's crm_diff agrees, and the patch hacloud applies never touches status.
    (tmp_path / "a.xml").write_text(ET.tostring(without_status(ET.fromstring(live)), encoding="unicode"))
    (tmp_path / "b.xml").write_text(ET.tostring(without_status(desired2), encoding="unicode"))
    proc = subprocess.run(
        ["crm_diff", "--no-version", "-o", str(tmp_path / "a.xml"), "-n", str(tmp_path / "b.xml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "resource-stickiness" in proc.stdout and "/cib/status" not in proc.stdout
    assert 'value="7"' in proc.stdout
