"""Status, failover and online verify (moving to their own ops modules: issue 17, engineer A).

Contract: these functions raise :class:`~hacloud.errors.HacloudError` subclasses for anything
the user can fix and never print. The other use cases live beside this module: ``prepare``,
``render``, ``check``, ``converge`` (up and plan), ``down``, ``ssh``, ``example`` (init).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hacloud.deploy.session import ClusterLock, Session, open_session, workspace
from hacloud.errors import HacloudError, UsageError
from hacloud.provision.dropin import provider_for
from hacloud.provision.terraform import TerraformSource
from hacloud.spec.model import Spec

if TYPE_CHECKING:
    from hacloud.deploy.query.drbd import VolumeState


def _drbd_summary(volumes: list[VolumeState]) -> dict[str, str | None]:
    """One node's DRBD in three words for the status table: the role when every resource has
    the same one (else each ``res:role``); the disk and link state when every volume agrees,
    else the first that is not UpToDate / Connected (the one to look at)."""
    from hacloud.deploy.query.drbd import link_state

    if not volumes:
        return {"drbd_role": None, "drbd_disk": None, "drbd_connection": None}
    by_res = {v.resource: v.role for v in volumes}
    roles = set(by_res.values())
    role = next(iter(roles)) if len(roles) == 1 else ",".join(f"{r}:{o or '?'}" for r, o in by_res.items())
    disk = next((v.disk for v in volumes if v.disk != "UpToDate"), "UpToDate")
    links = [link_state(v) for v in volumes]
    conn = next((c for c in links if c != "Connected"), "Connected")
    return {"drbd_role": role, "drbd_disk": disk, "drbd_connection": conn}


def drbd_volumes(conn: Any, spec: Spec, drbd: str) -> list[VolumeState]:
    """Every volume of every DRBD resource hacloud manages, as this node's DRBD kernel module
    reports it (read-only); resources and volumes hacloud does not manage are left out."""
    from hacloud.deploy.query.drbd import by_minor, parse_drbdsetup_status, parse_proc_drbd
    from hacloud.render.resources import drbd_resources

    resources = drbd_resources(spec)
    if drbd == "9":
        out = conn.run("drbdsetup status --verbose --statistics", check=False, timeout=30).stdout
        names = {r.name for r in resources}
        return [v for v in parse_drbdsetup_status(out) if v.resource in names]
    out = conn.run("cat /proc/drbd", check=False, timeout=30).stdout
    minors = {v.minor: r.name for r in resources for v in r.volumes}
    numbers = {v.minor: v.number for r in resources for v in r.volumes}
    return by_minor(parse_proc_drbd(out), minors, numbers)


def split_brain_logged(conn: Any) -> bool:
    """Whether this node's kernel log holds DRBD's unresolved split-brain message."""
    from hacloud.deploy.query.drbd import SPLIT_BRAIN_LOG

    cmd = f"dmesg 2>/dev/null | grep -c '{SPLIT_BRAIN_LOG}' || true"
    out = conn.run(cmd, check=False, timeout=30).stdout.strip()
    return out.isdigit() and int(out) > 0


def cluster_status(spec_path: Path, terraform: TerraformSource | None = None) -> dict[str, Any]:
    """Everything `hacloud status` shows, as data (also its --json form)."""
    import xml.etree.ElementTree as ET

    from hacloud.deploy.engine import crm_mon, fencing_enabled, online_nodes, resource_nodes
    from hacloud.deploy.query.drbd import split_brain_report
    from hacloud.render.resources import drbd_resources

    ws = workspace(spec_path, terraform=terraform)
    provider = provider_for(ws)
    inventory = provider.discover(ws)
    if inventory is None:
        raise HacloudError("the cluster's nodes do not exist", "run `hacloud up`")
    session = open_session(ws, inventory, tolerate_down=True)
    try:
        mon: ET.Element | None = None
        for conn in session.conns.values():
            mon = crm_mon(conn)
            if mon is not None:
                break
        online = online_nodes(mon) if mon is not None else []
        nodes = []
        resources = drbd_resources(ws.spec)
        primaries: dict[str, list[str]] = {}  # DRBD resource -> nodes where it is Primary
        states: dict[str, list[VolumeState]] = {}
        logged: dict[str, bool] = {}
        for node in inventory.nodes:
            entry: dict[str, Any] = {
                "name": node.name,
                "address": node.ssh_address,
                "online": node.name in online,
                "reachable": node.name in session.conns,
                "drbd_role": None,
                "drbd_disk": None,
                "drbd_connection": None,
                "sync": None,
                "drbd": [],  # every volume, as the node's kernel reports it
            }
            if node.bmc_address:
                entry["bmc"] = node.bmc_address
            conn = session.conns.get(node.name)
            if conn is not None:
                volumes = drbd_volumes(conn, ws.spec, session.bundle.targets.drbd)
                states[node.name] = volumes
                syncing = next((v for v in volumes if v.progress is not None), None)
                entry.update(
                    _drbd_summary(volumes),
                    sync=f"{syncing.progress:g}%" if syncing and syncing.progress is not None else None,
                    drbd=[v.as_dict() for v in volumes],
                )
                for v in volumes:
                    if v.role == "Primary" and v.resource and node.name not in primaries.get(v.resource, []):
                        primaries.setdefault(v.resource, []).append(node.name)
                if len(volumes) != len(ws.spec.volumes):
                    entry["drbd_missing"] = len(ws.spec.volumes) - len(volumes)
                if any(v.standalone for v in volumes):
                    logged[node.name] = split_brain_logged(conn)
            nodes.append(entry)
        fencing = []
        service_node = None
        failed: list[str] = []
        quorum = False
        stonith = None
        if mon is not None:
            for dev in session.bundle.fence_devices:
                placed = resource_nodes(mon, dev.primitive.id)
                fencing.append(
                    {
                        "id": dev.primitive.id,
                        "target": dev.target,
                        "state": placed[0][0] if placed else "Stopped",
                        "node": placed[0][1] if placed else None,
                    }
                )
            fs = resource_nodes(mon, f"fs_{ws.spec.volumes[0].name}")
            service_node = fs[0][1] if fs and fs[0][0] == "Started" else None
            failed = [
                f"{f.get('op_key')} on {f.get('node')}: {f.get('exitreason') or f.get('status')}"
                for f in mon.iter("failure")
            ]
            summary = mon.find("./summary/current_dc")
            quorum = summary is not None and summary.get("with_quorum") == "true"
            stonith = fencing_enabled(mon)
        history: list[str] = []
        if session.conns:
            conn = next(iter(session.conns.values()))
            hist = conn.run("stonith_admin --history '*' 2>/dev/null | tail -5", check=False).stdout
            history = [line.strip() for line in hist.splitlines() if line.strip()]
        vip = getattr(ws.spec.vip, "address", None) or getattr(ws.spec.vip, "elastic_ip", None)
        split_brain = split_brain_report(states, logged, service_node)
        reasons = _unhealthy_reasons(
            session,
            mon,
            nodes,
            quorum,
            primaries,
            [r.name for r in resources],
            service_node,
            stonith,
            fencing,
            failed,
            split_brain,
        )
        healthy = not reasons
        return {
            "cluster": ws.spec.cluster.name,
            "nodes": nodes,
            "quorum": quorum if mon is not None else None,  # None: no node answered, unknown
            "service_node": service_node,
            "vip": str(vip) if vip else None,
            "vip_node": service_node,
            "fencing_enabled": stonith,
            "fencing": fencing,
            "fencing_history": history,
            "failed_actions": failed,
            "split_brain": split_brain,
            "healthy": healthy,
            "reasons": reasons,
        }
    finally:
        session.close()


def _unhealthy_reasons(
    session: Session,
    mon: Any,
    nodes: list[dict[str, Any]],
    quorum: bool,
    primaries: dict[str, list[str]],
    resources: list[str],
    service_node: str | None,
    stonith: bool | None,
    fencing: list[dict[str, Any]],
    failed: list[str],
    split_brain: list[dict[str, Any]],
) -> list[str]:
    """Why `status` is not healthy, one line per cause (empty: healthy). With no answer from
    the cluster, fencing and quorum are unknown, not off: say why nothing answered."""
    reasons = [
        f"not reachable: {session.unreachable[n['name']]}" for n in nodes if n["name"] in session.unreachable
    ]
    if mon is None:
        if session.conns:
            reasons.append(
                f"crm_mon answered on no reachable node ({', '.join(session.conns)}): pacemaker is "
                "not running or not configured, so quorum, fencing and the service are unknown"
            )
        else:
            reasons.append("no node answered: quorum, fencing and the service are unknown")
        return reasons
    reasons += [f"{n['name']}: not online in the cluster" for n in nodes if not n["online"]]
    if not quorum:
        reasons.append("the cluster has no quorum")
    for n in nodes:
        if n["reachable"] and (n["drbd_disk"] != "UpToDate" or n["drbd_connection"] != "Connected"):
            reasons.append(f"{n['name']}: DRBD is {n['drbd_disk'] or '?'} / {n['drbd_connection'] or '?'}")
        elif n["reachable"] and any(v["peer_disk"] != "UpToDate" for v in n.get("drbd") or []):
            reasons.append(f"{n['name']}: DRBD's peer disk is not UpToDate")
        if n["reachable"] and n.get("drbd_missing"):
            reasons.append(f"{n['name']}: {n['drbd_missing']} DRBD volume(s) of the spec are not configured")
    # each DRBD resource Primary on exactly one node, all on the same one (the group's)
    for res in resources:
        where = primaries.get(res, [])
        if len(where) != 1:
            reasons.append(f"DRBD {res} is Primary on {len(where)} nodes (want exactly 1)")
    if len({n for names in primaries.values() for n in names}) > 1:
        reasons.append("DRBD resources are Primary on different nodes (the group needs all on one)")
    reasons += [f"DRBD {sb['resource']} is StandAlone (see the steps below)" for sb in split_brain]
    if service_node is None:
        reasons.append("the service is not running")
    if not stonith:
        reasons.append("fencing is disabled (stonith-enabled/fencing-enabled false)")
    reasons += [f"fence device {f['id']} is {f['state']}" for f in fencing if f["state"] != "Started"]
    reasons += [f"failed action: {line}" for line in failed]
    return reasons


def failover(spec_path: Path, progress: Callable[[str], None], timeout: float = 300) -> tuple[str, str]:
    """Move the service to the other node, wait until it answers there, leave no constraint."""
    import time

    from hacloud.deploy.engine import Engine, crm_mon
    from hacloud.render.resources import GROUP_ID

    ws = workspace(spec_path, progress)
    provider = provider_for(ws)
    inventory = provider.discover(ws)
    if inventory is None:
        raise HacloudError("the cluster's nodes do not exist", "run `hacloud up`")
    with ClusterLock(ws):
        session = open_session(ws, inventory)
        try:
            engine = Engine(ws.spec, session.inventory, session.bundle, session.conns, progress, apply=True)
            first = session.conns[engine.names[0]]
            mon = crm_mon(first)
            source = engine.service_node(mon) if mon is not None else None
            if source is None:
                raise HacloudError("the service is not running anywhere", "see `hacloud status`")
            target = next(n for n in engine.names if n != source)
            progress(f"moving {GROUP_ID} from {source} to {target}")
            first.run(f"crm_resource --move -r {GROUP_ID} --node {target}")
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    mon = crm_mon(first)
                    if mon is not None and engine.service_node(mon) == target:
                        break
                    time.sleep(2)
                else:
                    raise HacloudError(
                        f"the service did not start on {target} in {timeout:.0f} s",
                        "see `hacloud status`; the move was undone",
                    )
            finally:
                # Leave no cli-prefer constraint behind: stickiness keeps the service where it is.
                first.run(f"crm_resource --clear -r {GROUP_ID}")
            engine.service_check(mon)
            return source, target
        finally:
            session.close()


@dataclass(frozen=True)
class VerifyResult:
    """One resource's online verify: where it ran and what the kernel counted out of sync."""

    resource: str
    node: str
    peer: str | None
    seconds: float
    out_of_sync_kib: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


