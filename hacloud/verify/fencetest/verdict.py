"""A round's result, built from typed parts, and the judgement over them (pure).

The parts: what the client saw (:class:`ClientObservations`: availability and the data check
from :mod:`~hacloud.verify.fencetest.analysis`), what the cluster showed
(:class:`ClusterObservations`: DRBD Primaries sampled during the round, the stages from the
survivor's journal, the timer floor), what the provider says of the fenced node's power
(:class:`PowerObservations`) and the recovery (:class:`Recovery`).

Contract: :func:`judge` returns one typed :class:`Failure` per condition a round fails on, in
a fixed order, and nothing else decides whether a round passed (no message text is matched
anywhere: a message is rendered from its failure). ``RoundResult.as_dict`` is the flat record
``--json`` prints and the history file keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hacloud.verify.fencetest.analysis import Availability, DataCheck
from hacloud.verify.fencetest.timeline import Floor

if TYPE_CHECKING:
    from hacloud.spec.profiles import Profile


@dataclass(frozen=True)
class ClientObservations:
    """What the client writing through the VIP saw, and what the store holds afterwards."""

    availability: Availability
    data: DataCheck


@dataclass(frozen=True)
class ClusterObservations:
    """What the cluster showed: the most DRBD Primaries seen at once during the round, the
    Primaries on the survivor at the end (0 or 1), the journal's stages (seconds after the
    fault) and the floor the timers allow."""

    max_primaries: int = 0
    final_primaries: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    floor: Floor | None = None


@dataclass(frozen=True)
class PowerObservations:
    """The provider's own record of the fenced node: off when asked, and since when (seconds
    after the fault; None when the provider keeps no power log)."""

    confirmed_off: bool = False
    off_at: float | None = None


@dataclass(frozen=True)
class Recovery:
    recovered: bool
    rejoin_seconds: float | None = None
    resync_seconds: float | None = None


# ---------------------------------------------------------------- failures


@dataclass(frozen=True)
class Failure:
    """One condition a round failed on; ``kind`` is stable, ``message`` for people."""

    kind = "failure"

    def message(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class ServiceNotBack(Failure):
    """No write was acknowledged again: within the wait's limit (``within``), or at all."""

    within: float | None = None
    kind = "service_not_back"

    def message(self) -> str:
        if self.within is not None:
            return f"the service did not answer again within {self.within:.0f} s of the fault"
        return "the service did not answer again"


@dataclass(frozen=True)
class ServedByBoth(Failure):
    nodes: tuple[str, ...] = ()
    kind = "served_by_both"

    def message(self) -> str:
        return f"writes were acknowledged by {' and '.join(self.nodes)} alternately"


@dataclass(frozen=True)
class RecordsLost(Failure):
    count: int = 0
    kind = "records_lost"

    def message(self) -> str:
        return f"{self.count} acknowledged records are missing (RPO > 0)"


@dataclass(frozen=True)
class RecordsTorn(Failure):
    count: int = 0
    kind = "records_torn"

    def message(self) -> str:
        return f"{self.count} records differ from what was written"


@dataclass(frozen=True)
class RecordsDuplicated(Failure):
    count: int = 0
    kind = "records_duplicated"

    def message(self) -> str:
        return f"{self.count} duplicate records"


@dataclass(frozen=True)
class TwoPrimaries(Failure):
    count: int = 2
    kind = "two_primaries"

    def message(self) -> str:
        return f"DRBD was Primary on {self.count} nodes at once"


@dataclass(frozen=True)
class NoPrimaryAtEnd(Failure):
    node: str = ""
    kind = "no_primary_at_end"

    def message(self) -> str:
        return f"DRBD is not Primary on the survivor {self.node} at the end"


@dataclass(frozen=True)
class NotConfirmedOff(Failure):
    node: str = ""
    kind = "not_confirmed_off"

    def message(self) -> str:
        return f"the provider does not report {self.node} off"


@dataclass(frozen=True)
class NotRecovered(Failure):
    node: str = ""
    kind = "not_recovered"

    def message(self) -> str:
        return f"{self.node} did not rejoin and resync"


def judge(
    client: ClientObservations,
    cluster: ClusterObservations,
    power: PowerObservations,
    recovery: Recovery | None,
    fenced: str,
    survivor: str,
    gave_up_after: float | None,
) -> tuple[Failure, ...]:
    """Every condition the round fails on. ``gave_up_after``: the round stopped waiting for
    the service after that many seconds; ``recovery`` None: not attempted (--no-recover)."""
    avail, data = client.availability, client.data
    failures: list[Failure] = []
    if gave_up_after is not None:
        failures.append(ServiceNotBack(gave_up_after))
    elif avail.rto_seconds is None:
        failures.append(ServiceNotBack())
    if avail.interleaved:
        failures.append(ServedByBoth(avail.serving))
    if data.lost:
        failures.append(RecordsLost(len(data.lost)))
    if data.corrupt:
        failures.append(RecordsTorn(len(data.corrupt)))
    if data.duplicates:
        failures.append(RecordsDuplicated(data.duplicates))
    if cluster.max_primaries > 1:
        failures.append(TwoPrimaries(cluster.max_primaries))
    if cluster.final_primaries != 1:
        failures.append(NoPrimaryAtEnd(survivor))
    if not power.confirmed_off:
        failures.append(NotConfirmedOff(fenced))
    if recovery is not None and not recovery.recovered:
        failures.append(NotRecovered(fenced))
    return tuple(failures)


