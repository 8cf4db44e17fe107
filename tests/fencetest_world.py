"""A simulated HA pair for fence-test's round: the provider's power switch, the cluster's reads
and a client writing through the VIP, all on one :class:`hacloud.poll.ManualClock`, so a whole
round (inject, wait, judge, recover) runs in milliseconds without root, guests or network.

The pair behaves as the lab does, on a schedule a test can bend (:class:`Scenario`): node1 is
active; a fault stops it answering at once; the cluster fences the loser ``fence_after``
seconds later (``power`` pulls the plug at the fault itself); the survivor answers writes
``takeover`` seconds after the fault; the node powered back on rejoins after ``rejoin_after``
seconds and DRBD resyncs in ``resync`` more. Everything a round judges (which writes were
acknowledged by whom, what the store holds, DRBD roles, the provider's power record, the
journal's milestones) is derived from that schedule, never from what the round concluded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hacloud.poll import ManualClock
from hacloud.provision.provider import Capabilities
from hacloud.verify.fencetest.analysis import Attempt
from hacloud.verify.fencetest.ports import Preflight, Rig, RoundPlan

ACTIVE, STANDBY = "node1", "node2"


@dataclass
class Scenario:
    takeover: float = 12.0  # seconds from the fault until the survivor acknowledges writes
    fence_after: float = 6.0  # seconds from the fault until the cluster's fence cuts the power
    rejoin_after: float = 20.0  # seconds from power-on until the node is online again
    resync: float = 5.0  # seconds from rejoining until DRBD is UpToDate on both sides
    lose_before_fault: float = 0.0  # acknowledged writes of the last N seconds not replicated
    duplicate: int = 0  # records the survivor's store holds twice
    tear: int = 0  # stored records whose content differs from what was written
    dual_primary: bool = False  # the standby is DRBD Primary too (allow-two-primaries)
    fence_cuts_power: bool = True  # False: the fence reports success, the node stays on
    never_back: bool = False  # the survivor never serves
    victim_serves_for: float = 0.0  # seconds the failed node still acknowledges after the fault
    survivor_promotes: bool = True  # False: writes acknowledged with DRBD not Primary there
    before: tuple[str | None, ...] = (ACTIVE,)  # who serves before the fault, write by write
    old_serves_again: bool = False  # the fenced node acknowledges again after the takeover
    never_rejoins: bool = False
    never_healthy: bool = False
    partition_loser: str = STANDBY
    both_fenced: bool = False
    can_freeze: bool = True
    preflight_problems: list[str] = field(default_factory=list)
    powered_off_before: set[str] = field(default_factory=set)
    clock_offset: float = 0.0  # the nodes' clocks minus this machine's


class World:
    """The pair's state on a manual clock; the three fakes below read and change it."""

    def __init__(self, scenario: Scenario, rate: float = 20.0) -> None:
        self.s, self.rate = scenario, rate
        self.clock = ManualClock()
        self.fault: str | None = None
        self.fault_at: float | None = None
        self.loser = self.survivor = ""
        self.frozen: set[str] = set()
        self.partitioned = False
        self.on_at: float | None = None
        self.calls: list[str] = []  # what the round asked of the provider and the cluster

    def now(self) -> float:
        return self.clock.time()

    def inject(self, kind: str, victim: str) -> None:
        assert self.fault is None, "one fault per round"
        self.fault, self.fault_at, self.loser = kind, self.now(), victim
        self.survivor = ACTIVE if victim == STANDBY else STANDBY

    def off_at(self, node: str) -> float | None:
        """When the node lost power (by the test or the cluster's fence), None: it did not."""
        if node in self.s.powered_off_before:
            return 0.0
        if self.fault_at is None or not self.s.fence_cuts_power:
            return None
        if self.s.both_fenced and self.fault == "partition":
            return self.fault_at + self.s.fence_after
        if node != self.loser:
            return None
        return self.fault_at + (0.0 if self.fault == "power" else self.s.fence_after)

    def powered(self, node: str, t: float | None = None) -> bool:
        t = self.now() if t is None else t
        off = self.off_at(node)
        if off is None or t < off:
            return True
        return self.on_at is not None and t >= self.on_at

    def answering(self, node: str) -> bool:
        """The node answers over SSH (on, not frozen)."""
        return self.powered(node) and node not in self.frozen

    def serving(self, t: float) -> str | None:
        """Who acknowledges a write sent at ``t``."""
        if self.fault_at is None or t < self.fault_at:
            return self.s.before[int(t * self.rate) % len(self.s.before)]
        if t < self.fault_at + self.s.victim_serves_for:
            return self.loser
        if self.s.never_back:
            return None
        back = self.fault_at + self.s.takeover
        if self.s.old_serves_again and back + 2 <= t < back + 3:
            return self.loser
        return self.survivor if t >= back else None

    def rejoined(self) -> float | None:
        if self.on_at is None or self.s.never_rejoins:
            return None
        at = self.on_at + self.s.rejoin_after
        return at if self.now() >= at else None


