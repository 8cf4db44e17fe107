"""Deploy-engine pieces that need no lab: facts parsing and the CIB merge/diff, checked with
Pacemaker's own crm_simulate/crm_diff on a CIB that Pacemaker produced."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import need, onprem_doc, render_doc
from tools import run, with_quorum

from hacloud.deploy.cib import cib_differences, merge_cib, without_status
from hacloud.deploy.facts import parse_facts

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


class _Recorder:
    """Stands in for a node's SSH connection in the file step (the real one would write to this
    machine's /etc): records what is uploaded and run, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def put(self, path: str, content: bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        self.log.append(f"put {path}")

    def run(self, command: str, **_: object) -> None:
        self.log.append(f"run {command}")


def test_a_changed_links_script_runs_right_after_the_upload() -> None:
    """A running corosync reloads a new two-link corosync.conf right after the files step, so the
    link-1 address must be up by then: deploy runs the links script once it is uploaded, and only
    when it changed."""
    import dataclasses

    import yaml
    from conftest import FIXED_SECRETS, REPO, spec_of

    from hacloud.deploy.engine import Engine
    from hacloud.deploy.facts import HostFacts
    from hacloud.deploy.remote import sha256_hex
    from hacloud.provision.provider import get_provider
    from hacloud.render import effective_profile, render_all
    from hacloud.render.files import LINKS_SCRIPT
    from hacloud.spec.profiles import load_profile

    spec = spec_of(yaml.safe_load((REPO / "templates/init/aws.yaml").read_text()))
    inventory = get_provider("aws").planned_inventory(spec)
    bundle = render_all(spec, inventory, effective_profile(spec, load_profile("aws")), FIXED_SECRETS)
    conns = {n.name: _Recorder() for n in inventory.nodes}
    engine = Engine(spec, inventory, bundle, conns, lambda _m: None, apply=True)  # type: ignore[arg-type]
    engine.facts = {n.name: HostFacts(n.name) for n in inventory.nodes}  # a fresh node: nothing there
    engine.files()
    for log in (c.log for c in conns.values()):
        assert f"run {LINKS_SCRIPT}" in log
        assert log.index(f"run {LINKS_SCRIPT}") > log.index(f"put {LINKS_SCRIPT}")
    # a converged node: every checksum matches, so nothing is uploaded and the script not run
    for name, facts in engine.facts.items():
        sums = {f.path: sha256_hex(f.content) for f in bundle.files[name]}
        engine.facts[name] = dataclasses.replace(facts, sums=sums)
        conns[name].log.clear()
    engine.files()
    assert all(c.log == [] for c in conns.values())
