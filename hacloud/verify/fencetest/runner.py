"""``hacloud fence-test``: prove that the pair fails over, with numbers a client would see.

One round (:mod:`~hacloud.verify.fencetest.round`): preflight (refuse an unhealthy cluster) ->
a client writes sequenced records through the VIP -> a fault is injected behind the cluster's
back (or a fence is requested) -> wait until the client's writes are acknowledged again ->
confirm through the provider that the fenced node really is off -> check every acknowledged
record is in the store, unchanged, once -> read where the time went from the survivor's
journal -> power the node back, wait for it to rejoin and DRBD to resync -> healthy again.

This module validates the request, sets the round up on the real cluster (:func:`open_rig`:
the provider, SSH to both nodes, the client process) and keeps the history file.

Contract: everything refusable is refused before the cluster is touched (exit 2); no fault is
injected unless preflight passes; nothing here prints (progress goes to ``progress``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hacloud.errors import UsageError
from hacloud.poll import SYSTEM, Clock
from hacloud.provision.provider import PowerControl
from hacloud.spec.model import DemoService, Spec
from hacloud.verify.fencetest.analysis import summary
from hacloud.verify.fencetest.faults import FaultMethod, fault_for, interrupted_after_fault
from hacloud.verify.fencetest.ports import Rig, RoundPlan
from hacloud.verify.fencetest.round import Progress, Settings, play_round
from hacloud.verify.fencetest.verdict import TIMER_KEYS, RoundResult, timers_of

if TYPE_CHECKING:
    from hacloud.provision.provider import Provider
    from hacloud.render import Bundle
    from hacloud.spec.inventory import Inventory
    from hacloud.spec.profiles import Profile
    from hacloud.spec.workspace import Workspace

__all__ = [
    "TIMER_KEYS",
    "Options",
    "RoundResult",
    "all_passed",
    "append_history",
    "history_file",
    "history_lines",
    "history_of",
    "history_path",
    "history_summary",
    "interrupted_after_fault",
    "open_rig",
    "rto_summary",
    "run",
    "timers_of",
    "validate",
]


@dataclass(frozen=True)
class Options:
    method: str = FaultMethod.POWER
    node: str | None = None
    rounds: int = 1
    recover: bool = True
    rate: float = 20.0  # client writes per second
    request_timeout: float = 1.0
    warmup: float = 3.0
    settle: float = 3.0
    takeover_timeout: float = 180.0
    recover_timeout: float = 300.0

    def settings(self) -> Settings:
        return Settings(
            self.node, self.recover, self.warmup, self.settle, self.takeover_timeout, self.recover_timeout
        )


# ---------------------------------------------------------------- validation


def validate(spec: Spec, provider: PowerControl, options: Options) -> None:
    """Everything that can be refused before touching the cluster (UsageError, exit 2)."""
    fault = fault_for(options.method)
    names = [n.name for n in spec.nodes]
    if options.node is not None and options.node not in names:
        raise UsageError(
            f"--node {options.node!r} is not a node of this cluster",
            f"use one of: {', '.join(names)}",
            code="HAC501",
        )
    if fault.method == FaultMethod.PARTITION and options.node is not None:
        raise UsageError(
            "--node does not apply to partition: both sides are cut, the cluster picks the survivor",
            "drop --node",
            code="HAC502",
        )
    if options.rounds < 1:
        raise UsageError("--rounds must be at least 1", "pass --rounds 1 or more", code="HAC503")
    if not isinstance(spec.service, DemoService):
        raise UsageError(
            "fence-test measures RTO and RPO through hacloud's demo record store, and this cluster runs "
            f"a {spec.service.kind} service",
            "run fence-test on a pair with `service: {kind: demo}` (a staging copy of the cluster)",
            code="HAC504",
        )
    if vip_address(spec) is None:
        raise UsageError(
            "fence-test needs the VIP's address to write through", "set vip.address", code="HAC505"
        )
    refused = fault.unsupported(provider, spec)
    if refused is not None:
        raise refused


def vip_address(spec: Spec) -> str | None:
    value = getattr(spec.vip, "address", None) or getattr(spec.vip, "elastic_ip", None)
    return str(value) if value else None


# ---------------------------------------------------------------- the rig on the real cluster


def round_plan(spec: Spec, inventory: Inventory, profile: Profile, bundle: Bundle) -> RoundPlan:
    """The round's view of the cluster, resource ids from the renderer's own builders (pure).
    The demo's records live on the first volume: its DRBD resource and filesystem are the
    ones the failover stages are timed on; recovery waits for every resource."""
    from hacloud.render.cib import stonith_timeout
    from hacloud.render.resources import (
        drbd_primitive,
        drbd_resources,
        filesystem_primitive,
        service_primitive,
        vip_primitives,
    )

    a, b = inventory.nodes
    return RoundPlan(
        nodes=(a.name, b.name),
        devices=tuple((d.primitive.id, d.target) for d in bundle.fence_devices),
        drbd_id=drbd_primitive(spec.volumes[0].drbd_resource, profile, bundle.targets).id,
        fs_id=filesystem_primitive(spec, 0, profile).id,
        service_id=service_primitive(spec, inventory, profile).id,
        vip_ids=tuple(p.id for p in vip_primitives(spec, inventory, profile)),
        resources=tuple(r.name for r in drbd_resources(spec)),
        profile=profile,
        fence_timeout=stonith_timeout(spec, profile),
    )


@contextmanager
def open_rig(ws: Workspace, provider: Provider, options: Options, clock: Clock = SYSTEM) -> Iterator[Rig]:
    """A rig on the real cluster: SSH to both nodes, the files rendered for their facts, the
    client process where the provider places clients. The connections close on exit."""
    from hacloud.deploy.session import existing_nodes, open_session
    from hacloud.render import effective_profile
    from hacloud.render.resources import drbd_resources
    from hacloud.spec.profiles import load_profile
    from hacloud.verify.fencetest.nodes import NodeCluster
    from hacloud.verify.fencetest.writer import Client

    session = open_session(ws, existing_nodes(ws, provider))
    try:
        spec = ws.spec
        profile = effective_profile(spec, load_profile(spec.profile_name), session.inventory)
        plan = round_plan(spec, session.inventory, profile, session.bundle)
        probes = tuple(p for p in provider.node_needs(spec, session.inventory).probes if p.before_faults)
        cluster = NodeCluster(
            ws.spec_path, session.conns, drbd_resources(spec), list(plan.devices), clock, probes=probes
        )
        url = f"http://{vip_address(spec)}:{spec.service.port}"  # type: ignore[union-attr]
        writer = Client(
            ws, provider, url, ws.state_dir / "fence-test",
            rate=options.rate, request_timeout=options.request_timeout,
            max_seconds=options.takeover_timeout + 120,
        )  # fmt: skip
        yield Rig(ws, provider, cluster, writer, plan, clock)
    finally:
        session.close()


RigOpener = Callable[["Workspace", Any, Options], AbstractContextManager[Rig]]


# ---------------------------------------------------------------- rounds and history


def run(
    spec_path: Path,
    options: Options,
    progress: Progress,
    *,
    provider: Any = None,
    rig: RigOpener = open_rig,
) -> list[RoundResult]:
    """Run ``options.rounds`` rounds under the cluster lock; each is appended to the history
    file as it ends; a failed round, or --no-recover, ends the run. ``provider`` and ``rig``
    replace the spec's provider and the SSH rig (tests)."""
    from hacloud.deploy.session import ClusterLock, workspace
    from hacloud.provision.dropin import provider_for

    ws = workspace(spec_path, progress)
    provider = provider or provider_for(ws)
    validate(ws.spec, provider, options)
    results: list[RoundResult] = []
    with ClusterLock(ws):
        for index in range(options.rounds):
            if options.rounds > 1:
                progress(f"round {index + 1} of {options.rounds}")
            with rig(ws, provider, options) as opened:
                result = play_round(opened, options.method, options.settings(), progress)
            results.append(result)
            append_history(ws, result)
            if not result.passed or not options.recover:
                break
    return results


