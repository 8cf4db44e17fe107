"""`up`'s health wait and a service group member that is not Started yet (issue 18: `up` said
"healthy" while the VIP primitive was Starting, and its start then failed on both nodes).

The crm_mon answers are the real tools' output (tests/fixtures/crm_mon-vip-*.xml, described in
test_nodequery.py), served by the scripted node double on a ManualClock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine_double import Pair

from hacloud.errors import HacloudError

FIX = Path(__file__).parent / "fixtures"
STARTING = (FIX / "crm_mon-vip-starting.xml").read_text()
#: the issue's end state: the start failed on both nodes, the VIP is Stopped
FAILED = (FIX / "crm_mon-vip-start-failed-everywhere.xml").read_text()
CRM_MON = r"^crm_mon -1 --output-as=xml"


def _starting_for(pair: Pair, reads: int) -> None:
    """node1 (the node `up` asks first) shows the VIP Starting for its next ``reads`` crm_mon calls."""
    for _ in range(reads):
        pair.node("node1").expect(CRM_MON, stdout=STARTING)


def test_up_waits_for_a_starting_vip_until_it_runs() -> None:
    pair = Pair()
    pair.up()
    _starting_for(pair, 5)
    start = pair.clock.now
    pair.engine().wait_healthy(timeout=300)
    pair.cluster.verify()  # every Starting answer was read: `up` did not stop at the first
    assert pair.clock.now - start >= 8  # four 2 s polls while the VIP was Starting


def test_up_keeps_waiting_on_a_starting_vip_then_reports_its_failed_start() -> None:
    pair = Pair()
    pair.up()
    _starting_for(pair, 5)
    pair.cluster.mon_override = FAILED  # after those reads the start has failed on both nodes
    start = pair.clock.now
    with pytest.raises(HacloudError) as err:
        pair.engine().wait_healthy(timeout=300)
    pair.cluster.verify()
    # the failed-action path: each failed start named with its cleanup, as soon as it is known
    assert err.value.code == "HAC456"
    for node in ("node1", "node2"):
        assert f"vip_ip_start_0 on {node}" in err.value.message
        assert f"crm_resource --cleanup --resource vip_ip --node {node}" in err.value.remedy
    assert 8 <= pair.clock.now - start < 30  # waited while Starting, not for the whole timeout
    assert not pair.cluster.ran(r"crm_resource --cleanup")  # a failure of this run is never hidden


def test_status_text_says_the_vip_runs_nowhere_while_it_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hacloud status` on the Starting VIP: not healthy (exit 1), the VIP placed nowhere."""
    from test_nodequery import _pair, _status
    from typer.testing import CliRunner

    from hacloud import cli
    from hacloud.deploy.query.health import judge
    from hacloud.deploy.query.status import as_json
    from hacloud.ops import status as commands

    st = _status(_pair("crm_mon-vip-starting.xml"))
    doc = as_json(st, judge(st).texts())
    monkeypatch.setattr(commands, "cluster_status", lambda *_a, **_k: doc)
    out = CliRunner().invoke(cli.app, ["status"])
    assert out.exit_code == 1
    assert "service: on node1; VIP 192.0.2.100: on nowhere" in out.output
    assert "not healthy: vip_ip is Starting on node1" in out.output


def test_fence_test_does_not_call_the_service_back_while_the_vip_is_starting() -> None:
    """fence-test's recovery waits for `healthy` from the same judgement (NodeCluster.healthy
    reads `hacloud status --json`): a VIP still Starting is not the service back."""
    from test_nodequery import _pair, _status

    from hacloud.deploy.query.health import judge
    from hacloud.deploy.query.status import as_json
    from hacloud.verify.fencetest.nodes import NodeCluster

    docs = {}
    for mon in ("crm_mon-vip-starting.xml", "crm_mon-healthy.xml"):
        st = _status(_pair(mon))
        docs[mon] = as_json(st, judge(st).texts())
    for mon, healthy in (("crm_mon-vip-starting.xml", False), ("crm_mon-healthy.xml", True)):
        cluster = NodeCluster(Path("hacloud.yaml"), {}, [], [], status=lambda _p, d=docs[mon]: d)
        assert cluster.healthy() is healthy, mon
