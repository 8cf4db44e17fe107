"""The cluster's state as typed, frozen data: gathered over the nodes' connections (I/O), judged
elsewhere (:mod:`hacloud.deploy.query.health`, pure).

Contract: :func:`gather` only reads (crm_mon, the DRBD kernel state, the kernel log when a
volume is StandAlone, the fencing history) and never raises for a node that does not answer:
what it could not read is None/empty and the judge says so. :func:`as_json` is the
``hacloud status --json`` document (a user contract: its keys and meaning do not change).
Resource ids come from the renderer (:class:`Expected`), never from string prefixes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hacloud.deploy.query.drbd import (
    SPLIT_BRAIN_LOG,
    VolumeState,
    link_state,
    read_volumes,
    split_brain_report,
)
from hacloud.deploy.query.pacemaker import ClusterView, crm_mon
from hacloud.render.resources import GROUP_ID, drbd_resources, filesystem_ids, primitive_id_of_drbd

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection
    from hacloud.deploy.session import Session
    from hacloud.render import Bundle
    from hacloud.spec.inventory import Inventory
    from hacloud.spec.model import Spec
    from hacloud.spec.workspace import Workspace


@dataclass(frozen=True)
class Expected:
    """What the rendered configuration says must run: ids exactly as the renderer wrote them."""

    drbd_resources: tuple[str, ...]  # DRBD resource names
    drbd_primitives: tuple[str, ...]  # their ocf:linbit:drbd primitive ids
    filesystems: tuple[str, ...]  # Filesystem primitive ids, the service's data first
    fence_devices: tuple[tuple[str, str], ...]  # (device id, the node it fences)
    volumes: int  # DRBD volumes per node
    group: tuple[str, ...] = ()  # every member of the service group, in start order
    vips: tuple[str, ...] = ()  # the VIP primitive ids among them

    @classmethod
    def of(cls, spec: Spec, bundle: Bundle) -> Expected:
        resources = drbd_resources(spec)
        group = service_group(bundle.cib)
        filesystems = tuple(filesystem_ids(spec))
        return cls(
            tuple(r.name for r in resources),
            tuple(primitive_id_of_drbd(r.name) for r in resources),
            filesystems,
            tuple((d.primitive.id, d.target) for d in bundle.fence_devices),
            len(spec.volumes),
            group,
            # the renderer's group is filesystems, the service, then the VIPs (render.cib.group_members)
            group[len(filesystems) + 1 :],
        )


def service_group(cib: str) -> tuple[str, ...]:
    """The primitive ids of the service group in the rendered CIB ``cib``, in the group's
    (start) order: what must run, read from what was written rather than rebuilt."""
    root = ET.fromstring(cib)
    group = root.find(f"./configuration/resources/group[@id='{GROUP_ID}']")
    return tuple(p.get("id", "") for p in group.iterfind("./primitive")) if group is not None else ()


@dataclass(frozen=True)
class NodeStatus:
    """One node: reachable over SSH (else why not), online in Pacemaker, its DRBD volumes as its
    kernel reports them (None when it could not be asked)."""

    name: str
    address: str
    bmc: str | None
    unreachable: str | None  # why SSH failed; None: reachable
    online: bool
    volumes: tuple[VolumeState, ...] | None
    split_brain_logged: bool = False

    @property
    def reachable(self) -> bool:
        return self.unreachable is None


@dataclass(frozen=True)
class FenceDeviceStatus:
    id: str
    target: str
    state: str  # Started, Stopped, FAILED role, ...
    node: str | None


@dataclass(frozen=True)
class ClusterStatus:
    """Everything `hacloud status` shows, before judging. ``view`` is None when no node's
    Pacemaker answered: quorum, fencing and the service are then unknown, not off."""

    cluster: str
    vip: str | None
    expected: Expected
    nodes: tuple[NodeStatus, ...]
    view: ClusterView | None
    fencing: tuple[FenceDeviceStatus, ...]
    fencing_history: tuple[str, ...]
    split_brain: tuple[Mapping[str, object], ...]

    @property
    def service_node(self) -> str | None:
        """Where the service's first filesystem is Started (the group runs there)."""
        if self.view is None or not self.expected.filesystems:
            return None
        return self.view.started_on(self.expected.filesystems[0])

    @property
    def vip_node(self) -> str | None:
        """The node where every VIP primitive really runs (Started, not FAILED; Azure's VIP is
        an address and a load-balancer probe listener, both needed), else None; with no VIP
        primitive in the group (none rendered), where the service runs."""
        if not self.expected.vips:
            return self.service_node
        if self.view is None:
            return None
        view = self.view
        nodes = {_running_started(view, rid) for rid in self.expected.vips}
        return nodes.pop() if len(nodes) == 1 else None

    @property
    def primaries(self) -> dict[str, list[str]]:
        """DRBD resource -> the nodes whose kernel reports it Primary."""
        out: dict[str, list[str]] = {}
        for node in self.nodes:
            for v in node.volumes or ():
                if v.role == "Primary" and v.resource and node.name not in out.get(v.resource, []):
                    out.setdefault(v.resource, []).append(node.name)
        return out


