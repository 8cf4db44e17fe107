"""`hacloud failover`: a planned switchover of the service to the other node.

Contract: refuses a cluster that is not healthy (the rules of
:func:`hacloud.deploy.query.health.judge`: moving onto a peer that is not UpToDate, or away
from a failing fence device, trades a working service for a broken one); waits until the
service answers on the other node; never leaves a location constraint behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hacloud.deploy.query.health import judge
from hacloud.deploy.query.pacemaker import ClusterView, crm_mon
from hacloud.deploy.query.status import session_status
from hacloud.deploy.session import ClusterLock, existing_nodes, open_session, workspace
from hacloud.errors import HacloudError
from hacloud.poll import SYSTEM, Clock, poll_until
from hacloud.render.resources import GROUP_ID

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection


def failover(
    spec_path: Path, progress: Callable[[str], None], timeout: float = 300, clock: Clock = SYSTEM
) -> tuple[str, str]:
    """Move the service to the other node, wait until it answers there, leave no constraint;
    returns (source, target)."""
    from hacloud.deploy.engine import Engine

    ws = workspace(spec_path, progress)
    inventory = existing_nodes(ws)
    with ClusterLock(ws):
        session = open_session(ws, inventory)
        try:
            engine = Engine(ws.spec, session.inventory, session.bundle, session.conns, progress, apply=True)
            status = session_status(session)
            source = status.service_node
            if source is None:
                raise HacloudError(
                    "the service is not running anywhere", "see `hacloud status`", code="HAC331"
                )
            health = judge(status)
            if not health.healthy:
                raise HacloudError(
                    "failover refused: the cluster is not healthy:\n  - " + "\n  - ".join(health.texts()),
                    "fix these first (`hacloud status` shows them; `hacloud up` cleans failures of "
                    "resources that recovered), then run `hacloud failover` again",
                    code="HAC332",
                )
            target = next(n for n in engine.names if n != source)
            first = session.conns[engine.names[0]]
            progress(f"moving {GROUP_ID} from {source} to {target}")
            first.run(f"crm_resource --move -r {GROUP_ID} --node {target}")
            try:
                members = status.expected.group or status.expected.filesystems[:1]
                mon = _wait_moved(first, members, target, timeout, clock)
            finally:
                # Leave no cli-prefer constraint behind: stickiness keeps the service where it is.
                first.run(f"crm_resource --clear -r {GROUP_ID}")
            engine.service_check(mon)
            return source, target
        finally:
            session.close()


def _wait_moved(
    conn: Connection, members: tuple[str, ...], target: str, timeout: float, clock: Clock
) -> ClusterView:
    """Pacemaker's view once every member of the service group (filesystems, the service, the
    VIP: a cloud VIP agent takes tens of seconds to move its route) is Started on ``target``."""

    def moved() -> ClusterView | None:
        view = crm_mon(conn)
        done = view is not None and all(view.started_on(m) == target for m in members)
        return view if done else None

    view = poll_until(moved, timeout=timeout, interval=2, clock=clock)
    if view is None:
        raise HacloudError(
            f"the service did not start on {target} in {timeout:.0f} s",
            "see `hacloud status`; the move was undone",
            code="HAC333",
        )
    return view
