"""`hacloud up` and `hacloud plan`: the nodes exist and answer, then the deploy engine converges
them (or says what it would change).

Contract: everything is validated before anything is made; the provider is asked through its
roles (node source, account checks, hooks), never by its kind; every wait takes a clock
(:mod:`hacloud.poll`). Raises :class:`~hacloud.errors.HacloudError` with the fix; never prints.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacloud.deploy.remote import socket_in_namespace
from hacloud.deploy.session import ClusterLock, Session, open_session, workspace
from hacloud.errors import HacloudError, UsageError
from hacloud.poll import SYSTEM, Clock, poll_until
from hacloud.provision.changes import Change
from hacloud.provision.dropin import provider_for
from hacloud.provision.provider import Hooks, NodeSource
from hacloud.provision.terraform import TerraformSource
from hacloud.spec.inventory import Inventory, NodeInfo
from hacloud.spec.workspace import Workspace

#: seconds between two SSH port probes while fresh instances boot
SSH_PROBE_INTERVAL = 3.0


class NodesMissing(HacloudError):
    """`plan` found no nodes to compare the cluster configuration with (HAC310)."""


def plan_infrastructure(
    spec_path: Path, progress: Callable[[str], None], terraform: TerraformSource | None = None
) -> tuple[list[Change], str] | None:
    """(infrastructure changes `up` would make, the agents' permissions) for providers that build
    infrastructure (AWS, Azure); None for the others. Reads the account, changes nothing."""
    ws = workspace(spec_path, progress, terraform)
    return provider_for(ws).plan_infrastructure(ws)


def converge(
    spec_path: Path,
    progress: Callable[[str], None],
    *,
    apply: bool,
    force: bool = False,
    verbose: bool = False,
    nodes_only: bool = False,
    expect_provider: str | None = None,
    terraform: TerraformSource | None = None,
) -> list[Any]:
    """`hacloud up` (apply) or `hacloud plan`: returns the changes made or needed.
    ``nodes_only``: stop once the nodes, volumes and network exist (no cluster configuration)."""
    from hacloud.deploy.engine import Engine

    ws = workspace(spec_path, progress, terraform)
    if expect_provider is not None and expect_provider != ws.spec.provider.kind:
        raise UsageError(
            f"--provider {expect_provider} but {spec_path} uses provider {ws.spec.provider.kind}",
            f"run `hacloud init --provider {expect_provider}` for a new spec, or drop --provider",
            code="HAC311",
        )
    provider = provider_for(ws)
    if apply:
        provider.check_environment()
    with ClusterLock(ws):
        inventory = _nodes(ws, provider, apply)
        if apply and nodes_only:
            for node in inventory.nodes:
                bmc = f", BMC {node.bmc_address}" if node.bmc_address else ""
                progress(f"{node.name}: {node.ssh_address} (links {', '.join(node.links)}){bmc}")
            return []
        if apply:
            wait_for_ssh(
                ws,
                inventory,
                provider.ssh_wait_seconds(ws.spec),
                progress,
                namespace_of=lambda node: provider.endpoint(ws, node).namespace,
            )
        session = _log_in(ws, provider, inventory, verbose)
        try:
            engine = Engine(
                ws.spec,
                session.inventory,
                session.bundle,
                session.conns,
                progress,
                apply=apply,
                force=force,
                needs=provider.node_needs(ws.spec, session.inventory),
            )
            return engine.run_all()
        finally:
            session.close()


def _nodes(ws: Workspace, source: NodeSource, apply: bool) -> Inventory:
    """`up`: the nodes and volumes, made where missing; `plan`: the ones that exist (refused,
    :class:`NodesMissing`, when there are none yet: there is nothing to compare with)."""
    if apply:
        return source.ensure_volumes(ws, source.ensure_nodes(ws))
    found = source.discover(ws)
    if found is None:
        raise NodesMissing(
            "the nodes do not exist yet: nothing to compare with",
            "run `hacloud up` to create them (or `hacloud render` to review files)",
            code="HAC310",
        )
    return found


def _log_in(ws: Workspace, hooks: Hooks, inventory: Inventory, verbose: bool) -> Session:
    """The SSH session to every node; a failed login is worded by the provider (a cloud says
    its infrastructure is in place, so a re-run reuses it)."""
    try:
        return open_session(ws, inventory, verbose)
    except HacloudError as exc:
        raise hooks.login_failed(ws, exc) from None


def wait_for_ssh(
    ws: Workspace,
    inventory: Inventory,
    timeout: float,
    progress: Callable[[str], None],
    clock: Clock = SYSTEM,
    namespace_of: Callable[[NodeInfo], str | None] = lambda node: None,
) -> None:
    """Wait until every node's SSH port accepts a TCP connection (fresh cloud instances take a
    minute or two to boot), all nodes within one ``timeout``; a jump host makes the login itself
    the test. The connection starts where SSH will (``namespace_of``: the provider's endpoint
    namespace, e.g. an emulated cloud's admin network). Raises HAC312 naming the node that did
    not answer and what to check."""
    if timeout <= 0:
        return
    deadline = clock.monotonic() + timeout
    for node in inventory.nodes:
        ssh = ws.spec.node(node.name).ssh
        if ssh.jump:
            continue
        cause = _wait_port(node, ssh.port, deadline - clock.monotonic(), progress, clock, namespace_of(node))
        if cause is not None:
            raise HacloudError(
                f"the {ws.spec.provider.kind} infrastructure is in place, but step 'reach the "
                f"nodes over SSH' failed: {node.name} ({node.id}) at {node.ssh_address}:{ssh.port} "
                f"did not answer within {timeout:.0f} s ({cause.strerror or cause})",
                "check that the instance booted (console or serial log), that the security group "
                "admits this machine (provider.options.admin_cidr), and that this machine can "
                "route to the address (run hacloud inside the VPC, set nodes[].ssh.jump, or "
                "provider.options.ssh_address: public); then run `hacloud up` again: what exists "
                "is reused",
                code="HAC312",
            )


def _wait_port(
    node: NodeInfo,
    port: int,
    timeout: float,
    progress: Callable[[str], None],
    clock: Clock,
    namespace: str | None = None,
) -> OSError | None:
    """None once ``node``'s ``port`` accepts a connection within ``timeout`` s, else the last
    connection error (said once, on the first failure, that it is being waited for)."""
    failures: list[OSError] = []

    def probe() -> bool | None:
        try:
            address = (node.ssh_address, port)
            with socket_in_namespace(namespace, lambda: socket.create_connection(address, timeout=5)):
                return True
        except OSError as exc:
            if not failures:
                progress(f"waiting for {node.name} to answer SSH at {node.ssh_address}:{port}")
            failures.append(exc)
            return None

    answered = poll_until(probe, timeout=max(timeout, 0.0), interval=SSH_PROBE_INTERVAL, clock=clock)
    return None if answered else failures[-1]