def history_path(ws: Workspace) -> Path:
    return ws.state_dir / "fence-test-history.jsonl"


def append_history(ws: Workspace, result: RoundResult) -> None:
    """One JSON line per round, with the profile and timers in force for it (the nodes' OS
    variant and the spec's overrides applied), so runs before and after a change of profile
    can be compared."""
    from hacloud.render import effective_profile
    from hacloud.spec.profiles import load_profile

    fallback = effective_profile(ws.spec, load_profile(ws.spec.profile_name))
    line = {
        "cluster": ws.spec.cluster.name,
        **result.as_dict(),
        "profile": result.profile or fallback.label,
        "timers": result.timers or timers_of(fallback),
    }
    with open(history_path(ws), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def history_file(spec_path: Path) -> Path:
    """The history file of the cluster ``spec_path`` describes."""
    from hacloud.deploy.session import workspace

    return history_path(workspace(spec_path))


def history_of(spec_path: Path) -> list[dict[str, Any]]:
    """:func:`history_summary` of the cluster ``spec_path`` describes."""
    from hacloud.deploy.session import workspace

    return history_summary(workspace(spec_path))


def history_lines(groups: list[dict[str, Any]]) -> list[str]:
    """:func:`history_summary`'s groups, one line each, as ``fence-test --history`` shows them."""
    lines = []
    for g in groups:
        r = g["rto"]
        timers = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in g["timers"].items())
        rto = f"RTO min {r['min']} median {r['median']} p95 {r['p95']} s" if r else "no RTO"
        lines.append(
            f"{g['method']:9} {g['rounds']:>3} rounds, {g['passed']} passed, lost {g['lost']}, {rto}"
            f"  ({g['first']} .. {g['last']}; {timers})"
        )
    return lines


def all_passed(results: list[RoundResult], rounds: int) -> bool:
    """Every round asked for ran and passed (a failed round ends the run early)."""
    return len(results) >= rounds and all(r.passed for r in results)


def rto_summary(results: list[RoundResult]) -> dict[str, float]:
    return summary([r.rto_seconds for r in results if r.rto_seconds is not None])


def history_summary(ws: Workspace) -> list[dict[str, Any]]:
    """The history file grouped by method and the timers in force: rounds, passes, data lost,
    min/median/p95 RTO. A change of timers starts a new group, so before/after is one look."""
    path = history_path(ws)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (row.get("method", "?"), json.dumps(row.get("timers", {}), sort_keys=True))
            groups.setdefault(key, []).append(row)
    out = []
    for (method, timers), rows in groups.items():
        rto = [r["rto_seconds"] for r in rows if r.get("rto_seconds") is not None]
        out.append(
            {
                "method": method,
                "timers": json.loads(timers),
                "rounds": len(rows),
                "passed": sum(bool(r.get("passed")) for r in rows),
                "lost": sum(int(r.get("lost", 0)) for r in rows),
                "first": rows[0].get("started"),
                "last": rows[-1].get("started"),
                "rto": summary(rto),
            }
        )
    return out
