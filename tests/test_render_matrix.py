"""Every fencing x VIP x profile combination renders a CIB that Pacemaker's own tools accept,
and whose simulated failure of the active node fences it and moves everything to the survivor.
Renders for Pacemaker 3 are judged by Pacemaker 3 itself (tests/pcmk3.py): the host's 2.1 tools
take a misspelt 3.x option name for an unknown one and pass it."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import pcmk3
import pytest
from conftest import FENCING, PROFILES, VIPS, onprem_doc, render_doc
from tools import executed_order, simulate_failover

COMBOS = list(itertools.product(FENCING, VIPS, PROFILES))


@pytest.fixture(scope="module")
def pacemaker3() -> pcmk3.Pacemaker3:
    """Pacemaker 3 from Debian unstable in its side directory (.ci/setup fetches it; fetched
    here when missing)."""
    from conftest import need

    need("apt-get", "dpkg-deb", "xmllint")
    try:
        return pcmk3.Pacemaker3(pcmk3.fetch())
    except (pcmk3.FetchError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS") == "1":
            pytest.fail(f"Pacemaker 3 could not be fetched: {exc}")
        pytest.skip(f"Pacemaker 3 could not be fetched: {exc}")


def render3(
    p3: pcmk3.Pacemaker3, fencing: str = "fence_ipmilan", vip: str = "IPaddr2", profile: str | None = None
) -> str:
    doc = onprem_doc(fencing, vip, profile)
    doc["targets"] = {"pacemaker": p3.version}
    cib = render_doc(doc)[1].cib
    # a 3.x render, or this would judge the 2.x names
    assert 'name="fencing-enabled"' in cib and "stonith-" not in cib, cib
    return cib


@pytest.mark.tools
@pytest.mark.parametrize(("fencing", "vip", "profile"), COMBOS, ids=[f"{f}-{v}-{p}" for f, v, p in COMBOS])
def test_pacemaker3_accepts_every_render_and_fails_it_over(
    pacemaker3: pcmk3.Pacemaker3,
    fencing: str,
    vip: str,
    profile: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cib = render3(pacemaker3, fencing, vip, profile)
    report = pcmk3.validate(pacemaker3, cib, tmp_path)
    assert report.errors == []
    # Issue 15 item 17 drops concurrent-fencing from 3.x renders (3.0 made it the default);
    # then this set is empty. Nothing else may be deprecated.
    assert set(report.deprecated) <= {"concurrent-fencing"}, report.deprecated
    # and Pacemaker 3's own scheduler fails the pair over as the 2.1 one does
    monkeypatch.setenv("PATH", f"{pacemaker3.bin_dir()}{os.pathsep}{os.environ['PATH']}")
    assert_fails_over(cib, tmp_path / "failover")


@pytest.mark.tools
@pytest.mark.parametrize(
    ("wrong", "right", "error"),
    [
        (
            'name="fencing-timeuot"',
            'name="fencing-timeout"',
            "'fencing-timeuot' is not a Pacemaker 3.0.3 cluster",
        ),
        (
            'name="pcmk_reboot_timeuot"',
            'name="pcmk_reboot_timeout"',
            "'pcmk_reboot_timeuot' is not a Pacemaker",
        ),
        ('name="resource-stickyness"', 'name="resource-stickiness"', "rsc_defaults: 'resource-stickyness'"),
        ('name="interleaved"', 'name="interleave"', "clone ms_drbd_r0 meta: 'interleaved'"),
        ("<primitiv ", "<primitive ", "xmllint --relaxng {schema}.rng"),
        ('validate-with="pacemaker-9.9"', 'validate-with="{schema}"', "has no schema pacemaker-9.9.rng"),
    ],
    ids=["cluster-option", "fencing-option", "rsc-default", "clone-option", "element", "schema"],
)
def test_pacemaker3_rejects_a_misspelling(
    pacemaker3: pcmk3.Pacemaker3, wrong: str, right: str, error: str, tmp_path: Path
) -> None:
    cib = render3(pacemaker3)
    schema = re.search(r'validate-with="([^"]+)"', cib)
    assert schema
    right, error = right.format(schema=schema.group(1)), error.format(schema=schema.group(1))
    assert right in cib
    if right.startswith("<"):
        close = right.replace("<", "</").strip()
        bad = cib.replace(right, wrong, 1).replace(f"{close}>", f"{wrong.replace('<', '</').strip()}>", 1)
    else:
        bad = cib.replace(right, wrong, 1)
    errors = pcmk3.validate(pacemaker3, bad, tmp_path).errors
    assert any(error.replace("3.0.3", pacemaker3.version) in e for e in errors), errors
    # the host's Pacemaker 2.1 lets the misspelt option names through: that is the gap closed here
    if right.startswith('name="'):
        from conftest import need
        from tools import with_quorum

        need("crm_verify")
        (tmp_path / "host.xml").write_text(with_quorum(bad))
        host = subprocess.run(
            ["crm_verify", "-x", str(tmp_path / "host.xml")], capture_output=True, text=True
        )
        assert "timeuot" not in host.stderr + host.stdout and "stickyness" not in host.stderr


@pytest.mark.tools
def test_pacemaker3_reports_2x_names_as_deprecated(pacemaker3: pcmk3.Pacemaker3, tmp_path: Path) -> None:
    doc = onprem_doc()
    doc["targets"] = {"pacemaker": "2.1.5"}
    report = pcmk3.validate(pacemaker3, render_doc(doc)[1].cib, tmp_path)
    # the option metadata and Pacemaker 3's crm_verify agree: legacy names, to be replaced
    assert "stonith-timeout (use fencing-timeout)" in report.deprecated, report.deprecated
    assert any("legacy name 'stonith-timeout'" in e for e in report.errors), report.errors


@pytest.mark.tools
@pytest.mark.parametrize(("fencing", "vip", "profile"), COMBOS, ids=[f"{f}-{v}-{p}" for f, v, p in COMBOS])
def test_cib_verifies_and_fails_over(fencing: str, vip: str, profile: str, tmp_path: Path) -> None:
    from conftest import need

    need("crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    _, bundle = render_doc(onprem_doc(fencing, vip, profile))
    assert_fails_over(bundle.cib, tmp_path)


def assert_fails_over(cib: str, tmp_path: Path) -> None:
    """The crm_* tools first on PATH schedule, on the active node's failure: fence it, then
    promote DRBD on the survivor, then start the group there in order."""
    active, survivor, summary, after = simulate_failover(cib, tmp_path)

    assert re.search(rf"\* Fence \((off|reboot)\) {active}\b", summary), summary
    assert re.search(rf"\* Promote\s+drbd_r0:\d\s+\(\s*Unpromoted -> Promoted {survivor}\s*\)", summary), (
        summary
    )
    assert after["@online"] == [("online", survivor)]
    assert ("Promoted", survivor) in after["drbd_r0"]
    group = [rid for rid in after if rid.startswith(("fs_", "svc_", "vip_"))]
    assert any(g.startswith("vip_") for g in group) and any(g.startswith("svc_") for g in group)
    for rid in group:
        assert after[rid] == [("Started", survivor)], (rid, after[rid])
    # The fence device that targets the survivor must not be running on it.
    assert not any(node == survivor for _, node in after.get(f"fence_{survivor}", []))
    # Fence first, then promote, then the group members in order: nothing touches the data
    # before the old primary is known to be off.
    steps = executed_order(tmp_path, survivor)
    order = ["fence", "promote drbd_r0", "start fs_r0"] + [
        f"start {rid}" for rid in group if not rid.startswith("fs_")
    ]
    positions = [steps.index(step) for step in order]
    assert positions == sorted(positions), steps


@pytest.mark.tools
@pytest.mark.parametrize("pacemaker", ["2.0.5", "2.1.5", "3.0.2"])
def test_version_aware_names_verify(pacemaker: str, tmp_path: Path) -> None:
    from conftest import need

    need("crm_verify", "crm_simulate")
    doc = onprem_doc()
    doc["targets"] = {"pacemaker": pacemaker}
    _, bundle = render_doc(doc)
    names = re.findall(r'name="((?:stonith|fencing)-[a-z]+)"', bundle.cib)
    if pacemaker == "3.0.2":
        assert set(names) == {"fencing-enabled", "fencing-action", "fencing-timeout"}
    else:
        assert set(names) == {"stonith-enabled", "stonith-action", "stonith-timeout"}
    roles = set(re.findall(r'role="(\w+)"', bundle.cib))
    assert roles == ({"Master", "Slave"} if pacemaker == "2.0.5" else {"Promoted", "Unpromoted"})
    # The host's Pacemaker (2.1) schedules a failover on every variant.
    active, survivor, summary, after = simulate_failover(bundle.cib, tmp_path)
    assert f"Fence (reboot) {active}" in summary or f"Fence (off) {active}" in summary
    assert after["fs_r0"] == [("Started", survivor)]


@pytest.mark.tools
def test_two_volumes_fail_over_together(tmp_path: Path) -> None:
    from conftest import need

    need("crm_verify", "crm_simulate")
    doc = onprem_doc()
    doc["volumes"].append({"name": "r1", "mount_point": "/srv/logs"})
    for i, node in enumerate(doc["nodes"]):
        node["volumes"]["r1"] = f"/dev/disk/by-id/wwn-0x60000000000000{i}"
    _, bundle = render_doc(doc)
    _, survivor, _, after = simulate_failover(bundle.cib, tmp_path)
    for rid in ("drbd_r0", "drbd_r1"):
        assert ("Promoted", survivor) in after[rid]
    assert after["fs_r1"] == [("Started", survivor)]