VERIFY_DONE_LOG = "Online verify done"  # drbd_worker.c, DRBD 8.4 and 9, on the verify source


def verify(
    spec_path: Path,
    progress: Callable[[str], None],
    resources: list[str] | None = None,
    timeout: float | None = None,
    poll: float = 2.0,
) -> list[VerifyResult]:
    """Run DRBD's online verify (``drbdadm verify``) for each resource on its Primary, wait for
    the kernel to finish and return the out-of-sync KiB it found (DRBD 8.4: /proc/drbd oos;
    9: ``drbdsetup status --statistics`` out-of-sync). Changes no data: verify only reads and
    compares checksums (verify-alg); found blocks are marked out of sync, not resynced."""
    ws = workspace(spec_path, progress)
    from hacloud.render.resources import drbd_resources

    # a DRBD resource by its name, or by the name of any of its volumes (verify runs per resource)
    owner = {r.name: r.name for r in drbd_resources(ws.spec)}
    owner.update({v.name: v.drbd_resource for v in ws.spec.volumes})
    unknown = [r for r in resources or [] if r not in owner]
    if unknown:
        raise UsageError(
            f"no volume or DRBD resource named {', '.join(unknown)}",
            f"use one of: {', '.join(sorted(owner))}",
        )
    wanted = list(dict.fromkeys(owner[r] for r in (resources or list(owner))))
    inventory = provider_for(ws).discover(ws)
    if inventory is None:
        raise HacloudError("the cluster's nodes do not exist", "run `hacloud up`")
    with ClusterLock(ws):
        session = open_session(ws, inventory)
        try:
            drbd = session.bundle.targets.drbd
            states = {n: drbd_volumes(c, ws.spec, drbd) for n, c in session.conns.items()}
            plan = [_verify_source(res, states) for res in wanted]
            results = []
            for res, node in plan:
                conn = session.conns[node]
                result = _verify_one(conn, ws.spec, drbd, res, node, progress, timeout, poll)
                if result.peer is None:  # DRBD 8.4 does not name the peer
                    other = next((n.name for n in inventory.nodes if n.name != node), None)
                    result = dataclasses.replace(result, peer=other)
                results.append(result)
            return results
        finally:
            session.close()


