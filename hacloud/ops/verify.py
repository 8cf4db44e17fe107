"""`hacloud verify`: DRBD's online verify on each resource's Primary, waited for and counted.

Contract: changes no data (verify only reads and compares checksums with verify-alg; blocks
found are marked out of sync, not resynced); a verify already running is joined, not restarted;
a timeout leaves the kernel's verify running and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hacloud.deploy.query.drbd import VolumeState, read_volumes
from hacloud.deploy.session import ClusterLock, existing_nodes, open_session, workspace
from hacloud.errors import HacloudError, UsageError
from hacloud.poll import SYSTEM, Clock, poll_until
from hacloud.render.resources import DrbdResource, drbd_resources

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection

VERIFY_DONE_LOG = "Online verify done"  # drbd_worker.c, DRBD 8.4 and 9, on the verify source


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


def verify(
    spec_path: Path,
    progress: Callable[[str], None],
    resources: list[str] | None = None,
    timeout: float | None = None,
    poll: float = 2.0,
) -> list[VerifyResult]:
    """Run DRBD's online verify (``drbdadm verify``) for each resource on its Primary, wait for
    the kernel to finish and return the out-of-sync KiB it found (DRBD 8.4: /proc/drbd oos;
    9: ``drbdsetup status --statistics`` out-of-sync)."""
    ws = workspace(spec_path, progress)
    # a DRBD resource by its name, or by the name of any of its volumes (verify runs per resource)
    owner = {r.name: r.name for r in drbd_resources(ws.spec)}
    owner.update({v.name: v.drbd_resource for v in ws.spec.volumes})
    unknown = [r for r in resources or [] if r not in owner]
    if unknown:
        raise UsageError(
            f"no volume or DRBD resource named {', '.join(unknown)}",
            f"use one of: {', '.join(sorted(owner))}",
            code="HAC334",
        )
    wanted = list(dict.fromkeys(owner[r] for r in (resources or list(owner))))
    inventory = existing_nodes(ws)
    with ClusterLock(ws):
        session = open_session(ws, inventory)
        try:
            managed = drbd_resources(ws.spec)
            states = {n: read_volumes(c, managed) for n, c in session.conns.items()}
            plan = [_verify_source(res, states) for res in wanted]
            results = []
            for res, node in plan:
                result = _verify_one(session.conns[node], managed, res, node, progress, timeout, poll)
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
                    code="HAC336",
                )
            return res, node
    raise HacloudError(
        f"DRBD {res} is Primary nowhere: there is no node to verify from",
        "start the service (`hacloud status` shows where it should run), then run `hacloud verify` again",
        code="HAC337",
    )


def _verify_one(
    conn: Connection,
    managed: Sequence[DrbdResource],
    res: str,
    node: str,
    progress: Callable[[str], None],
    timeout: float | None,
    poll: float,
    clock: Clock = SYSTEM,
) -> VerifyResult:
    """Start (or join) the verify of ``res`` on ``node`` and wait for the kernel to finish it."""
    count = f"dmesg 2>/dev/null | grep -c '{VERIFY_DONE_LOG}' || true"

    def done_count() -> int:
        out = conn.run(count, check=False, timeout=30).stdout.strip()
        return int(out) if out.isdigit() else 0

    def mine() -> list[VolumeState]:
        return [v for v in read_volumes(conn, managed) if v.resource == res]

    before = done_count()
    start = clock.monotonic()
    seen = [any(v.verifying for v in mine())]
    if not seen[0]:  # one already running is waited for, not restarted
        progress(f"{node}: drbdadm verify {res}")
        conn.run(f"drbdadm verify {res}", timeout=60)
    said = [start]

    def finished() -> list[VolumeState] | None:
        vols = mine()
        running = any(v.verifying for v in vols)
        seen[0] |= running
        # finished: DRBD left VerifyS after we saw it, or the kernel logged the end (a small
        # device can be verified between two polls)
        if not running and (seen[0] or done_count() > before):
            return vols
        if running and clock.monotonic() - said[0] >= 30:
            done = next((v.progress for v in vols if v.progress is not None), None)
            progress(f"{node}: verifying {res}" + (f", {done:g}% done" if done is not None else ""))
            said[0] = clock.monotonic()
        return None

    vols = poll_until(
        finished, timeout=float("inf") if timeout is None else timeout, interval=poll, clock=clock
    )
    if vols is None:
        raise HacloudError(
            f"the online verify of {res} on {node} did not finish in {timeout:.0f} s (it keeps "
            "running in the kernel)",
            "watch it with `hacloud status`; run `hacloud verify` again to wait for it and read the result",
            code="HAC338",
        )
    oos = sum(v.out_of_sync_kib or 0 for v in mine())
    peer = next((v.peer for v in vols if v.peer), None)
    return VerifyResult(res, node, peer, round(clock.monotonic() - start, 1), oos)