# ---------------------------------------------------------------- the result

#: the profile values a round's outcome depends on, recorded with it
TIMER_KEYS = (
    "corosync.token",
    "corosync.consensus",
    "pacemaker.priority_fencing_delay",
    "fencing.pcmk_delay_max",
    "fencing.pcmk_delay_base",
    "fencing.power_wait",
    "drbd.timeout",
    "drbd.ping_timeout",
)


def timers_of(profile: Profile) -> dict[str, float]:
    """The values of TIMER_KEYS in ``profile`` (the effective one: variant and overrides)."""
    return {key: profile.num(key) for key in TIMER_KEYS}


@dataclass(frozen=True)
class RoundResult:
    """One round: which node was fenced (for partition: the side that lost), its parts, and
    the failures :func:`judge` found (None: not judged, e.g. a result built by hand)."""

    method: str
    node: str
    survivor: str
    started: str
    client: ClientObservations | None = None
    cluster: ClusterObservations = field(default_factory=ClusterObservations)
    power: PowerObservations = field(default_factory=PowerObservations)
    recovery: Recovery | None = None
    failures: tuple[Failure, ...] | None = None
    #: the profile in force for this round (with the nodes' OS variant, e.g. ``azure (rhel)``)
    profile: str = ""
    #: the timers in force for this round (see TIMER_KEYS)
    timers: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.failures == ()

    @property
    def problems(self) -> list[str]:
        """The failures in words, then the data check's notes (which record went where)."""
        notes = list(self.client.data.notes) if self.client else []
        return [f.message() for f in self.failures or ()] + notes

    @property
    def single_primary(self) -> bool:
        interleaved = self.client is not None and self.client.availability.interleaved
        return self.cluster.max_primaries <= 1 and self.cluster.final_primaries == 1 and not interleaved

    @property
    def stages(self) -> dict[str, float]:
        """The journal's stages, then when writes were answered again and when the power went."""
        out = dict(self.cluster.stages)
        if self.rto_seconds is not None:
            out["answering"] = self.rto_seconds
        if self.power.off_at is not None:
            out.setdefault("power_off", self.power.off_at)
        return out

    @property
    def rto_seconds(self) -> float | None:
        return self.client.availability.rto_seconds if self.client else None

    @property
    def floor_seconds(self) -> float | None:
        return self.cluster.floor.total if self.cluster.floor else None

    @property
    def outage_seconds(self) -> float | None:
        return self.client.availability.outage_seconds if self.client else None

    @property
    def acknowledged(self) -> int:
        return self.client.data.acknowledged if self.client else 0

    @property
    def lost(self) -> int:
        return len(self.client.data.lost) if self.client else 0

    @property
    def duplicates(self) -> int:
        return self.client.data.duplicates if self.client else 0

    @property
    def fenced_confirmed_off(self) -> bool:
        return self.power.confirmed_off

    @property
    def recovered(self) -> bool | None:
        return self.recovery.recovered if self.recovery else None

    @property
    def resync_seconds(self) -> float | None:
        return self.recovery.resync_seconds if self.recovery else None

    @property
    def floor_parts(self) -> dict[str, float]:
        return dict(self.cluster.floor.parts) if self.cluster.floor else {}

    def as_dict(self) -> dict[str, Any]:
        """The flat record (``--json``, history), keys in their historical order."""
        avail = self.client.availability if self.client else None
        data = self.client.data if self.client else None
        return {
            "method": str(self.method),
            "node": self.node,
            "survivor": self.survivor,
            "started": self.started,
            "rto_seconds": self.rto_seconds,
            "outage_seconds": self.outage_seconds,
            "floor_seconds": self.floor_seconds,
            "floor_parts": self.floor_parts,
            "stages": self.stages,
            "acknowledged": self.acknowledged,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "corrupt": len(data.corrupt) if data else 0,
            "committed_unacknowledged": data.committed_unacknowledged if data else 0,
            "failed_writes": avail.failed_writes if avail else 0,
            "serving": list(avail.serving) if avail else [],
            "single_primary": self.single_primary,
            "max_primaries": self.cluster.max_primaries,
            "fenced_confirmed_off": self.fenced_confirmed_off,
            "power_off_at": self.power.off_at,
            "recovered": self.recovered,
            "rejoin_seconds": self.recovery.rejoin_seconds if self.recovery else None,
            "resync_seconds": self.resync_seconds,
            "passed": self.passed,
            "problems": self.problems,
            "profile": self.profile,
            "timers": dict(self.timers),
        }