def gather(
    spec: Spec,
    inventory: Inventory,
    bundle: Bundle,
    conns: Mapping[str, Connection],
    unreachable: Mapping[str, str],
    *,
    history: bool = True,
) -> ClusterStatus:
    """Read the cluster's state over ``conns`` (read-only; see the module doc)."""
    expected = Expected.of(spec, bundle)
    resources = drbd_resources(spec)
    view = next((v for v in (crm_mon(c) for c in conns.values()) if v is not None), None)
    online = view.online_nodes() if view is not None else []
    nodes = []
    for node in inventory.nodes:
        conn = conns.get(node.name)
        volumes = tuple(read_volumes(conn, resources)) if conn is not None else None
        logged = conn is not None and any(v.standalone for v in volumes or ()) and _split_brain_logged(conn)
        nodes.append(
            NodeStatus(
                node.name,
                node.ssh_address,
                node.bmc_address or None,
                None if conn is not None else unreachable.get(node.name, f"{node.name}: not reachable"),
                node.name in online,
                volumes,
                logged,
            )
        )
    fencing = (
        tuple(_fence_device(view, rid, target) for rid, target in expected.fence_devices) if view else ()
    )
    vip = getattr(spec.vip, "address", None) or getattr(spec.vip, "elastic_ip", None)
    status = ClusterStatus(
        spec.cluster.name, str(vip) if vip else None, expected, tuple(nodes), view, fencing, (), ()
    )
    states = {n.name: list(n.volumes) for n in status.nodes if n.volumes is not None}
    logged_on = {n.name: n.split_brain_logged for n in status.nodes if n.split_brain_logged}
    report = tuple(split_brain_report(states, logged_on, status.service_node))
    hist = _fencing_history(next(iter(conns.values()))) if history and conns else ()
    return ClusterStatus(status.cluster, status.vip, expected, status.nodes, view, fencing, hist, report)


def _running_started(view: ClusterView, rid: str) -> str | None:
    """The node where primitive ``rid`` is Started and not FAILED (crm_mon keeps the role
    Started on a failed instance), else None."""
    node = view.started_on(rid)
    return node if node is not None and not any(p.failed for p in view.placements(rid)) else None


def member_json(view: ClusterView | None, rid: str) -> dict[str, Any]:
    """One service group member as crm_mon shows it: its role (Started, Starting, Stopped...),
    whether it is FAILED, and its node (None when it runs nowhere or nobody answered)."""
    placed = view.placements(rid) if view is not None else ()
    first = placed[0] if placed else None
    return {
        "id": rid,
        "role": (first.role if first else "Stopped") if view is not None else None,
        "failed": bool(first and first.failed),
        "node": first.node if first else None,
    }


def _fence_device(view: ClusterView, rid: str, target: str) -> FenceDeviceStatus:
    placed = view.placements(rid)
    first = placed[0] if placed else None
    return FenceDeviceStatus(rid, target, first.role if first else "Stopped", first.node if first else None)


