"""What a fence-test round touches outside itself, as small protocols it is typed against.

A round (:mod:`hacloud.verify.fencetest.round`) talks to three things, each a protocol here:
the provider's power switch (the provider role :class:`~hacloud.provision.provider.PowerControl`,
exactly the provider methods a round calls, so any provider, and a fake in the tests, fits), the
cluster (:class:`Cluster`: its health, its
nodes' DRBD roles and journals, and the two faults injected from a node: a fence request and a
kernel crash) and the client writing through the VIP (:class:`Writer`). A :class:`Rig` bundles
them with the clock every wait runs on and the :class:`RoundPlan` (pure data from the spec and
the renderer). Production builds a rig over SSH (:func:`hacloud.verify.fencetest.runner.open_rig`);
the tests build one over a simulated pair driven by :class:`hacloud.poll.ManualClock`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hacloud.poll import SYSTEM, Clock
from hacloud.provision.provider import PowerControl

if TYPE_CHECKING:
    from hacloud.spec.profiles import Profile
    from hacloud.spec.workspace import Workspace
    from hacloud.verify.fencetest.analysis import Attempt


class Pending(Protocol):
    """Something started in the background (a fence request still running on a node)."""

    def join(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True)
class Preflight:
    """The cluster before any fault: where the service runs, the other node, and every reason
    it is not healthy enough to be failed on purpose (empty: go ahead)."""

    active: str
    standby: str
    problems: list[str]


@runtime_checkable
class Cluster(Protocol):
    """The cluster's own view, read from its nodes, and the faults injected through a node.
    Each read is one small method so the node-query layer can replace its insides."""

    def preflight(self) -> Preflight: ...
    def clock_offset(self, node: str) -> float: ...
    def journal(self, node: str, since: float) -> str: ...
    def is_primary(self, node: str, timeout: float = 3.0) -> bool: ...  # raises: no answer
    def online(self, asked: str, node: str) -> bool: ...
    def drbd_state(self, node: str) -> tuple[str, str]: ...
    def healthy(self) -> bool: ...
    def request_fence(self, survivor: str, victim: str, timeout: int) -> Pending: ...
    def crash_kernel(self, node: str) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """The client writing sequenced records through the VIP, and reading them back."""

    run_id: str

    def health(self) -> dict[str, Any]: ...
    def start(self) -> None: ...
    def attempts(self) -> list[Attempt]: ...
    def stop(self) -> None: ...
    def digest(self, after: int) -> list[list[Any]]: ...


@dataclass(frozen=True)
class RoundPlan:
    """What a round needs to know about the cluster, from the spec and the renderer (pure):
    its nodes, fence devices (id, target), the resource ids the failover stages are timed on
    (the first volume's DRBD resource and filesystem, where the demo keeps its records), the
    profile in force and the cluster's fencing timeout."""

    nodes: tuple[str, str]
    devices: tuple[tuple[str, str], ...]
    drbd_id: str
    fs_id: str
    service_id: str
    vip_ids: tuple[str, ...]
    resources: tuple[str, ...]  # every DRBD resource: recovery waits for all of them
    profile: Profile
    fence_timeout: int


@dataclass
class Rig:
    """Everything one round touches, and the clock its waits run on."""

    ws: Workspace
    power: PowerControl
    cluster: Cluster
    writer: Writer
    plan: RoundPlan
    clock: Clock = field(default=SYSTEM)
