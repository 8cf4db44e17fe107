"""One fence-test round on a :class:`~hacloud.verify.fencetest.ports.Rig`: preflight, warm-up,
fault, wait, confirm, judge, recover.

Contract: no fault is injected unless preflight passes and the provider reports both nodes on;
the fault is healed (a partition's links restored) and the client stopped whatever happens;
every wait is :func:`hacloud.poll.poll_until` on the rig's clock; Ctrl-C after the fault
becomes an :class:`~hacloud.errors.InterruptedWork` saying what was left behind. Nothing here
prints (progress goes to ``progress``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hacloud.errors import HacloudError, Interrupted
from hacloud.poll import Clock, poll_until
from hacloud.verify.fencetest.analysis import availability, check_data
from hacloud.verify.fencetest.faults import Fault, fault_for, interrupted_after_fault
from hacloud.verify.fencetest.ports import Cluster, Pending, Preflight, Rig, Writer
from hacloud.verify.fencetest.timeline import floor, parse_journal, stage_patterns, stages
from hacloud.verify.fencetest.verdict import (
    ClientObservations,
    ClusterObservations,
    PowerObservations,
    Recovery,
    RoundResult,
    judge,
    timers_of,
)

Progress = Callable[[str], None]
#: with no write failed this long after the fault, the service never stopped answering
NO_OUTAGE_AFTER = 90.0
CONFIRM_OFF_WAIT = 120.0
#: DRBD connection states once the peers talk again (resync included)
CONNECTED = ("Connected", "SyncSource", "SyncTarget", "WFBitMapS")


@dataclass(frozen=True)
class Settings:
    """The round's knobs (seconds), from ``runner.Options``."""

    node: str | None = None
    recover: bool = True
    warmup: float = 3.0
    settle: float = 3.0
    takeover_timeout: float = 180.0
    recover_timeout: float = 300.0


class RoleSampler(threading.Thread):
    """Counts DRBD Primaries across the nodes about once a second (split brain shows as 2).
    The round takes the first sample itself (:meth:`sample`, before the fault); the thread
    samples once more after it is told to stop, so the end of the fault window is seen too."""

    def __init__(self, cluster: Cluster, nodes: tuple[str, ...], clock: Clock, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.nodes, self.clock, self.interval = cluster, nodes, clock, interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, dict[str, bool]]] = []
        self.unreachable: set[str] = set()

    def sample(self) -> None:
        roles: dict[str, bool] = {}
        for name in self.nodes:
            if name in self.unreachable:
                continue
            try:
                roles[name] = self.cluster.is_primary(name)
            except Exception:  # paramiko raises many kinds once a node dies
                self.unreachable.add(name)  # dead, frozen or fenced: it cannot serve either
        self.samples.append((self.clock.time(), roles))

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()
        self.sample()  # the end of the window, after the fault played out

    def max_primaries(self) -> int:
        return max((sum(r.values()) for _, r in self.samples), default=0)


def warm_up(writer: Writer, warmup: float, active: str, clock: Clock) -> None:
    """Steady writes acknowledged by the active node before any fault, or refuse."""

    def steady() -> bool | None:
        acks = [a for a in writer.attempts() if a.ok]
        if len(acks) >= 10 and acks[-1].done - acks[0].done >= warmup:
            if any(a.node != active for a in acks):
                raise HacloudError(
                    f"writes through the VIP were acknowledged by {sorted({a.node or '?' for a in acks})}, "
                    f"not only by the active node {active}",
                    "check that the VIP is not configured on both nodes (`hacloud status`)",
                    code="HAC513",
                )
            return True
        return None

    clock.sleep(0.5)
    if poll_until(steady, timeout=warmup + 30, interval=0.5, clock=clock):
        return
    tried = writer.attempts()
    last = next((a.error for a in reversed(tried) if a.error), "no answer")
    raise HacloudError(
        f"the client could not write steadily through the VIP before the fault ({len(tried)} tries, "
        f"last error: {last})",
        "check the service with `hacloud status`; nothing was injected",
        code="HAC514",
    )


