"""Every fencing x VIP x profile combination renders a CIB that Pacemaker's own tools accept,
and whose simulated failure of the active node fences it and moves everything to the survivor."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from conftest import FENCING, PROFILES, VIPS, onprem_doc, render_doc
from tools import executed_order, simulate_failover

COMBOS = list(itertools.product(FENCING, VIPS, PROFILES))


@pytest.mark.tools
@pytest.mark.parametrize(("fencing", "vip", "profile"), COMBOS, ids=[f"{f}-{v}-{p}" for f, v, p in COMBOS])
def test_cib_verifies_and_fails_over(fencing: str, vip: str, profile: str, tmp_path: Path) -> None:
    from conftest import need

    need("crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    _, bundle = render_doc(onprem_doc(fencing, vip, profile))
    active, survivor, summary, after = simulate_failover(bundle.cib, tmp_path)

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
