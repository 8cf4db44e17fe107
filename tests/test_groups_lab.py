"""A grouped DRBD resource on the real lab (issue 15 item 13): two volumes (data + its WAL,
mounted inside it) in ONE resource come up Primary/UpToDate together, are mounted on one
node, move together on a failover, and a second `up` changes nothing.

Run alone, under the lab lock: `flock /tmp/hacloud-lab.lock pytest tests/test_groups_lab.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_lab import cluster_lab, hacloud
from test_lab import on_guest as on

pytestmark = pytest.mark.lab
CLUSTER = "grouptest"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    for lab in cluster_lab(tmp_path_factory, CLUSTER):
        doc = lab["doc"]
        assert isinstance(doc, dict)
        doc["volumes"] = [
            {"name": "data", "resource": "r0", "size_gib": 1, "mount_point": "/srv/data"},
            {"name": "wal", "resource": "r0", "size_gib": 1, "mount_point": "/srv/data/wal"},
        ]
        Path(str(lab["spec"])).write_text(yaml.safe_dump(doc))
        yield lab


def _kernel_view(lab: dict[str, object], node: str) -> tuple[list[str], list[str]]:
    """(the /proc/drbd state lines, the DRBD mounts) on a node, as the kernel reports them."""
    out = on(lab, node, "grep -E '^ *[0-9]+: cs:' /proc/drbd; echo @; findmnt -rno TARGET,SOURCE | grep drbd")
    proc, _, mounts = out.stdout.partition("@")
    return [line.strip() for line in proc.splitlines() if line.strip()], sorted(
        m.strip() for m in mounts.splitlines() if m.strip()
    )


def _where(lab: dict[str, object]) -> tuple[str, str]:
    st = json.loads(hacloud(lab, "status", "--json").stdout)
    assert st["healthy"] is True, st
    active = st["service_node"]
    return active, "node2" if active == "node1" else "node1"


def test_grouped_resource_comes_up_as_one(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "up", "-y")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "create metadata for r0/0 (data)" in proc.stderr and "create metadata for r0/1 (wal)" in proc.stderr
    )
    st = json.loads(hacloud(lab, "status", "--json").stdout)
    assert st["healthy"] is True, st
    for node in st["nodes"]:
        assert [(v["resource"], v["volume"], v["disk"], v["peer_disk"]) for v in node["drbd"]] == [
            ("r0", 0, "UpToDate", "UpToDate"),
            ("r0", 1, "UpToDate", "UpToDate"),
        ]
    active, standby = _where(lab)
    # Independent of hacloud: the kernel's view. One resource, two minors, both Primary and
    # UpToDate on the active node, both mounted there and nowhere else.
    states, mounts = _kernel_view(lab, active)
    assert len(states) == 2 and all("ro:Primary/Secondary ds:UpToDate/UpToDate" in s for s in states), states
    assert mounts == ["/srv/data /dev/drbd0", "/srv/data/wal /dev/drbd1"], mounts
    states, mounts = _kernel_view(lab, standby)
    assert all("ro:Secondary/Primary" in s for s in states) and mounts == [], (states, mounts)
    res = on(lab, active, "drbdadm sh-minor r0; ls /etc/drbd.d").stdout.split()
    assert res[:2] == ["0", "1"] and "wal.res" not in res and "data.res" not in res


def test_second_up_changes_nothing(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "up", "-y")
    assert proc.returncode == 0 and proc.stdout.startswith("0 changes"), proc.stdout + proc.stderr


def test_both_volumes_fail_over_together(lab: dict[str, object]) -> None:
    before, _ = _where(lab)
    on(lab, before, "echo committed > /srv/data/wal/segment && sync")
    proc = hacloud(lab, "failover", "-y")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after, old = _where(lab)
    assert after != before
    states, mounts = _kernel_view(lab, after)
    assert len(states) == 2 and all("ro:Primary/Secondary ds:UpToDate/UpToDate" in s for s in states), states
    assert mounts == ["/srv/data /dev/drbd0", "/srv/data/wal /dev/drbd1"], mounts
    assert on(lab, after, "cat /srv/data/wal/segment").stdout.strip() == "committed"
    assert _kernel_view(lab, old)[1] == []