def wait_answering(writer: Writer, t0: float, timeout: float, clock: Clock, progress: Progress) -> bool:
    """Block until a write sent after the outage began is acknowledged (True), or ``timeout``
    seconds pass (False). No failed write within NO_OUTAGE_AFTER s: the service never stopped."""
    reported = False

    def answered() -> bool | None:
        nonlocal reported
        avail = availability(writer.attempts(), t0, final=False)
        if avail.outage_began is not None and not reported:
            progress(f"writes fail since +{avail.outage_began - t0:.1f} s; waiting for the survivor")
            reported = True
        if avail.answered_again is not None:
            progress(
                f"writes acknowledged again by {avail.answered_by} at +{avail.answered_again - t0:.1f} s"
            )
            return True
        if avail.outage_began is None and clock.time() - t0 > NO_OUTAGE_AFTER:
            progress(f"no write failed in {NO_OUTAGE_AFTER:.0f} s: the service never stopped answering")
            return True
        return None

    clock.sleep(0.5)
    return bool(poll_until(answered, timeout=timeout, interval=0.5, clock=clock))


def confirm_off(rig: Rig, victim: str, t0: float) -> PowerObservations:
    """Ask the provider, not the cluster, whether the fenced node is off, and since when."""

    def off() -> bool | None:
        return True if rig.power.power(rig.ws, victim) == "off" else None

    confirmed = poll_until(off, timeout=CONFIRM_OFF_WAIT, interval=1.0, clock=rig.clock)
    events = [when for when, what in rig.power.power_events(rig.ws, victim, t0 - 1) if what == "off"]
    return PowerObservations(bool(confirmed), round(events[0] - t0, 3) if events else None)


def recover(rig: Rig, survivor: str, victim: str, timeout: float, progress: Progress) -> Recovery:
    """Power the fenced node back; it must rejoin, DRBD must resync to UpToDate on every
    resource, and the cluster must report healthy, all within ``timeout`` seconds."""
    progress(f"recovery: powering {victim} back on")
    if rig.power.power(rig.ws, victim) != "on":
        rig.power.power_on(rig.ws, victim)
    clock = rig.clock
    on_at = clock.monotonic()
    deadline = on_at + timeout

    def rejoined() -> float | None:
        if not rig.cluster.online(survivor, victim):
            return None
        return round(clock.monotonic() - on_at, 1)

    clock.sleep(1.0)
    rejoin = poll_until(rejoined, timeout=timeout - 1.0, interval=1.0, clock=clock)
    resync = None
    if rejoin is not None:
        progress(f"recovery: {victim} rejoined the cluster after {rejoin:.0f} s")
        resync = _resynced(rig, survivor, deadline)
    if resync is None:
        progress(f"recovery: {victim} did not come back fully within {timeout:.0f} s")
        return Recovery(False, rejoin, None)
    progress(f"recovery: DRBD {', '.join(rig.plan.resources)} UpToDate on both nodes (resync {resync:.1f} s)")
    healthy = poll_until(
        lambda: True if rig.cluster.healthy() else None,
        timeout=max(deadline - clock.monotonic(), 0.0),
        interval=3.0,
        clock=clock,
    )
    if not healthy:
        progress("recovery: the cluster did not report healthy again (see `hacloud status`)")
    return Recovery(bool(healthy), rejoin, resync)


def _resynced(rig: Rig, survivor: str, deadline: float) -> float | None:
    """Seconds from the peers reconnecting to UpToDate on both sides (None: not by ``deadline``)."""
    clock = rig.clock
    connected_at: float | None = None

    def uptodate() -> float | None:
        nonlocal connected_at
        cstate, dstate = rig.cluster.drbd_state(survivor)
        if connected_at is None and cstate in CONNECTED:
            connected_at = clock.monotonic()
        if cstate == "Connected" and dstate == "UpToDate/UpToDate":
            return round(clock.monotonic() - (connected_at or clock.monotonic()), 1)
        return None

    return poll_until(uptodate, timeout=max(deadline - clock.monotonic(), 0.0), interval=1.0, clock=clock)


def _preflight(rig: Rig, progress: Progress) -> Preflight:
    progress("preflight: cluster health, DRBD, and a status call of every fence device")
    pre = rig.cluster.preflight()
    if pre.problems:
        raise HacloudError(
            "fence-test refused: the cluster is not healthy enough to inject a fault:\n  - "
            + "\n  - ".join(pre.problems),
            "fix these (fence device: check the BMC address, user and password the spec names, then "
            "`hacloud up`; failed actions: `crm_resource --cleanup`), then run fence-test again",
            code="HAC511",
        )
    for name in rig.plan.nodes:
        # fails now, before any fault, when the provider has no power switch for a node
        if rig.power.power(rig.ws, name) != "on":
            raise HacloudError(
                f"the provider does not report {name} powered on; fence-test could not confirm a fence",
                "check the node's BMC (or cloud API) access from this machine",
                code="HAC512",
            )
    return pre


