"""What "healthy" means, decided once (pure): `up`, `status`, `failover` and fence-test's
preflight all judge a :class:`~hacloud.deploy.query.status.ClusterStatus` with :func:`judge`.

Contract: :func:`judge` returns every reason the cluster is not healthy, in a stable order
(empty: healthy), each typed by ``kind`` and naming the resource or node it is about, so
callers decide on kinds, never on message text. :func:`leftover_failures` is `up`'s decision
about failed actions: the ones recorded before its run whose resource runs again are cleaned
(Pacemaker keeps a failure until someone cleans it, even after the resource recovered), the
others are reported with how to fix them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from hacloud.deploy.query.pacemaker import ClusterView, FailedAction
from hacloud.deploy.query.status import ClusterStatus, drbd_summary

Kind = Literal[
    "unreachable",
    "no-answer",
    "maintenance",
    "node",
    "quorum",
    "drbd",
    "primary",
    "split-brain",
    "service",
    "service-failed",
    "fencing-off",
    "fence-device",
    "failed-action",
]

#: Kinds that waiting does not change: Pacemaker keeps a failure until it is cleaned (and
#: does not start a resource again where its start failed: start-failure-is-fatal), and
#: nobody but the operator turns fencing or maintenance mode back.
STABLE: frozenset[Kind] = frozenset({"failed-action", "service-failed", "fencing-off", "maintenance"})


@dataclass(frozen=True)
class Reason:
    """One cause of ill health: ``text`` is what `status` prints, ``resource``/``node`` what
    it is about (for decisions), ``failure`` the failed action for kind ``failed-action``."""

    kind: Kind
    text: str
    resource: str | None = None
    node: str | None = None
    failure: FailedAction | None = None


@dataclass(frozen=True)
class Health:
    reasons: tuple[Reason, ...]

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def texts(self) -> list[str]:
        return [r.text for r in self.reasons]

    def only(self, kinds: Collection[Kind]) -> bool:
        """Every reason is of one of ``kinds`` (true when healthy)."""
        return all(r.kind in kinds for r in self.reasons)


def judge(status: ClusterStatus) -> Health:
    """Why ``status`` is not healthy (see the module doc). With no answer from Pacemaker,
    fencing and quorum are unknown, not off: it says why nothing answered."""
    reasons = [
        Reason("unreachable", f"not reachable: {n.unreachable}", node=n.name)
        for n in status.nodes
        if n.unreachable is not None
    ]
    if status.view is None:
        return Health((*reasons, _no_answer(status)))
    reasons += _membership(status)
    reasons += _drbd(status)
    reasons += _service(status)
    reasons += _fencing(status)
    reasons += [
        Reason("failed-action", f"failed action: {f.line()}", f.resource, f.node, f)
        for f in status.view.failures
    ]
    return Health(tuple(reasons))


def _no_answer(status: ClusterStatus) -> Reason:
    reachable = [n.name for n in status.nodes if n.reachable]
    if reachable:
        return Reason(
            "no-answer",
            f"crm_mon answered on no reachable node ({', '.join(reachable)}): pacemaker is "
            "not running or not configured, so quorum, fencing and the service are unknown",
        )
    return Reason("no-answer", "no node answered: quorum, fencing and the service are unknown")


def _membership(status: ClusterStatus) -> list[Reason]:
    assert status.view is not None
    view = status.view
    reasons = [
        Reason("node", f"{n.name}: not online in the cluster", node=n.name)
        for n in status.nodes
        if not n.online
    ]
    for node in view.nodes:
        if node.unclean:
            reasons.append(Reason("node", f"{node.name}: UNCLEAN (to be fenced)", node=node.name))
        if node.standby:
            reasons.append(Reason("node", f"{node.name}: in standby (runs no resources)", node=node.name))
    if not view.quorum:
        reasons.append(Reason("quorum", "the cluster has no quorum"))
    if view.maintenance:
        reasons.append(
            Reason(
                "maintenance", "the cluster is in maintenance mode: Pacemaker monitors and recovers nothing"
            )
        )
    return reasons


def _drbd(status: ClusterStatus) -> list[Reason]:
    """Each reachable node's volumes UpToDate and connected, all configured; each DRBD resource
    Primary on exactly one node, all on the same one (the group's); none StandAlone."""
    reasons = []
    for n in status.nodes:
        if n.volumes is None:
            continue
        summary = drbd_summary(n.volumes)
        if summary["drbd_disk"] != "UpToDate" or summary["drbd_connection"] != "Connected":
            text = f"{n.name}: DRBD is {summary['drbd_disk'] or '?'} / {summary['drbd_connection'] or '?'}"
            reasons.append(Reason("drbd", text, node=n.name))
        elif any(v.peer_disk != "UpToDate" for v in n.volumes):
            reasons.append(Reason("drbd", f"{n.name}: DRBD's peer disk is not UpToDate", node=n.name))
        missing = status.expected.volumes - len(n.volumes)
        if missing:
            reasons.append(
                Reason(
                    "drbd", f"{n.name}: {missing} DRBD volume(s) of the spec are not configured", node=n.name
                )
            )
    primaries = status.primaries
    for res in status.expected.drbd_resources:
        where = primaries.get(res, [])
        if len(where) != 1:
            reasons.append(
                Reason("primary", f"DRBD {res} is Primary on {len(where)} nodes (want exactly 1)", res)
            )
    if len({n for names in primaries.values() for n in names}) > 1:
        reasons.append(
            Reason("primary", "DRBD resources are Primary on different nodes (the group needs all on one)")
        )
    reasons += [
        Reason(
            "split-brain", f"DRBD {sb['resource']} is StandAlone (see the steps below)", str(sb["resource"])
        )
        for sb in status.split_brain
    ]
    return reasons


def _service(status: ClusterStatus) -> list[Reason]:
    """The service runs: every member of the service group (filesystems, the service, the
    VIPs) Started and not FAILED on one node, every DRBD promotion there too. A member that is
    Starting or Stopping is a reason like any other: `up` waits for it to settle."""
    assert status.view is not None
    view, service = status.view, status.service_node
    if service is None:
        return [Reason("service", "the service is not running", status.expected.filesystems[0])]
    members = status.expected.group or status.expected.filesystems
    reasons = [r for r in (_member(view, rid, service) for rid in members) if r is not None]
    for rid in status.expected.drbd_primitives:
        promoted = view.promoted_on(rid)
        if promoted != [service]:
            where = ", ".join(promoted) or "no node"
            reasons.append(Reason("service", f"{rid} is promoted on {where}, not on {service}", rid))
    return reasons


def _member(view: ClusterView, rid: str, service: str) -> Reason | None:
    """Why group member ``rid`` does not run with the service on node ``service`` (None: it
    does). Kind ``service-failed`` when waiting will not bring it up: an instance is FAILED,
    or it is stopped and its start failed on ``service`` (Pacemaker will not retry it there
    until the failure is cleaned); kind ``service`` while it is Starting, Stopping or not yet
    started, which `up` waits for."""
    placed = view.placements(rid)
    if view.started_on(rid) == service and not any(p.failed for p in placed):
        return None
    stopped = all(p.node is None or p.role == "Stopped" for p in placed)
    start_failed = any(f.resource == rid and f.node == service and f.task == "start" for f in view.failures)
    stuck = any(p.failed for p in placed) or (stopped and start_failed)
    text = f"{rid} is {_where(view, rid)}, not Started on {service} with the service"
    return Reason("service-failed" if stuck else "service", text, rid, service)


def _where(view: ClusterView, rid: str) -> str:
    """How crm_mon shows a resource: "Starting on node1", "FAILED on node1", "Stopped"."""
    placed = view.placements(rid)
    if not placed:
        return "not in Pacemaker's view"
    shown = [("FAILED" if p.failed else p.role or "?") + (f" on {p.node}" if p.node else "") for p in placed]
    return ", ".join(shown)


def _fencing(status: ClusterStatus) -> list[Reason]:
    assert status.view is not None
    reasons = []
    if not status.view.fencing_enabled:
        reasons.append(Reason("fencing-off", "fencing is disabled (stonith-enabled/fencing-enabled false)"))
    reasons += [
        Reason("fence-device", f"fence device {f.id} is {f.state}", f.id, f.node)
        for f in status.fencing
        if f.state != "Started"
    ]
    return reasons


# ---------------------------------------------------------------- `up`'s leftovers


def recovered(status: ClusterStatus, health: Health, rid: str) -> bool:
    """Resource ``rid`` runs again as it should: an instance is active and none is FAILED,
    a fence device not on the node it fences, and no reason other than its recorded failures
    is about it."""
    if status.view is None:
        return False
    view = status.view
    running = view.running_on(rid)
    if not running or any(p.failed for p in view.placements(rid)):
        return False
    targets = dict(status.expected.fence_devices)
    if rid in targets and targets[rid] in running:
        return False
    return not any(r.resource == rid and r.kind != "failed-action" for r in health.reasons)


def leftover_failures(
    status: ClusterStatus, health: Health, before: Collection[tuple[str, str, str]]
) -> tuple[list[FailedAction], list[FailedAction]]:
    """(to clean, to report) among the failed actions: a failure recorded ``before`` `up`
    started (its :attr:`~FailedAction.key`) whose resource has :func:`recovered` is a leftover
    to clean; any other failure is news the operator must see."""
    clean: list[FailedAction] = []
    report: list[FailedAction] = []
    for reason in health.reasons:
        f = reason.failure
        if f is None:
            continue
        (clean if f.key in before and recovered(status, health, f.resource) else report).append(f)
    return clean, report


def cleanup_command(failure: FailedAction) -> str:
    """Clear one resource's failures on one node (Pacemaker re-probes it there)."""
    import shlex

    rsc, node = shlex.quote(failure.resource), shlex.quote(failure.node)
    return f"crm_resource --cleanup --resource {rsc} --node {node}"


def resync_left(status: ClusterStatus) -> int | None:
    """KiB a running DRBD resync still has to copy (the kernel's out-of-sync count on the
    nodes where a volume is SyncSource/SyncTarget, paused or not); None when none runs. `up`
    keeps waiting while this shrinks: a large resync outlasts any fixed timeout."""
    left = [
        v.out_of_sync_kib or 0
        for n in status.nodes
        for v in n.volumes or ()
        if v.replication in ("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT")
    ]
    return sum(left) if left else None
