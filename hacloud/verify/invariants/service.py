"""Service rules: the filesystem, service and VIP grouped on the Promoted DRBD role
(HAC030/HAC031), the service's operation timeouts against its own limits (HAC092/HAC093),
no umbrella unit (HAC094)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, ok, seconds


def grouping(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC030/HAC031: every filesystem, the service and the VIP move as one group, on the
    Promoted DRBD role."""
    src = "MS-NFS; best-practices §3.5 (7)"
    groups = list(cib.root.iter("group"))
    clones = [
        c
        for c in cib.root.iter("clone")
        if any(nv.get("name") == "promotable" and nv.get("value") == "true" for nv in c.iter("nvpair"))
    ]
    vip_types = {"IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb"}
    group = next((g for g in groups if any(p.get("type") in vip_types for p in g.iter("primitive"))), None)
    if group is None:
        yield Finding(
            "HAC030",
            "error",
            "the VIP is not in a group with the service",
            "group filesystem, service, VIP (and azure-lb) together",
            src,
        )
        return
    members = {p.get("type") for p in group.iter("primitive")}
    loose = [
        p.get("id")
        for p in cib.root.iterfind("./configuration/resources/primitive")
        if p.get("class") != "stonith"
    ]
    if "Filesystem" not in members or loose:
        yield Finding(
            "HAC030",
            "error",
            f"resources outside the service group: {loose or 'Filesystem'}",
            "put every filesystem, the service and the VIP in one group",
            src,
        )
    else:
        yield ok("HAC030", f"filesystem, service and VIP grouped in {group.get('id')}", src)
    yield from _follows_promoted(cib, group.get("id"), clones, src)


def _follows_promoted(cib: Cib, gid: str | None, clones: list[ET.Element], src: str) -> Iterator[Finding]:
    """HAC031: the service group is colocated with each promotable clone's Promoted role and
    started after its promote."""
    for clone in clones:
        cid = clone.get("id")
        colo = any(
            c.get("rsc") == gid
            and c.get("with-rsc") == cid
            and c.get("with-rsc-role") in ("Promoted", "Master")
            and c.get("score") == "INFINITY"
            for c in cib.root.iter("rsc_colocation")
        )
        order = any(
            o.get("first") == cid
            and o.get("first-action") == "promote"
            and o.get("then") == gid
            and o.get("then-action", "start") == "start"
            for o in cib.root.iter("rsc_order")
        )
        if not (colo and order):
            yield Finding(
                "HAC031",
                "error",
                f"{gid} is not {'colocated with' if not colo else 'ordered after'} the Promoted {cid}",
                "colocate the group with the Promoted role (INFINITY) and order it after promote",
                src,
            )
        else:
            yield ok("HAC031", f"{gid} colocated with Promoted {cid} and ordered after promote", src)


def _service_op(cib: Cib, name: str) -> float | None:
    group = next(iter(cib.root.iter("group")), None)
    if group is None:
        return None
    vip_types = {"IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb", "Filesystem"}
    prims = [p for p in group.iter("primitive") if p.get("type") not in vip_types]
    for op in prims[0].iter("op") if prims else ():
        if op.get("name") == name:
            return seconds(op.get("timeout"))
    return None


def service_timeouts(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC092 (start) / HAC093 (stop): the service's operation timeouts are never below the limit
    the node's own unit (TimeoutStartSec/TimeoutStopSec) or agent meta-data sets."""
    from hacloud.render.resources import service_limits

    limits = service_limits(spec, inv)
    src = "systemd.service(5) TimeoutStartSec/TimeoutStopSec; OCF agent meta-data; PX start-failure-is-fatal"
    if not limits:
        if spec.service.kind != "demo":
            yield ok("HAC092", "the service's own start/stop limits are read from the nodes at deploy", src)
        return
    for code, action in (("HAC092", "start"), ("HAC093", "stop")):
        timeout = _service_op(cib, action) or 0.0
        worst = [getattr(x, action) for x in limits]
        what = limits[0].service
        chosen = getattr(spec.service, f"{action}_timeout", None)
        if any(w is None for w in worst) and chosen:
            yield ok(code, f"{what} sets no {action} limit; service.{action}_timeout {chosen}s chosen", src)
            continue
        if any(w is None for w in worst):
            consequence = (
                "a start that outlasts it fails for good on that node (start-failure-is-fatal)"
                if action == "start"
                else "a stop that outlasts it fences the node"
            )
            yield Finding(
                code,
                "warning",
                f"{what} sets no {action} limit (infinity): Pacemaker's {action} timeout {timeout:g}s "
                f"is the only one; {consequence}",
                f"set service.{action}_timeout to the longest {action} you accept (crash recovery)",
                src,
            )
            continue
        need = max(w for w in worst if w is not None)
        if timeout < need:
            yield Finding(
                code,
                "error",
                f"service {action} timeout {timeout:g}s is below the {need}s that {what} allows itself: "
                + (
                    "a slow start (crash recovery after a failover) fails for good on that node"
                    if action == "start"
                    else "Pacemaker gives up before systemd/the agent does, and a failed stop fences the node"
                ),
                f"raise service.{action}_timeout to at least {need} (or drop it: hacloud derives it)",
                src,
            )
        else:
            yield ok(code, f"service {action} timeout {timeout:g}s >= {what}'s {need}s", src)


# Units that are umbrellas on Debian/Ubuntu: Type=oneshot, ExecStart=/bin/true, RemainAfterExit,
# so they stay active when the server they group dies (postgresql-common's postgresql.service).
# RHEL's postgresql.service is the server itself.
UMBRELLA_UNITS = {"postgresql.service": "postgresql@VERSION-CLUSTER.service (`pg_lsclusters` lists them)"}


def umbrella_unit(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC094: a systemd service must be a unit whose state follows the server's process."""
    from hacloud.render.resources import service_limits, service_ref
    from hacloud.spec.model import SystemdService

    if not isinstance(spec.service, SystemdService):
        return
    unit = (service_ref(spec) or "").removeprefix("systemd:")
    src = "systemd.service(5) (Type=oneshot + RemainAfterExit=yes stays active); Debian postgresql-common"
    limits = service_limits(spec, inv)
    if limits:  # the nodes answered for this unit: their systemd decides
        umbrella = any(x.stays_active for x in limits)
    else:  # not read yet: by name, unless the nodes are known to be RHEL/SUSE (a real server unit)
        families = {n.facts.os_family for n in inv.nodes if n.facts.os_family}
        umbrella = unit in UMBRELLA_UNITS and not (families and families <= {"rhel", "suse"})
    if umbrella:
        instead = UMBRELLA_UNITS.get(unit, "the unit that runs the server process")
        yield Finding(
            "HAC094",
            "warning",
            f"{unit} is an umbrella unit (oneshot, RemainAfterExit) on "
            + ("the nodes" if limits else "Debian/Ubuntu")
            + ": it stays active when the server dies, so Pacemaker never notices a failure",
            f"set service.unit to the instance unit, e.g. {instead}"
            + ("" if limits else "; on RHEL/SUSE postgresql.service is the server itself"),
            src,
        )
    else:
        yield ok("HAC094", f"{unit} is not a known umbrella unit", src)