@dataclass(frozen=True)
class FaultWindow:
    """From the fault to the client's stop: when, who lost, and whether the service came back."""

    t0: float
    fenced: str
    survivor: str
    gave_up_after: float | None
    power: PowerObservations
    max_primaries: int


def fault_window(
    rig: Rig, fault: Fault, settings: Settings, pre: Preflight, progress: Progress, injected: list[str]
) -> FaultWindow:
    """Warm up, inject, wait for the survivor, confirm the fence; heal and stop the client on
    the way out whatever happens. ``injected`` gets the victim once the fault is in place."""
    victim, survivor = fault.expected(pre.active, pre.standby, settings.node)
    sampler = RoleSampler(rig.cluster, rig.plan.nodes, rig.clock)
    pending: Pending | None = None
    rig.writer.start()
    try:
        warm_up(rig.writer, settings.warmup, pre.active, rig.clock)
        sampler.sample()  # before the fault: both Primary already is a split brain too
        sampler.start()
        where = "the links between the nodes" if fault.method == "partition" else victim
        progress(f"{fault.method}: injecting the fault on {where}")
        t0 = rig.clock.time()
        injected.append(victim)
        pending = fault.inject(rig, victim, survivor)
        back = wait_answering(rig.writer, t0, settings.takeover_timeout, rig.clock, progress)
        victim, survivor = fault.loser(rig, victim, survivor)
        power = confirm_off(rig, victim, t0)
        rig.clock.sleep(settings.settle)
    finally:
        rig.writer.stop()
        sampler.stop_event.set()
        fault.heal(rig)
    sampler.join(timeout=10)
    if pending is not None:
        pending.join(timeout=5)
    gave_up = None if back else settings.takeover_timeout
    return FaultWindow(t0, victim, survivor, gave_up, power, sampler.max_primaries())


def observe_cluster(
    rig: Rig, method: str, window: FaultWindow, offset: float, victim_was_active: bool
) -> ClusterObservations:
    """The survivor's view: its journal's stages, its final DRBD role, and the timer floor."""
    plan = rig.plan
    events = parse_journal(rig.cluster.journal(window.survivor, window.t0), offset)
    patterns = stage_patterns(
        window.fenced, window.survivor, plan.drbd_id, plan.fs_id, plan.service_id, list(plan.vip_ids)
    )
    final = 1 if rig.cluster.is_primary(window.survivor, timeout=20.0) else 0
    fl = floor(method, plan.profile, victim_was_active=victim_was_active)
    return ClusterObservations(window.max_primaries, final, stages(events, patterns, window.t0), fl)


def play_round(rig: Rig, method: str, settings: Settings, progress: Progress) -> RoundResult:
    """One round on ``rig`` (see the module contract)."""
    fault = fault_for(method)
    injected: list[str] = []  # the fault is in place (cleared once recovered): Ctrl-C must say so
    try:
        pre = _preflight(rig, progress)
        offsets = {name: rig.cluster.clock_offset(name) for name in rig.plan.nodes}
        baseline = int(rig.writer.health().get("last_id", 0))
        started = datetime.fromtimestamp(rig.clock.time(), UTC).isoformat(timespec="seconds")
        window = fault_window(rig, fault, settings, pre, progress, injected)
        attempts = rig.writer.attempts()
        client = ClientObservations(
            availability(attempts, window.t0),
            check_data(attempts, rig.writer.digest(baseline), rig.writer.run_id),
        )
        cluster = observe_cluster(rig, method, window, offsets[window.survivor], window.fenced == pre.active)
        recovery = None
        if settings.recover:
            recovery = recover(rig, window.survivor, window.fenced, settings.recover_timeout, progress)
            if recovery.recovered:
                injected.clear()
        fenced, survivor = window.fenced, window.survivor
        failures = judge(client, cluster, window.power, recovery, fenced, survivor, window.gave_up_after)
        # the timers this round ran with: the nodes' OS variant and the spec's overrides applied
        profile = rig.plan.profile
        return RoundResult(
            method, fenced, survivor, started, client, cluster, window.power, recovery, failures,
            profile=profile.label, timers=timers_of(profile),
        )  # fmt: skip
    except Interrupted:
        if not injected:
            raise  # nothing was done to the cluster yet
        raise interrupted_after_fault(rig.ws, rig.power, method, injected[-1]) from None