class FakePower:
    """:class:`~hacloud.verify.fencetest.ports.PowerControl` of the simulated pair."""

    name = "fake"

    def __init__(
        self, world: World, faults: tuple[str, ...] = ("fence", "power", "crash", "partition")
    ) -> None:
        self.world = world
        self.capabilities = Capabilities(create_nodes=False, power_control=True, faults=faults)

    def capabilities_for(self, spec: Any) -> Capabilities:
        return self.capabilities

    def power(self, ws: Any, node: str) -> str:
        return "on" if self.world.powered(node) else "off"

    def power_off(self, ws: Any, node: str) -> None:
        self.world.calls.append(f"power_off {node}")
        self.world.inject("power", node)

    def power_on(self, ws: Any, node: str) -> None:
        self.world.calls.append(f"power_on {node}")
        self.world.on_at = self.world.now()
        self.world.frozen.discard(node)

    def power_events(self, ws: Any, node: str, since: float) -> list[tuple[float, str]]:
        w = self.world
        off = w.off_at(node)
        events = [] if off is None or off > w.now() else [(off, "off")]
        if w.on_at is not None and off is not None:
            events.append((w.on_at, "on"))
        return [e for e in events if e[0] >= since]

    def freeze(self, ws: Any, node: str) -> bool:
        self.world.calls.append(f"freeze {node}")
        if not self.world.s.can_freeze:
            return False
        self.world.inject("crash", node)
        self.world.frozen.add(node)
        return True

    def partition(self, ws: Any, cut: bool) -> None:
        self.world.calls.append(f"partition {'cut' if cut else 'heal'}")
        if cut:
            self.world.inject("partition", self.world.s.partition_loser)
        self.world.partitioned = cut

    def power_on_hint(self, ws: Any, node: str) -> str:
        return f"power {node} on"

    def power_cycle_hint(self, ws: Any, node: str) -> str:
        return f"power-cycle {node}"

    def freeze_hint(self, node: str) -> str:
        return f"{node} was frozen"

    def client_command(self, ws: Any, argv: list[str]) -> list[str]:
        return argv


class Done:
    def join(self, timeout: float | None = None) -> None:
        return None


