"""fence-test's round, end to end through ``runner.run``, on a simulated pair (tests/fencetest_world.py)
driven by a manual clock: no root, guests, network or HA tools, milliseconds per round.

Each condition the judgement fails a round on has a scenario that breaks exactly that condition
and a test that the round then FAILS with exactly that failure, recorded as failed in the
history; a clean round of every method passes. The expected numbers come from the scenario's
schedule (the survivor answers 12 s after the fault, the fence cuts the power at 6 s, ...),
not from what the round computed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXED_SECRETS, write_lab_spec
from fencetest_world import ACTIVE, STANDBY, FakePower, Scenario, World, rig_of

from hacloud.errors import HacloudError, Interrupted, InterruptedWork
from hacloud.poll import SYSTEM
from hacloud.provision.provider import get_provider
from hacloud.render import effective_profile, render_all
from hacloud.spec.load import load_spec
from hacloud.spec.profiles import load_profile
from hacloud.verify.fencetest import verdict
from hacloud.verify.fencetest.faults import FAULT_HELP, FAULTS, FaultMethod
from hacloud.verify.fencetest.ports import RoundPlan
from hacloud.verify.fencetest.runner import Options, history_file, round_plan, rto_summary, run
from hacloud.verify.fencetest.timeline import floor

METHODS = [m.value for m in FaultMethod]


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, RoundPlan]:
    """A lab cluster's spec and the plan of its round, from the real renderer."""
    spec_path, _ = write_lab_spec(tmp_path, "simulated")
    spec = load_spec(spec_path)
    inventory = get_provider("lab").planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name), inventory)
    return spec_path, round_plan(
        spec, inventory, profile, render_all(spec, inventory, profile, FIXED_SECRETS)
    )


class Run:
    """``run`` on a simulated pair: its results, the pair of the last round, what it reported."""

    def __init__(self, lab: tuple[Path, RoundPlan], scenario: Scenario, **options: Any) -> None:
        self.spec_path, self.plan = lab
        self.scenario = scenario
        self.world = World(scenario)
        self.power = FakePower(self.world, options.pop("faults", ("fence", "power", "crash", "partition")))
        self.progress: list[str] = []
        self.options = Options(**{"method": "power", **options})
        self.rounds = 0

    def opener(self, ws: Any, provider: Any, options: Options) -> Any:
        """A fresh pair for every round after the first."""
        if self.rounds:
            self.world = self.power.world = World(self.scenario)
        self.rounds += 1
        return rig_of(self.world, self.plan, ws, provider)

    def __call__(self, progress: Any = None) -> list[verdict.RoundResult]:
        return run(
            self.spec_path,
            self.options,
            progress or self.progress.append,
            provider=self.power,
            rig=self.opener,
        )

    def history(self) -> list[dict[str, Any]]:
        path = history_file(self.spec_path)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kinds(result: verdict.RoundResult) -> list[str]:
    return [f.kind for f in result.failures or ()]


@pytest.mark.parametrize("method", METHODS)
def test_a_clean_round_passes_in_milliseconds(lab: tuple[Path, RoundPlan], method: str) -> None:
    scenario = Scenario()
    r = Run(lab, scenario, method=method)
    started = time.monotonic()
    (result,) = r()
    assert time.monotonic() - started < 2.0  # minutes of cluster time, on the manual clock
    assert result.passed and result.failures == () and result.problems == []
    fenced = STANDBY if method == "partition" else ACTIVE  # partition: the side without the service
    assert (result.node, result.survivor) == (fenced, ACTIVE if fenced == STANDBY else STANDBY)
    row = result.as_dict()
    # the survivor acknowledged the first write sent 12 s after the fault (plus its 10 ms)
    assert 12.0 <= row["rto_seconds"] <= 12.0 + 1 / 20 + 0.011
    assert row["lost"] == row["duplicates"] == row["corrupt"] == 0 and row["acknowledged"] > 20
    assert row["fenced_confirmed_off"] and row["single_primary"] and row["max_primaries"] == 1
    assert row["power_off_at"] == (0.0 if method == "power" else scenario.fence_after)
    assert row["recovered"] and row["rejoin_seconds"] == scenario.rejoin_after
    assert row["resync_seconds"] == scenario.resync
    # the journal's milestones were found by the renderer's resource ids
    assert row["stages"]["promoted"] == pytest.approx(12.0 - 4) and row["stages"]["vip_up"] == 11.0
    assert (
        row["stages"]["fenced"] == scenario.fence_after and row["stages"]["answering"] == row["rto_seconds"]
    )
    plan = lab[1]
    assert row["floor_seconds"] == floor(method, plan.profile, victim_was_active=fenced == ACTIVE).total
    assert r.history()[0]["passed"] is True and r.history()[0]["timers"]["corosync.token"] > 0
    # the fault went in through the provider (or the cluster), the node came back through the provider
    inject = {
        "power": f"power_off {fenced}",
        "crash": f"freeze {fenced}",
        "fence": f"stonith_admin --fence {fenced} from {ACTIVE if fenced == STANDBY else STANDBY} --timeout",
        "partition": "partition cut",
    }[method]
    assert r.world.calls[0].startswith(inject) and r.world.calls[-1] == f"power_on {fenced}"
    if method == "partition":
        assert "partition heal" in r.world.calls


