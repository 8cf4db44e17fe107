"""`hacloud fence-test` on the real lab pair: every fault method once, checked from outside.

One module-scoped lab (cluster ``fencetest``). A broken fence device must be refused before
any fault; then each method runs one round. What fence-test reports is checked against facts
it does not compute: the virtual BMC's own power log (the fenced node really lost power, and
got it back), the client's raw log and the record store read back through the VIP with curl
(every acknowledged record present and unchanged), and Pacemaker's view afterwards.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_lab import cluster_lab, hacloud, hacloud_in_lab_network, lab_exec, onprem_spec_over
from test_lab import on_guest as on

pytestmark = pytest.mark.lab
CLUSTER = "fencetest"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    for state in cluster_lab(tmp_path_factory, CLUSTER):
        up = hacloud(state, "up", "-y")
        assert up.returncode == 0, up.stderr[-3000:]
        yield state


def bmc_events(lab: dict[str, object], node: str, since: float) -> list[tuple[float, str]]:
    log = Path(str(lab["root"])) / ".hacloud" / CLUSTER / "lab" / node / "bmc.log"
    out = []
    for line in log.read_text().splitlines():
        m = re.match(r"(\d+\.\d+) power (on|off) ", line)
        if m and float(m.group(1)) >= since:
            out.append((float(m.group(1)), m.group(2)))
    return out


def curl(lab: dict[str, object], path: str) -> str:
    return lab_exec(
        lab, "curl", "-sS", "--max-time", "30", f"http://192.0.2.100:8080{path}", timeout=120
    ).stdout


def test_a_broken_fence_device_is_refused_before_any_fault(lab: dict[str, object]) -> None:
    started = time.time()
    before = json.loads(curl(lab, "/health"))["node"]
    # The password fence_node2 sends to node2's BMC (read on node1 through password_script).
    for node in ("node1", "node2"):
        assert on(lab, node, "echo wrong-password > /etc/hacloud/fencing/node2.secret").returncode == 0
    proc = hacloud(lab, "fence-test", "-y", "--method", "power")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fence-test refused" in proc.stderr and "fence_node2" in proc.stderr
    assert "fix:" in proc.stderr and "password" in proc.stderr
    # nothing was injected: no power event at either BMC, the service did not move
    assert bmc_events(lab, "node1", started) == [] and bmc_events(lab, "node2", started) == []
    assert json.loads(curl(lab, "/health"))["node"] == before
    # `up` puts the right password back (the file differs from the rendered one)
    again = hacloud(lab, "up", "-y")
    assert again.returncode == 0 and not again.stdout.startswith("0 changes"), again.stdout + again.stderr
    # The device's own 60 s monitor may have failed meanwhile; that record is this test's doing.
    on(lab, "node1", "crm_resource --cleanup -r fence_node2 >/dev/null 2>&1")


@pytest.mark.parametrize("method", ["power", "crash", "fence", "partition"])
def test_one_round(lab: dict[str, object], method: str) -> None:
    started = time.time()
    proc = hacloud(lab, "fence-test", "-y", "--json", "--method", method, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    print(
        f"\n{method}: RTO {r['rto_seconds']} s (floor {r['floor_seconds']} s), stages {r['stages']}, "
        f"resync {r['resync_seconds']} s, acknowledged {r['acknowledged']}"
    )
    assert r["passed"] and r["lost"] == 0 and r["duplicates"] == 0 and r["corrupt"] == 0
    assert r["acknowledged"] > 20 and r["single_primary"] and r["recovered"]
    assert r["rto_seconds"] is not None and r["rto_seconds"] > r["floor_seconds"]
    assert set(r) >= {
        "method",
        "node",
        "rto_seconds",
        "floor_seconds",
        "stages",
        "acknowledged",
        "lost",
        "duplicates",
        "fenced_confirmed_off",
        "single_primary",
        "recovered",
        "resync_seconds",
    }
    fenced, survivor = r["node"], r["survivor"]
    # The BMC, not the cluster, says the fenced node lost power and got it back, in that order.
    events = bmc_events(lab, fenced, started)
    assert [e for _, e in events][:2] == ["off", "on"], events
    assert bmc_events(lab, survivor, started) == []
    assert r["fenced_confirmed_off"]
    # The service runs on the survivor (stickiness keeps it there after the node came back).
    assert json.loads(curl(lab, "/health"))["node"] == survivor
    # Every write the client saw acknowledged is in the store, byte for byte (its checksum).
    log = max(
        (Path(str(lab["root"])) / ".hacloud" / CLUSTER / "fence-test").glob("*.jsonl"), key=os.path.getmtime
    )
    acked = [json.loads(line) for line in log.read_text().splitlines()]
    acked = [a for a in acked if a["ok"]]
    stored = {rid: sha for rid, sha, _ in json.loads(curl(lab, "/digest?after=0"))["records"]}
    assert all(stored.get(a["id"]) == a["sha"] for a in acked)
    assert len(acked) == r["acknowledged"]
    # Acknowledgements after the fault came from one node, then the other: never both at once.
    nodes = [a["node"] for a in sorted(acked, key=lambda a: a["done"])]
    changes = sum(1 for x, y in itertools.pairwise(nodes) if x != y)
    assert changes <= 1
    if method == "partition":
        assert {fenced, survivor} == {"node1", "node2"}
    # Pacemaker agrees the pair is whole again: both online, DRBD UpToDate on both.
    st = hacloud(lab, "status", "--json")
    assert st.returncode == 0, st.stdout
    status = json.loads(st.stdout)
    assert status["healthy"] and [n["drbd_disk"] for n in status["nodes"]] == ["UpToDate", "UpToDate"]


def test_onprem_provider_power_round(lab: dict[str, object]) -> None:
    """The lab's guests as on-prem servers: the on-prem provider pulls the plug through the
    BMCs the spec names (the stock fence_ipmilan run on this machine) and confirms the fence
    the same way. Run from inside the lab's network, where an on-prem admin host would sit."""
    spec = onprem_spec_over(lab, CLUSTER)
    started = time.time()
    proc = hacloud_in_lab_network(lab, CLUSTER, spec, "fence-test", "-y", "--json", "--method", "power")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["passed"] and r["lost"] == 0 and r["fenced_confirmed_off"] and r["recovered"]
    assert [e for _, e in bmc_events(lab, r["node"], started)][:2] == ["off", "on"]
    # partition needs the servers' switches: refused up front with the reason
    refused = hacloud_in_lab_network(
        lab, CLUSTER, spec, "fence-test", "-y", "--method", "partition", timeout=120
    )
    assert refused.returncode == 2 and "switches" in refused.stderr
