"""The node-query layer and the one health judgement, on real tool output.

The ``crm_mon-*.xml`` fixtures are what Pacemaker 2.1.5's own ``crm_mon -1 --output-as=xml``
printed (the lab's Debian 12 guests run the same version) for CIBs with status built by
Pacemaker's ``crm_simulate`` from hacloud's rendered onprem CIB (fence_ipmilan, IPaddr2, one
volume r0; ``tests/tools.py`` simulate steps: both nodes up, DRBD promotable, every resource
started), then:

- healthy: as started;
- fence-monitor-failed-recovered: ``crm_simulate -i fence_node1_monitor_60000@node2=1 -S``
  (the fence device's monitor failed once, as during the issue's BMC outage; Pacemaker
  restarted it and it runs, the failure stays recorded);
- fence-start-failed: the same, plus ``-F fence_node1_start_0@node2=1`` (the restart failed:
  the device is FAILED, not recovered);
- node1-lost: ``crm_simulate --node-fail node1`` without executing (node1 UNCLEAN, not fenced yet);
- maintenance-standby: ``crm_attribute -n maintenance-mode -v true``, node2 ``standby on``;
- vip-starting: healthy's CIB with vip_ip's start on node1 still running, recorded as the
  controller records a pending operation under ``record-pending`` (``op-status="-1"``,
  ``rc-code="193"``) and its monitor not yet begun: Pacemaker 2.1.5's and 3.0's crm_mon both
  print ``role="Starting"`` (and no ``pending`` attribute) for it;
- vip-start-failed: the rendered CIB simulated from nothing with
  ``-F vip_ip_start_0@node1=1 -F vip_ip_start_0@node2=1`` (the VIP's start fails): vip_ip
  FAILED on node1, the failed start recorded;
- vip-start-failed-everywhere: the issue's end state. vip-start-failed plus a failed start on
  node2 (``-i vip_ip_start_0@node2=1``), each node's ``fail-count-vip_ip#start_0`` set to
  INFINITY as the controller sets it under start-failure-is-fatal, then ``crm_simulate -S``
  until it plans nothing: vip_ip Stopped, both failures recorded.

Each validates against Pacemaker's API schema (``/usr/share/pacemaker/api/api-result.rng``).
The ``drbd84-*`` fixtures were captured on the lab's guests (see test_drbdstate.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import onprem_doc, render_doc

from hacloud.deploy.query.drbd import parse_read, read_volumes
from hacloud.deploy.query.health import cleanup_command, judge, leftover_failures
from hacloud.deploy.query.pacemaker import parse_crm_mon
from hacloud.deploy.query.status import ClusterStatus, as_json, gather
from hacloud.deploy.remote import Result
from hacloud.errors import HacloudError
from hacloud.poll import ManualClock
from hacloud.provision.provider import get_provider
from hacloud.render.resources import drbd_resources

FIX = Path(__file__).parent / "fixtures"
SCHEMA = Path("/usr/share/pacemaker/api/api-result.rng")
MON = sorted(p.name for p in FIX.glob("crm_mon-*.xml"))


def _read(name: str) -> str:
    return (FIX / name).read_text()


# ---------------------------------------------------------------- the fixtures are real


@pytest.mark.parametrize("name", MON)
def test_crm_mon_fixtures_are_valid_pacemaker_api_results(name: str) -> None:
    if not (SCHEMA.exists() and shutil.which("xmllint")):
        pytest.skip("Pacemaker's API schema or xmllint is not installed")
    proc = subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(SCHEMA), str(FIX / name)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- pacemaker parser


def test_crm_mon_healthy_view() -> None:
    view = parse_crm_mon(_read("crm_mon-healthy.xml"))
    assert view is not None
    assert view.online_nodes() == ["node1", "node2"] and view.quorum and view.fencing_enabled
    assert not view.maintenance and view.failures == ()
    assert view.promoted_on("drbd_r0") == ["node1"] and sorted(view.running_on("drbd_r0")) == [
        "node1",
        "node2",
    ]
    assert view.started_on("fs_r0") == "node1"
    # each fence device runs away from the node it fences (the renderer's -inf location)
    assert view.running_on("fence_node1") == ["node2"] and view.running_on("fence_node2") == ["node1"]
    # no id is matched by prefix: "fence_node" and "drbd" are no resources
    assert view.placements("fence_node") == () and view.placements("drbd") == ()


def test_crm_mon_failed_action_names_its_resource_node_and_time() -> None:
    view = parse_crm_mon(_read("crm_mon-fence-monitor-failed-recovered.xml"))
    assert view is not None
    (f,) = view.failures
    assert (f.resource, f.node, f.task, f.exitstatus) == ("fence_node1", "node2", "monitor", "error")
    assert f.op_key == "fence_node1_monitor_60000" and f.last_rc_change.endswith("Z")
    assert view.running_on("fence_node1") == ["node2"]  # restarted: it runs again
    stuck = parse_crm_mon(_read("crm_mon-fence-start-failed.xml"))
    assert stuck is not None and stuck.running_on("fence_node1") == []  # FAILED: not running
    assert [p.failed for p in stuck.placements("fence_node1")] == [True]


def test_crm_mon_nodes_unclean_standby_and_maintenance() -> None:
    lost = parse_crm_mon(_read("crm_mon-node1-lost.xml"))
    assert lost is not None
    assert [(n.name, n.online, n.unclean) for n in lost.nodes] == [
        ("node1", False, True),
        ("node2", True, False),
    ]
    maint = parse_crm_mon(_read("crm_mon-maintenance-standby.xml"))
    assert maint is not None and maint.maintenance
    assert [n.standby for n in maint.nodes] == [False, True]


@pytest.mark.parametrize("text", ["", "Error: cluster is not available on this node", "<pacemaker-result"])
def test_crm_mon_that_is_no_result_is_unknown(text: str) -> None:
    assert parse_crm_mon(text) is None


# ---------------------------------------------------------------- DRBD read


def test_one_drbd_read_for_84_and_9() -> None:
    """The read command's output on 8.4 (the kernel's /proc/drbd) and on 9 (/proc/drbd holds
    only the version, then drbdsetup's status): both name r0's volume 0 the same way."""
    spec, _ = render_doc(onprem_doc())
    resources = drbd_resources(spec)
    v84 = parse_read(_read("drbd84-proc-healthy-node1.txt"), resources)
    text9 = "version: 9.2.12 (api:2/proto:86-122)\n@drbdsetup-status\n" + _read(
        "drbd9-status-healthy-node1.txt"
    )
    v9 = parse_read(text9, resources)
    for vols in (v84, v9):
        assert [(v.resource, v.volume, v.disk, v.connection) for v in vols] == [
            ("r0", 0, "UpToDate", "Connected")
        ]


# ---------------------------------------------------------------- gather + judge


class Node:
    """A node connection that answers hacloud's read-only queries with captured text; records
    every command and answers ``crm_mon`` from ``mons`` (one per call, the last repeats)."""

    def __init__(self, mons: list[str | None], proc: str, dmesg: str = "0") -> None:
        self.mons, self.proc, self.dmesg = mons, proc, dmesg
        self.commands: list[str] = []

    def run(
        self, command: str, *, check: bool = True, timeout: float = 0, stdin: bytes | None = None
    ) -> Result:
        self.commands.append(command)
        if command.startswith("crm_mon"):
            name = self.mons.pop(0) if len(self.mons) > 1 else self.mons[0]
            return Result(0, _read(name), "") if name else Result(102, "", "")
        if command.startswith("cat /proc/drbd"):
            return Result(0, _read(self.proc), "")
        if command.startswith("dmesg"):
            return Result(0, self.dmesg + "\n", "")
        if command.startswith("crm_resource --cleanup"):
            for other in PAIR:  # Pacemaker forgets the failure cluster-wide
                other.mons = [
                    m.replace("fence-monitor-failed-recovered", "healthy") if m else m for m in other.mons
                ]
        return Result(0, "", "")


PAIR: list[Node] = []


def _pair(mon: str | None, procs: tuple[str, str] = ("healthy-node1", "healthy-node2")) -> dict[str, Node]:
    nodes = {f"node{i}": Node([mon], f"drbd84-proc-{p}.txt") for i, p in enumerate(procs, start=1)}
    PAIR[:] = list(nodes.values())
    return nodes


def _status(conns: dict[str, Any], unreachable: dict[str, str] | None = None) -> ClusterStatus:
    doc = onprem_doc()
    doc["targets"] = {"drbd": "8.4"}
    spec, bundle = render_doc(doc)
    inventory = get_provider("onprem").planned_inventory(spec)
    return gather(spec, inventory, bundle, conns, unreachable or {})


def test_healthy_pair_is_healthy_and_the_json_keeps_its_keys() -> None:
    st = _status(_pair("crm_mon-healthy.xml"))
    assert judge(st).healthy
    doc = as_json(st, judge(st).texts())
    assert set(doc) == {
        "cluster", "nodes", "quorum", "service_node", "vip", "vip_node", "fencing_enabled", "fencing",
        "fencing_history", "failed_actions", "split_brain", "healthy", "reasons",
        "service_group",  # added in issue 18; the keys before it are unchanged
    }  # fmt: skip
    # (plus "bmc" where the inventory knows a node's BMC: the lab's)
    assert set(doc["nodes"][0]) == {
        "name", "address", "online", "reachable", "drbd_role", "drbd_disk", "drbd_connection", "sync",
        "drbd",
    }  # fmt: skip
    assert doc["service_node"] == doc["vip_node"] == "node1" and doc["quorum"] is True
    # what each node's /proc/drbd says (ro:local/peer), read here with a plain regex
    kernel = [re.search(r"ro:(\w+)/", _read(f"drbd84-proc-healthy-{n}.txt")) for n in ("node1", "node2")]
    assert [n["drbd_role"] for n in doc["nodes"]] == [m.group(1) if m else None for m in kernel]
    assert doc["fencing"] == [
        {"id": "fence_node1", "target": "node1", "state": "Started", "node": "node2"},
        {"id": "fence_node2", "target": "node2", "state": "Started", "node": "node1"},
    ]


def test_the_issues_leftover_fence_monitor_failure_is_not_healthy() -> None:
    """The issue's case: the fence device runs again, its monitor failure stays recorded:
    not healthy, for `status`, `up` and fence-test alike (one judge)."""
    health = judge(_status(_pair("crm_mon-fence-monitor-failed-recovered.xml")))
    assert [(r.kind, r.resource, r.node) for r in health.reasons] == [
        ("failed-action", "fence_node1", "node2")
    ]


@pytest.mark.parametrize(
    ("mon", "kinds"),
    [
        ("crm_mon-fence-start-failed.xml", ["failed-action"]),
        ("crm_mon-maintenance-standby.xml", ["node", "maintenance"]),
        (None, ["no-answer"]),
    ],
)
def test_judge_names_each_cause(mon: str | None, kinds: list[str]) -> None:
    assert [r.kind for r in judge(_status(_pair(mon))).reasons] == kinds


def _group_in_rendered_cib() -> list[str]:
    """The service group's members as the rendered CIB lists them (read here with ElementTree)."""
    import xml.etree.ElementTree as ET

    _spec, bundle = render_doc(onprem_doc())
    return [p.get("id", "") for p in ET.fromstring(bundle.cib).iterfind(".//group/primitive")]


def test_a_vip_still_starting_is_not_healthy_and_runs_nowhere_yet() -> None:
    """Issue 18: `up` said healthy while the VIP was Starting. Every group member counts."""
    st = _status(_pair("crm_mon-vip-starting.xml"))
    health = judge(st)
    assert [(r.kind, r.resource) for r in health.reasons] == [("service", "vip_ip")]
    assert "vip_ip is Starting on node1" in health.texts()[0]
    doc = as_json(st, health.texts())
    assert doc["healthy"] is False and doc["service_node"] == "node1" and doc["vip_node"] is None
    # the members judged are the rendered CIB's, in its order, as crm_mon shows them
    assert [m["id"] for m in doc["service_group"]] == _group_in_rendered_cib()
    assert [m["role"] for m in doc["service_group"]] == ["Started", "Started", "Starting"]


def test_a_vip_whose_start_failed_is_not_healthy_and_its_failure_is_named() -> None:
    st = _status(_pair("crm_mon-vip-start-failed.xml"))
    health = judge(st)
    assert [(r.kind, r.resource) for r in health.reasons] == [
        ("service-failed", "vip_ip"), ("failed-action", "vip_ip")
    ]  # fmt: skip
    assert "vip_ip is FAILED on node1" in health.texts()[0]
    assert as_json(st, health.texts())["vip_node"] is None
    # not recovered: `up` reports the failure, never cleans it
    (f,) = st.view.failures if st.view else ()
    assert leftover_failures(st, health, {f.key}) == ([], [f])


@pytest.mark.parametrize(
    ("mon", "kind"),
    [
        ("crm_mon-vip-starting.xml", "service"),  # Pacemaker is acting: wait
        ("crm_mon-vip-start-failed.xml", "service-failed"),  # FAILED: report, do not wait
        ("crm_mon-vip-start-failed-everywhere.xml", "service-failed"),  # stopped, start failed here
    ],
)
def test_only_a_member_pacemaker_still_acts_on_is_waited_for(mon: str, kind: str) -> None:
    from hacloud.deploy.query.health import STABLE

    health = judge(_status(_pair(mon)))
    member = next(r for r in health.reasons if r.resource == "vip_ip" and r.kind != "failed-action")
    assert member.kind == kind and member.node == "node1"
    assert health.only(STABLE) == (kind == "service-failed")


def test_a_member_whose_start_failed_only_on_the_other_node_is_waited_for() -> None:
    """The VIP stopped, its start failed on node2 only (an old failure): Pacemaker can still
    start it on node1 with the service, so it is not a failure to report yet."""
    import dataclasses

    text = _read("crm_mon-vip-start-failed-everywhere.xml")
    here = re.search(r'\n\s*<failure op_key="vip_ip_start_0" node="node1"[^>]*/>', text)
    assert here is not None
    st = _status(_pair("crm_mon-vip-start-failed-everywhere.xml"))
    st = dataclasses.replace(st, view=parse_crm_mon(text.replace(here.group(0), "")))
    health = judge(st)
    assert [(r.kind, r.resource, r.node) for r in health.reasons] == [
        ("service", "vip_ip", "node1"), ("failed-action", "vip_ip", "node2")
    ]  # fmt: skip


def test_judge_lost_node_and_split_brain() -> None:
    lost = judge(_status({"node2": Node(["crm_mon-node1-lost.xml"], "drbd84-proc-recovered-node1.txt")},
                         {"node1": "node1: cannot log in"}))  # fmt: skip
    assert [(r.kind, r.node) for r in lost.reasons][:3] == [
        ("unreachable", "node1"), ("node", "node1"), ("node", "node1"),
    ]  # fmt: skip
    assert any("UNCLEAN" in t for t in lost.texts())
    split = _pair("crm_mon-healthy.xml", ("splitbrain-node1", "splitbrain-node2"))
    for n in split.values():
        n.dmesg = "1"
    health = judge(_status(split))
    assert [r.kind for r in health.reasons] == ["drbd", "drbd", "split-brain"]


# ---------------------------------------------------------------- `up`'s leftovers


def test_failure_from_before_the_run_of_a_recovered_resource_is_cleaned() -> None:
    st = _status(_pair("crm_mon-fence-monitor-failed-recovered.xml"))
    assert st.view is not None
    (f,) = st.view.failures
    clean, report = leftover_failures(st, judge(st), {f.key})
    assert clean == [f] and report == []
    assert cleanup_command(f) == "crm_resource --cleanup --resource fence_node1 --node node2"
    # recorded during this run (not in `before`): reported, never hidden
    assert leftover_failures(st, judge(st), set()) == ([], [f])


def test_failure_of_a_resource_that_did_not_recover_is_reported() -> None:
    st = _status(_pair("crm_mon-fence-start-failed.xml"))
    assert st.view is not None
    (f,) = st.view.failures
    assert leftover_failures(st, judge(st), {f.key}) == ([], [f])


def _engine(conns: dict[str, Any]) -> Any:
    from hacloud.deploy.engine import Engine

    doc = onprem_doc()
    doc["targets"] = {"drbd": "8.4"}
    spec, bundle = render_doc(doc)
    inventory = get_provider("onprem").planned_inventory(spec)
    return Engine(spec, inventory, bundle, conns, lambda _m: None, apply=True, clock=ManualClock())


def test_up_cleans_the_leftover_says_so_and_a_second_up_has_nothing_to_do() -> None:
    conns = _pair("crm_mon-fence-monitor-failed-recovered.xml")
    engine = _engine(conns)
    view = parse_crm_mon(_read("crm_mon-fence-monitor-failed-recovered.xml"))
    assert view is not None
    engine.failures_before = frozenset(f.key for f in view.failures)
    engine.wait_healthy()
    ran = [c for n in conns.values() for c in n.commands if c.startswith("crm_resource")]
    assert ran == ["crm_resource --cleanup --resource fence_node1 --node node2"]
    assert [(c.node, c.step) for c in engine.changes] == [("node2", "cleanup")]
    assert "fence_node1_monitor_60000" in engine.changes[0].detail
    again = _engine(conns)  # the cluster is healthy now: nothing to clean, no change
    again.failures_before = frozenset()
    again.wait_healthy()
    assert again.changes == []


def test_up_refuses_a_failure_it_must_not_clean_and_says_how() -> None:
    conns = _pair("crm_mon-fence-start-failed.xml")
    engine = _engine(conns)
    view = parse_crm_mon(_read("crm_mon-fence-start-failed.xml"))
    assert view is not None
    engine.failures_before = frozenset(f.key for f in view.failures)
    with pytest.raises(HacloudError) as err:
        engine.wait_healthy()
    assert err.value.code == "HAC456"
    assert "crm_resource --cleanup --resource fence_node1 --node node2" in err.value.remedy
    assert not any(c.startswith("crm_resource") for n in conns.values() for c in n.commands)


def test_up_waits_with_the_same_judge_and_times_out_naming_the_reason() -> None:
    conns = {
        "node1": Node(["crm_mon-healthy.xml"], "drbd84-proc-healthy-node1.txt"),
        "node2": Node(["crm_mon-healthy.xml"], "drbd84-proc-splitbrain-node2.txt"),
    }
    engine = _engine(conns)
    with pytest.raises(HacloudError) as err:
        engine.wait_healthy(timeout=10)
    assert err.value.code == "HAC453" and "node2: DRBD is UpToDate / StandAlone" in err.value.message
    assert engine.clock.now >= 10  # waited on the injected clock, not the wall


def test_read_volumes_runs_one_command() -> None:
    spec, _ = render_doc(onprem_doc())
    node = Node([None], "drbd84-proc-verifying-node2.txt")
    (vol,) = read_volumes(node, drbd_resources(spec))  # type: ignore[arg-type]
    assert vol.verifying and len(node.commands) == 1


def test_failover_refuses_an_unhealthy_cluster_before_moving_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same judge as `status`: a recorded fence failure stops a planned switchover (moving
    away from a fence device that failed trades a working service for an unfenceable one)."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from hacloud.ops import failover as ops_failover

    doc = onprem_doc()
    doc["targets"] = {"drbd": "8.4"}
    spec, bundle = render_doc(doc)
    inventory = get_provider("onprem").planned_inventory(spec)
    conns = _pair("crm_mon-fence-monitor-failed-recovered.xml")
    ws = SimpleNamespace(spec=spec)
    session = SimpleNamespace(ws=ws, inventory=inventory, conns=conns, bundle=bundle, unreachable={})
    session.close = lambda: None
    monkeypatch.setattr(ops_failover, "workspace", lambda *_a, **_k: ws)
    monkeypatch.setattr(ops_failover, "existing_nodes", lambda _ws: inventory)
    monkeypatch.setattr(ops_failover, "ClusterLock", lambda _ws: nullcontext())
    monkeypatch.setattr(ops_failover, "open_session", lambda *_a, **_k: session)
    with pytest.raises(HacloudError) as err:
        ops_failover.failover(Path("hacloud.yaml"), lambda _m: None, clock=ManualClock())
    assert err.value.code == "HAC332" and "failed action: fence_node1_monitor_60000" in err.value.message
    assert not any("--move" in c for n in conns.values() for c in n.commands)


def _syncing(oos: int) -> str:
    """node2's /proc/drbd during a resync from node1 (drbd_proc.c's layout; oos in KiB)."""
    return (
        "version: 8.4.11 (api:1/proto:86-101)\n"
        " 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n"
        f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{oos}\n"
        f"\t[=>..................] sync'ed: {100 - oos * 100 / 1_048_576:.1f}% ({oos}/1048576)K\n"
    )


class Syncing(Node):
    """node2 reading one /proc/drbd after the other (the last repeats)."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__(["crm_mon-healthy.xml"], "drbd84-proc-healthy-node2.txt")
        self.texts = texts

    def run(
        self, command: str, *, check: bool = True, timeout: float = 0, stdin: bytes | None = None
    ) -> Result:
        if command.startswith("cat /proc/drbd"):
            self.commands.append(command)
            return Result(0, self.texts.pop(0) if len(self.texts) > 1 else self.texts[0], "")
        return super().run(command, check=check, timeout=timeout, stdin=stdin)


def test_up_waits_for_a_resync_that_advances_past_its_timeout() -> None:
    done = _read("drbd84-proc-healthy-node2.txt")
    texts = [_syncing(1_000_000 - 50_000 * i) for i in range(15)] + [done]
    conns = {"node1": Node(["crm_mon-healthy.xml"], "drbd84-proc-healthy-node1.txt"), "node2": Syncing(texts)}
    engine = _engine(conns)
    engine.wait_healthy(timeout=10)
    assert engine.clock.now > 10  # longer than one timeout: the resync kept advancing


def test_up_gives_up_on_a_resync_that_stalls() -> None:
    conns = {
        "node1": Node(["crm_mon-healthy.xml"], "drbd84-proc-healthy-node1.txt"),
        "node2": Syncing([_syncing(900_000), _syncing(800_000), _syncing(800_000)]),
    }
    engine = _engine(conns)
    with pytest.raises(HacloudError) as err:
        engine.wait_healthy(timeout=10)
    assert err.value.code == "HAC453" and "SyncTarget" in err.value.message
    assert 20 <= engine.clock.now < 32  # the first window, then one more while it advanced


def test_vip_node_needs_every_vip_primitive_running_there() -> None:
    """Azure's VIP is two primitives (the address and the load balancer's probe listener): the
    VIP is served on a node only when both run there."""
    import dataclasses

    st = _status(_pair("crm_mon-healthy.xml"))
    both = dataclasses.replace(st, expected=dataclasses.replace(st.expected, vips=("vip_ip", "svc_demo")))
    assert both.vip_node == "node1"
    one = dataclasses.replace(st, expected=dataclasses.replace(st.expected, vips=("vip_ip", "vip_lb")))
    assert one.vip_node is None  # vip_lb runs nowhere (crm_mon does not list it)


def test_failover_waits_until_every_group_member_runs_on_the_target() -> None:
    """The filesystem up on the target is not the end of a switchover: a cloud VIP agent moves
    its route tens of seconds later (the emulated AWS showed `failover` returning while clients
    still timed out). Real crm_mon XML: the VIP Starting, then everything Started."""
    from hacloud.deploy.remote import Result
    from hacloud.ops.failover import _wait_moved

    answers = [_read("crm_mon-vip-starting.xml")] * 3 + [_read("crm_mon-healthy.xml")]

    class Conn:
        def run(self, command: str, **_kw: Any) -> Result:
            assert command.startswith("crm_mon")
            return Result(0, answers.pop(0), "")

    clock = ManualClock()
    view = _wait_moved(Conn(), ("fs_r0", "svc_demo", "vip_ip"), "node1", 60, clock)  # type: ignore[arg-type]
    assert answers == [] and view.started_on("vip_ip") == "node1"
    assert clock.now >= 6  # three polls saw the VIP still starting