# Each scenario breaks one condition; the round must fail with exactly that failure.
BROKEN = [
    ("power", Scenario(lose_before_fault=1.0), {}, "records_lost"),
    ("power", Scenario(duplicate=2), {}, "records_duplicated"),
    ("power", Scenario(tear=3), {}, "records_torn"),
    ("power", Scenario(dual_primary=True), {}, "two_primaries"),
    ("power", Scenario(survivor_promotes=False), {}, "no_primary_at_end"),
    ("crash", Scenario(fence_cuts_power=False), {"recover": False}, "not_confirmed_off"),
    ("power", Scenario(never_back=True), {}, "service_not_back"),
    ("power", Scenario(), {"takeover_timeout": 5.0}, "service_not_back"),
    ("power", Scenario(old_serves_again=True), {}, "served_by_both"),
    ("power", Scenario(never_rejoins=True), {}, "not_recovered"),
    ("fence", Scenario(never_healthy=True), {}, "not_recovered"),
]


@pytest.mark.parametrize(
    ("method", "scenario", "options", "kind"), BROKEN, ids=[f"{b[3]}-{i}" for i, b in enumerate(BROKEN)]
)
def test_each_broken_condition_fails_the_round(
    lab: tuple[Path, RoundPlan], method: str, scenario: Scenario, options: dict[str, Any], kind: str
) -> None:
    r = Run(lab, scenario, method=method, rounds=3, **options)
    results = r()
    assert len(results) == 1  # a failed round ends the run
    (result,) = results
    assert not result.passed and kinds(result) == [kind]
    assert [row["passed"] for row in r.history()] == [False]
    assert r.history()[0]["problems"] == result.problems and result.problems


def test_what_the_failures_say(lab: tuple[Path, RoundPlan]) -> None:
    """The counts in the messages are the scenario's: 1 s of writes at 20 a second lost, 3 torn."""
    (result,) = Run(lab, Scenario(lose_before_fault=1.0, tear=3, duplicate=2))()
    assert kinds(result) == ["records_lost", "records_torn", "records_duplicated"]
    assert result.lost == 20 and result.as_dict()["corrupt"] == 3 and result.duplicates == 2
    assert result.problems[:3] == [
        "20 acknowledged records are missing (RPO > 0)",
        "3 records differ from what was written",
        "2 duplicate records",
    ]
    (gave_up,) = Run(lab, Scenario(never_back=True), takeover_timeout=30.0, recover=False)()
    assert gave_up.failures == (verdict.ServiceNotBack(30.0),) and gave_up.recovered is None
    assert gave_up.problems == ["the service did not answer again within 30 s of the fault"]


def test_a_service_that_stops_late_and_never_returns_fails(lab: tuple[Path, RoundPlan]) -> None:
    """The fence takes 96 s: no write fails for 90 s, so the round stops waiting ("never stopped
    answering"); then the node goes and nothing takes over. The final analysis must see it."""
    scenario = Scenario(victim_serves_for=95.0, fence_after=96.0, takeover=10_000.0)
    (result,) = Run(lab, scenario, method="fence")()
    assert result.failures is not None and result.failures[0] == verdict.ServiceNotBack()
    assert kinds(result) == ["service_not_back", "no_primary_at_end"] and result.rto_seconds is None


def test_a_lying_fence_is_split_brain(lab: tuple[Path, RoundPlan]) -> None:
    """A fence that reports success but leaves the node on: both Primary, and not confirmed off."""
    (result,) = Run(lab, Scenario(fence_cuts_power=False), method="fence", recover=False)()
    assert kinds(result) == ["two_primaries", "not_confirmed_off"] and result.as_dict()["max_primaries"] == 2