def _split_brain_logged(conn: Connection) -> bool:
    """Whether this node's kernel log holds DRBD's unresolved split-brain message."""
    cmd = f"dmesg 2>/dev/null | grep -c '{SPLIT_BRAIN_LOG}' || true"
    out = conn.run(cmd, check=False, timeout=30).stdout.strip()
    return out.isdigit() and int(out) > 0


def _fencing_history(conn: Connection) -> tuple[str, ...]:
    hist = conn.run("stonith_admin --history '*' 2>/dev/null | tail -5", check=False).stdout
    return tuple(line.strip() for line in hist.splitlines() if line.strip())


# ---------------------------------------------------------------- the --json document


def drbd_summary(volumes: Sequence[VolumeState]) -> dict[str, str | None]:
    """One node's DRBD in three words for the status table: the role when every resource has
    the same one (else each ``res:role``); the disk and link state when every volume agrees,
    else the first that is not UpToDate / Connected (the one to look at)."""
    if not volumes:
        return {"drbd_role": None, "drbd_disk": None, "drbd_connection": None}
    by_res = {v.resource: v.role for v in volumes}
    roles = set(by_res.values())
    role = next(iter(roles)) if len(roles) == 1 else ",".join(f"{r}:{o or '?'}" for r, o in by_res.items())
    disk = next((v.disk for v in volumes if v.disk != "UpToDate"), "UpToDate")
    links = [link_state(v) for v in volumes]
    conn = next((c for c in links if c != "Connected"), "Connected")
    return {"drbd_role": role, "drbd_disk": disk, "drbd_connection": conn}


def node_json(node: NodeStatus, expected_volumes: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": node.name,
        "address": node.address,
        "online": node.online,
        "reachable": node.reachable,
        "drbd_role": None,
        "drbd_disk": None,
        "drbd_connection": None,
        "sync": None,
        "drbd": [],  # every volume, as the node's kernel reports it
    }
    if node.bmc:
        entry["bmc"] = node.bmc
    if node.volumes is None:
        return entry
    syncing = next((v for v in node.volumes if v.progress is not None), None)
    entry.update(
        drbd_summary(node.volumes),
        sync=f"{syncing.progress:g}%" if syncing and syncing.progress is not None else None,
        drbd=[v.as_dict() for v in node.volumes],
    )
    if len(node.volumes) != expected_volumes:
        entry["drbd_missing"] = expected_volumes - len(node.volumes)
    return entry


def as_json(status: ClusterStatus, reasons: Sequence[str]) -> dict[str, Any]:
    """The ``hacloud status --json`` document (keys and meaning unchanged since 0.x)."""
    view = status.view
    return {
        "cluster": status.cluster,
        "nodes": [node_json(n, status.expected.volumes) for n in status.nodes],
        "quorum": view.quorum if view is not None else None,  # None: no node answered, unknown
        "service_node": status.service_node,
        "vip": status.vip,
        "vip_node": status.vip_node,  # where the VIP primitive runs (None: nowhere)
        "service_group": [member_json(view, rid) for rid in status.expected.group],
        "fencing_enabled": view.fencing_enabled if view is not None else None,
        "fencing": [
            {"id": f.id, "target": f.target, "state": f.state, "node": f.node} for f in status.fencing
        ],
        "fencing_history": list(status.fencing_history),
        "failed_actions": [f.line() for f in view.failures] if view is not None else [],
        "split_brain": [dict(sb) for sb in status.split_brain],
        "healthy": not reasons,
        "reasons": list(reasons),
    }


def session_status(session: Session) -> ClusterStatus:
    """:func:`gather` over an open session (its nodes that answered, and why the others did not)."""
    return gather(session.ws.spec, session.inventory, session.bundle, session.conns, session.unreachable)


def current_status(ws: Workspace) -> ClusterStatus:
    """The cluster's state now, over a session of its own that tolerates nodes that are down
    (what `hacloud status` and fence-test's preflight read)."""
    from hacloud.deploy.session import existing_nodes, open_session

    session = open_session(ws, existing_nodes(ws), tolerate_down=True)
    try:
        return session_status(session)
    finally:
        session.close()
