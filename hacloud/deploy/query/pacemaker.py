"""What Pacemaker reports, parsed (pure): ``crm_mon -1 --output-as=xml`` as typed, frozen data.

Contract: :data:`CRM_MON` is the command; :func:`parse_crm_mon` turns its output into a
:class:`ClusterView`, or None when the text is not a crm_mon result (Pacemaker not running,
not configured, or the command failed): the caller reports "unknown", never "healthy".
:func:`crm_mon` runs the command over a connection. The element and attribute names are
Pacemaker's API schema (``/usr/share/pacemaker/api/crm_mon-2.*.rng``, ``nodes-2.*``,
``resources-2.*``, ``failure-2.8.rng``), the same from 2.1 to 3.0; resource ids are looked up
exactly as the renderer wrote them (hacloud/render/resources.py), never built from prefixes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection

CRM_MON = "crm_mon -1 --output-as=xml 2>/dev/null"

#: Roles in which a resource instance is running (Pacemaker 2.1 renamed Master/Slave to
#: Promoted/Unpromoted; crm_mon prints the name of the version that answers).
ACTIVE_ROLES = frozenset({"Started", "Promoted", "Unpromoted", "Master", "Slave"})
PROMOTED_ROLES = frozenset({"Promoted", "Master"})


@dataclass(frozen=True)
class NodeView:
    """One cluster node as crm_mon's ``<nodes>`` reports it."""

    name: str
    online: bool
    standby: bool
    unclean: bool
    maintenance: bool


@dataclass(frozen=True)
class Placement:
    """One instance of a resource: its role (Started, Promoted, Unpromoted, Stopped, ...) and
    the node it runs on (None when stopped); ``failed``: crm_mon marks it FAILED."""

    role: str
    node: str | None
    failed: bool = False


@dataclass(frozen=True)
class FailedAction:
    """One ``<failure>`` (crm_mon's "Failed Resource Actions"): the operation key, the resource
    it belongs to, where it failed, why, and when (``last-rc-change`` as crm_mon prints it)."""

    op_key: str
    resource: str
    node: str
    task: str
    exitstatus: str
    exitreason: str
    status: str
    last_rc_change: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies one recorded failure across two readings: a new failure of the same
        operation on the same node has a later time."""
        return (self.op_key, self.node, self.last_rc_change)

    def line(self) -> str:
        """The one-line form `hacloud status` has always printed."""
        return f"{self.op_key} on {self.node}: {self.exitreason or self.status}"


@dataclass(frozen=True)
class ClusterView:
    """Pacemaker's view of the cluster at one moment."""

    nodes: tuple[NodeView, ...]
    resources: tuple[tuple[str, tuple[Placement, ...]], ...]  # resource id -> its instances
    failures: tuple[FailedAction, ...]
    fencing_enabled: bool
    quorum: bool
    maintenance: bool

    def online_nodes(self) -> list[str]:
        return [n.name for n in self.nodes if n.online]

    def placements(self, rid: str) -> tuple[Placement, ...]:
        """Every instance of resource ``rid`` (a primitive, each member of a group, each
        instance of a clone), in crm_mon's order; empty when crm_mon does not list it."""
        return next((p for r, p in self.resources if r == rid), ())

    def running_on(self, rid: str) -> list[str]:
        """The nodes where an instance of ``rid`` is running and not failed."""
        return [p.node for p in self.placements(rid) if p.node and p.role in ACTIVE_ROLES and not p.failed]

    def promoted_on(self, rid: str) -> list[str]:
        return [p.node for p in self.placements(rid) if p.node and p.role in PROMOTED_ROLES]

    def started_on(self, rid: str) -> str | None:
        """The node where a primitive (not a clone) is Started, else None."""
        first = next(iter(self.placements(rid)), None)
        return first.node if first is not None and first.role == "Started" else None


def parse_crm_mon(text: str) -> ClusterView | None:
    """``crm_mon -1 --output-as=xml`` -> :class:`ClusterView`; None when it is not a result."""
    if "<pacemaker-result" not in text:
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    options = root.find("./summary/cluster_options")
    dc = root.find("./summary/current_dc")
    return ClusterView(
        nodes=tuple(_node(n) for n in root.iterfind("./nodes/node")),
        resources=_resources(root),
        failures=tuple(_failure(f) for f in root.iterfind("./failures/failure")),
        fencing_enabled=_fencing_enabled(options),
        quorum=dc is not None and dc.get("with_quorum") == "true",
        maintenance=options is not None and options.get("maintenance-mode") == "true",
    )


def crm_mon(conn: Connection) -> ClusterView | None:
    """Pacemaker's view from one node (read-only); None when it does not answer."""
    result = conn.run(CRM_MON, check=False, timeout=60)
    return parse_crm_mon(result.stdout) if result.rc == 0 else None


def _true(elem: ET.Element, name: str) -> bool:
    return elem.get(name) == "true"


def _node(elem: ET.Element) -> NodeView:
    return NodeView(
        elem.get("name", ""),
        _true(elem, "online"),
        _true(elem, "standby"),
        _true(elem, "unclean"),
        _true(elem, "maintenance"),
    )


def _resources(root: ET.Element) -> tuple[tuple[str, tuple[Placement, ...]], ...]:
    """Each ``<resource>`` wherever it sits (top level, in a group, in a clone), by id; a clone
    lists one ``<resource>`` per instance (anonymous clones repeat the primitive's id, older
    Pacemaker adds ``:N``, which is the instance number, not part of the id)."""
    found: dict[str, list[Placement]] = {}
    section = root.find("./resources")
    for res in section.iter("resource") if section is not None else ():
        rid = res.get("id", "").split(":")[0]
        role, failed = res.get("role", ""), _true(res, "failed")
        nodes: list[str | None] = [n.get("name", "") for n in res.iterfind("./node")]
        found.setdefault(rid, []).extend(Placement(role, n, failed) for n in (nodes or [None]))
    return tuple((rid, tuple(p)) for rid, p in found.items())


def _fencing_enabled(options: ET.Element | None) -> bool:
    """Pacemaker's effective fencing switch, defaults included (``fencing-enabled`` is the
    3.0.2 name of ``stonith-enabled``)."""
    if options is None:
        return False
    return options.get("stonith-enabled", options.get("fencing-enabled", "false")).lower() == "true"


# Pacemaker's operation key is "<resource>_<task>_<interval in ms>" (pcmk__op_key(),
# lib/common/actions.c); 2.1's <failure> names the resource only through it.
_OP_KEY = re.compile(r"^(?P<rsc>.+)_(?P<task>[a-z][a-z_-]*?)_(?P<interval>\d+)$")


def _failure(elem: ET.Element) -> FailedAction:
    op_key = elem.get("op_key") or elem.get("id") or ""
    task, interval = elem.get("task", ""), elem.get("interval")
    m = _OP_KEY.match(op_key)
    if task and interval is not None and op_key.endswith(f"_{task}_{interval}"):
        resource = op_key[: -len(f"_{task}_{interval}")]
    elif m:
        resource, task = m.group("rsc"), task or m.group("task")
    else:
        resource = op_key
    return FailedAction(
        op_key=op_key,
        resource=resource,
        node=elem.get("node", ""),
        task=task,
        exitstatus=elem.get("exitstatus", ""),
        exitreason=elem.get("exitreason", ""),
        status=elem.get("status", ""),
        last_rc_change=elem.get("last-rc-change", ""),
    )