def test_rounds_repeat_while_they_pass(lab: tuple[Path, RoundPlan]) -> None:
    r = Run(lab, Scenario(), rounds=3)
    results = r()
    assert len(results) == 3 and [row["passed"] for row in r.history()] == [True, True, True]
    assert [p for p in r.progress if p.startswith("round ")] == [
        "round 1 of 3",
        "round 2 of 3",
        "round 3 of 3",
    ]
    assert 12.0 <= rto_summary(results)["median"] <= 12.07


def test_no_recover_leaves_the_node_off(lab: tuple[Path, RoundPlan]) -> None:
    r = Run(lab, Scenario(), recover=False, rounds=2)
    (result,) = r()
    assert result.passed and result.recovered is None and result.as_dict()["rejoin_seconds"] is None
    assert not any(c.startswith("power_on") for c in r.world.calls)


def test_crash_without_a_freeze_crashes_the_kernel(lab: tuple[Path, RoundPlan]) -> None:
    r = Run(lab, Scenario(can_freeze=False), method="crash")
    (result,) = r()
    assert result.passed and r.world.calls[:2] == ["freeze node1", "sysrq crash node1"]


def test_partition_the_cluster_decides_who_loses(lab: tuple[Path, RoundPlan]) -> None:
    (result,) = Run(lab, Scenario(partition_loser=ACTIVE), method="partition")()
    assert result.passed and (result.node, result.survivor) == (ACTIVE, STANDBY)


@pytest.mark.parametrize(
    ("scenario", "code"),
    [(Scenario(both_fenced=True), "HAC516"), (Scenario(fence_cuts_power=False), "HAC515")],
)
def test_partition_without_one_loser_is_an_error_and_the_links_are_healed(
    lab: tuple[Path, RoundPlan], scenario: Scenario, code: str
) -> None:
    r = Run(lab, scenario, method="partition")
    with pytest.raises(HacloudError) as info:
        r()
    assert info.value.code == code and r.world.calls[-1] == "partition heal"


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        (Scenario(preflight_problems=["fence device fence_node2 is Stopped"]), "HAC511"),
        (Scenario(powered_off_before={STANDBY}), "HAC512"),
        (Scenario(before=(ACTIVE, STANDBY)), "HAC513"),
        (Scenario(before=(None,)), "HAC514"),
    ],
)
def test_nothing_is_injected_into_a_cluster_that_is_not_ready(
    lab: tuple[Path, RoundPlan], scenario: Scenario, code: str
) -> None:
    r = Run(lab, scenario)
    with pytest.raises(HacloudError) as info:
        r()
    assert info.value.code == code and r.world.calls == [] and r.world.fault is None
    assert r.history() == []


def test_preflight_refusal_lists_every_problem(lab: tuple[Path, RoundPlan]) -> None:
    problems = ["node2 is not online in the cluster", "fencing is disabled"]
    with pytest.raises(HacloudError) as info:
        Run(lab, Scenario(preflight_problems=problems))()
    assert "fence-test refused" in info.value.message and all(p in info.value.message for p in problems)


def test_ctrl_c_after_the_fault_says_what_was_left(lab: tuple[Path, RoundPlan]) -> None:
    def progress(line: str) -> None:
        if line.startswith("writes fail since"):
            raise Interrupted

    r = Run(lab, Scenario(), method="partition")
    with pytest.raises(InterruptedWork) as info:
        r(progress)
    assert info.value.code == "HAC530" and "node2 was expected to lose" in info.value.message
    assert r.world.calls[-1] == "partition heal" and r.history() == []


def test_ctrl_c_before_the_fault_is_a_plain_interrupt(lab: tuple[Path, RoundPlan]) -> None:
    def progress(line: str) -> None:
        if line.startswith("preflight"):
            raise Interrupted

    r = Run(lab, Scenario())
    with pytest.raises(Interrupted):
        r(progress)
    assert r.world.calls == []


@pytest.mark.parametrize(
    ("options", "faults", "power_control", "code"),
    [
        ({"method": "unplug"}, None, True, "HAC500"),
        ({"node": "node9"}, None, True, "HAC501"),
        ({"method": "partition", "node": "node1"}, None, True, "HAC502"),
        ({"rounds": 0}, None, True, "HAC503"),
        ({"method": "power"}, ("fence",), False, "HAC506"),
        ({"method": "crash"}, ("fence",), False, "HAC506"),
        ({"method": "partition"}, ("fence", "power"), True, "HAC507"),
    ],
)
def test_bad_requests_are_refused_before_anything(
    lab: tuple[Path, RoundPlan], options: dict[str, Any], faults: Any, power_control: bool, code: str
) -> None:
    import dataclasses

    r = Run(lab, Scenario(), **options)
    r.power.capabilities = dataclasses.replace(
        r.power.capabilities, power_control=power_control, faults=faults or r.power.capabilities.faults
    )
    with pytest.raises(HacloudError) as info:
        r()
    assert info.value.code == code and info.value.exit_code == 2 and r.world.calls == []