def _verify_source(res: str, states: dict[str, list[VolumeState]]) -> tuple[str, str]:
    """The node to verify ``res`` from: its Primary, connected to an UpToDate peer."""
    for node, vols in states.items():
        mine = [v for v in vols if v.resource == res]
        if mine and all(v.role == "Primary" for v in mine):
            bad = [v for v in mine if v.connection != "Connected" or v.peer_disk != "UpToDate"]
            if bad:
                raise HacloudError(
                    f"DRBD {res} on {node} is {bad[0].connection}, peer disk {bad[0].peer_disk}: online "
                    "verify needs both disks UpToDate and connected",
                    "wait until `hacloud status` shows the pair healthy (a resync may be running), "
                    "then run `hacloud verify` again",
                )
            return res, node
    raise HacloudError(
        f"DRBD {res} is Primary nowhere: there is no node to verify from",
        "start the service (`hacloud status` shows where it should run), then run `hacloud verify` again",
    )


def _verify_one(
    conn: Any,
    spec: Spec,
    drbd: str,
    res: str,
    node: str,
    progress: Callable[[str], None],
    timeout: float | None,
    poll: float,
) -> VerifyResult:
    """Start (or join) the verify of ``res`` on ``node`` and wait for the kernel to finish it."""
    import time

    count = f"dmesg 2>/dev/null | grep -c '{VERIFY_DONE_LOG}' || true"

    def done_count() -> int:
        out = conn.run(count, check=False, timeout=30).stdout.strip()
        return int(out) if out.isdigit() else 0

    def mine() -> list[VolumeState]:
        return [v for v in drbd_volumes(conn, spec, drbd) if v.resource == res]

    before = done_count()
    start = time.monotonic()
    seen = any(v.verifying for v in mine())
    if not seen:  # one already running is waited for, not restarted
        progress(f"{node}: drbdadm verify {res}")
        conn.run(f"drbdadm verify {res}", timeout=60)
    said = start
    while True:
        vols = mine()
        running = any(v.verifying for v in vols)
        seen |= running
        # finished: DRBD left VerifyS after we saw it, or the kernel logged the end (a small
        # device can be verified between two polls)
        if not running and (seen or done_count() > before):
            break
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            raise HacloudError(
                f"the online verify of {res} on {node} did not finish in {timeout:.0f} s (it keeps "
                "running in the kernel)",
                "watch it with `hacloud status`; run `hacloud verify` again to wait for it and read "
                "the result",
            )
        if running and now - said >= 30:
            done = next((v.progress for v in vols if v.progress is not None), None)
            progress(f"{node}: verifying {res}" + (f", {done:g}% done" if done is not None else ""))
            said = now
        time.sleep(poll)
    oos = sum(v.out_of_sync_kib or 0 for v in mine())
    peer = next((v.peer for v in vols if v.peer), None)
    return VerifyResult(res, node, peer, round(time.monotonic() - start, 1), oos)