class FakeCluster:
    """:class:`~hacloud.verify.fencetest.ports.Cluster` of the simulated pair."""

    def __init__(self, world: World, plan: RoundPlan) -> None:
        self.world, self.plan = world, plan

    def preflight(self) -> Preflight:
        return Preflight(ACTIVE, STANDBY, list(self.world.s.preflight_problems))

    def clock_offset(self, node: str) -> float:
        return self.world.s.clock_offset

    def journal(self, node: str, since: float) -> str:
        """The survivor's milestones as journald records them (node clock, microseconds)."""
        w, p = self.world, self.plan
        if w.fault_at is None:
            return ""
        v, s, back = w.loser, w.survivor, w.s.takeover  # seconds after the fault
        lines = [
            (1.0, "A processor failed, forming new configuration"),
            (2.0, f"Node {v} state is now lost"),
            (2.5, f"Requesting fencing (reboot) targeting node {v}"),
            (w.s.fence_after, f"Operation 'reboot' targeting {v} by {s} for pacemaker-controld: OK"),
            (back - 4, f"Result of promote operation for {p.drbd_id} on {s}: ok"),
            (back - 3, f"Result of start operation for {p.fs_id} on {s}: ok"),
            (back - 2, f"Result of start operation for {p.service_id} on {s}: ok"),
        ]
        lines += [(back - 1, f"Result of start operation for {vip} on {s}: ok") for vip in p.vip_ids]
        return "".join(
            json.dumps(
                {"MESSAGE": m, "__REALTIME_TIMESTAMP": str(int((w.fault_at + at + w.s.clock_offset) * 1e6))}
            )
            + "\n"
            for at, m in lines
        )

    def is_primary(self, node: str, timeout: float = 3.0) -> bool:
        w = self.world
        if not w.answering(node):
            raise OSError(f"{node}: no route to host")
        if node == STANDBY and w.s.dual_primary:
            return True
        if w.fault_at is not None and node == w.survivor and node != ACTIVE:
            return w.s.survivor_promotes and w.now() >= w.fault_at + w.s.takeover - 4
        return node == ACTIVE

    def online(self, asked: str, node: str) -> bool:
        return node != self.world.loser or self.world.rejoined() is not None

    def drbd_state(self, node: str) -> tuple[str, str]:
        joined = self.world.rejoined()
        if joined is None:
            return "WFConnection", "UpToDate/DUnknown"
        if self.world.now() < joined + self.world.s.resync:
            return "SyncSource", "UpToDate/Inconsistent"
        return "Connected", "UpToDate/UpToDate"

    def healthy(self) -> bool:
        joined = self.world.rejoined()
        done = joined is not None and self.world.now() >= joined + self.world.s.resync
        return done and not self.world.s.never_healthy

    def request_fence(self, survivor: str, victim: str, timeout: int) -> Done:
        self.world.calls.append(f"stonith_admin --fence {victim} from {survivor} --timeout {timeout}")
        self.world.inject("fence", victim)
        return Done()

    def crash_kernel(self, node: str) -> None:
        self.world.calls.append(f"sysrq crash {node}")
        self.world.inject("crash", node)
        self.world.frozen.add(node)


def sha(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


class FakeWriter:
    """:class:`~hacloud.verify.fencetest.ports.Writer`: writes at ``rate`` a second to whoever
    serves, each answered 10 ms later (or failing after a 1 s timeout), into one store."""

    run_id = "fake-run"

    def __init__(self, world: World) -> None:
        self.world = world
        self.started: float | None = None
        self.sent = 0
        self.log: list[Attempt] = []
        self.store: list[tuple[int, str, str, float]] = [(1, sha("older"), "older record", 0.0)]

    def health(self) -> dict[str, Any]:
        return {"last_id": len(self.store), "node": self.world.serving(self.world.now())}

    def start(self) -> None:
        self.started = self.world.now()

    def stop(self) -> None:
        self.attempts()
        self.started = None

    def attempts(self) -> list[Attempt]:
        w = self.world
        while self.started is not None:
            at = self.started + self.sent / w.rate
            if at + 1.0 > w.now():  # an answer not in yet
                break
            self.sent += 1
            body = f"hacloud-fencetest {self.run_id} {self.sent}"
            node = w.serving(at)
            if node is None:
                self.log.append(Attempt(self.sent, sha(body), at, at + 1.0, False, error="TimeoutError"))
                continue
            rid = len(self.store) + 1
            self.store.append((rid, sha(body), body, at))
            self.log.append(Attempt(self.sent, sha(body), at, at + 0.01, True, rid, node))
        return list(self.log)

    def digest(self, after: int) -> list[list[Any]]:
        """What the survivor's store holds after ``after``: the scenario's losses, tears and
        duplicates applied to what was acknowledged."""
        w, s = self.world, self.world.s
        kept = [
            r
            for r in self.store
            if not (w.fault_at is not None and w.fault_at - s.lose_before_fault <= r[3] < w.fault_at)
        ]
        rows: list[list[Any]] = [[rid, digest, first] for rid, digest, first, _ in kept if rid > after]
        for row in rows[: s.tear]:
            row[1] = sha("torn " + row[2])
        rows += [[len(self.store) + 1 + i, *rows[-1 - i][1:]] for i in range(s.duplicate)]
        return rows


@contextmanager
def rig_of(world: World, plan: RoundPlan, ws: Any, power: FakePower) -> Iterator[Rig]:
    yield Rig(ws, power, FakeCluster(world, plan), FakeWriter(world), plan, world.clock)