def test_the_registry_has_one_fault_per_method_and_the_cli_offers_exactly_those(tmp_path: Path) -> None:
    import os

    from conftest import run_hacloud

    assert list(FAULTS) == list(FaultMethod) and all(f.method == m for m, f in FAULTS.items())
    assert FAULT_HELP.split("; ")[0] == "fence: through the cluster"
    spec, _ = write_lab_spec(tmp_path, "choices")
    bad = run_hacloud(spec, dict(os.environ), "fence-test", "-y", "--method", "unplug")
    said = " ".join(bad.stderr.replace("│", " ").split())  # click's box wraps the message
    assert bad.returncode == 2 and "is not one of " + ", ".join(f"'{m}'" for m in FAULTS) in said


def test_the_round_waits_on_the_clock_it_is_given(lab: tuple[Path, RoundPlan]) -> None:
    """The manual clock moved through the whole schedule (warm-up, 12 s outage, 3 s settle,
    20 s rejoin, 5 s resync), while the real one barely did: no wait used the system clock."""
    r = Run(lab, Scenario())
    started = SYSTEM.monotonic()
    r()
    assert r.world.clock.slept >= 3 + 12 + 3 + 20 + 5 and SYSTEM.monotonic() - started < 2.0


def test_history_as_the_cli_shows_it(lab: tuple[Path, RoundPlan]) -> None:
    from hacloud.verify.fencetest.runner import all_passed, history_lines, history_of

    r = Run(lab, Scenario(), rounds=2)
    results = r()
    failed = Run(lab, Scenario(tear=1), method="crash", rounds=2)()
    assert all_passed(results, 2) and not all_passed(results, 3) and not all_passed(failed, 2)
    groups = history_of(r.spec_path)
    assert [(g["method"], g["rounds"], g["passed"]) for g in groups] == [("power", 2, 2), ("crash", 1, 0)]
    power, crash = history_lines(groups)
    started = r.history()[0]["started"]
    assert power.startswith("power       2 rounds, 2 passed, lost 0, RTO min 12.0")
    token = r.history()[0]["timers"]["corosync.token"]
    assert f"({started} .. {started}; " in power and f"token {token}," in power
    assert crash.startswith("crash       1 rounds, 0 passed, lost 0")


def test_a_service_fence_test_cannot_measure_is_refused(tmp_path: Path) -> None:
    import yaml

    spec_path, doc = write_lab_spec(tmp_path, "systemd")
    doc["service"] = {"kind": "systemd", "unit": "postgresql"}
    spec_path.write_text(yaml.safe_dump(doc))
    r = Run((spec_path, None), Scenario())  # type: ignore[arg-type]
    with pytest.raises(HacloudError) as info:
        r()
    assert info.value.code == "HAC504" and "demo" in info.value.remedy


def test_the_fakes_and_the_real_adapters_fit_the_same_protocols(lab: tuple[Path, RoundPlan]) -> None:
    """Every provider offers what a round asks of power control (the fakes are typed against
    the same protocol), and the SSH cluster and the client process are what a rig takes."""
    from fencetest_world import FakeCluster, FakeWriter

    from hacloud.provision.provider import PowerControl, provider_names
    from hacloud.verify.fencetest.nodes import NodeCluster
    from hacloud.verify.fencetest.ports import Cluster, Writer
    from hacloud.verify.fencetest.writer import Client

    world = World(Scenario())
    assert isinstance(FakePower(world), PowerControl) and isinstance(FakeCluster(world, lab[1]), Cluster)
    assert isinstance(FakeWriter(world), Writer)
    assert all(isinstance(get_provider(name), PowerControl) for name in provider_names())
    from hacloud.spec.workspace import Workspace

    ws = Workspace(load_spec(lab[0]), lab[0])
    client = Client(
        ws, FakePower(world), "http://127.0.0.1:9", lab[0].parent, rate=1, request_timeout=1, max_seconds=1
    )
    assert isinstance(NodeCluster(Path("x"), {}, [], []), Cluster) and isinstance(client, Writer)
