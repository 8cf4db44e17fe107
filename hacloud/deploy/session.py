"""A run's hold on a cluster: its workspace, the cluster lock, and connections to its nodes.

Contract: :func:`workspace` loads and validates the spec and refuses another spec's state
directory; :class:`ClusterLock` allows one hacloud run per cluster at a time (flock, released on
exit or crash); :func:`open_session` connects to both nodes, reads their facts and renders for
them (nothing from the provider reaches a node unchecked); :func:`fence_passwords` reads the BMC
passwords a spec points to.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.dropin import provider_for, recorded_source
from hacloud.provision.provider import NodeSource
from hacloud.provision.terraform import TerraformSource
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import Inventory
from hacloud.spec.inventory_file import validated
from hacloud.spec.load import load_spec
from hacloud.spec.model import IpmiFencing, RedfishFencing, Spec
from hacloud.spec.profiles import load_profile
from hacloud.spec.secrets import load_or_create, read_secret_file
from hacloud.spec.workspace import Workspace, check_owner


def workspace(
    spec_path: Path,
    progress: Callable[[str], None] | None = None,
    terraform: TerraformSource | None = None,
) -> Workspace:
    """The spec's workspace; drop-in (nodes from Terraform) when ``terraform`` is given or a
    drop-in `up` recorded its source for this cluster."""
    spec = load_spec(spec_path)
    ws = Workspace(spec, spec_path, progress) if progress else Workspace(spec, spec_path)
    check_owner(ws.state_dir, spec_path)
    source = terraform or recorded_source(ws)
    return dataclasses.replace(ws, terraform=source) if source else ws


def existing_nodes(ws: Workspace, provider: NodeSource | None = None) -> Inventory:
    """The cluster's nodes as the provider (default: the workspace's) finds them; an error
    naming the fix when they do not exist yet (every command that needs a running cluster)."""
    inventory = (provider or provider_for(ws)).discover(ws)
    if inventory is None:
        raise HacloudError("the cluster's nodes do not exist", "run `hacloud up` first", code="HAC428")
    return inventory


def fence_passwords(spec: Spec, base: Path) -> tuple[dict[str, str], list[str]]:
    """(target node -> BMC password, problems): the IPMI/Redfish passwords the spec points to
    (environment variable or 0600 file), never logged; a missing one is a problem, not an error,
    so `render` can still show the rest."""
    passwords: dict[str, str] = {}
    missing: list[str] = []
    for method in spec.fencing:
        if not isinstance(method, IpmiFencing | RedfishFencing):
            continue
        for target, bmc in method.nodes.items():
            if bmc.password_env:
                value = os.environ.get(bmc.password_env)
                where = f"environment variable {bmc.password_env}"
            else:
                path = Path(bmc.password_file or "").expanduser()
                path = path if path.is_absolute() else base / path
                where = str(path)
                value = read_secret_file(path, f"the BMC password for {target}")
            if value:
                passwords[target] = value
            else:
                missing.append(
                    f"no BMC password for {target} in {where}: its secret file was "
                    "not rendered; `hacloud up` will refuse until it is there"
                )
    return passwords, missing


@dataclass
class Session:
    """Connections to both nodes of a cluster, with the files rendered for their real facts."""

    ws: Workspace
    inventory: Inventory
    conns: dict[str, Any]
    bundle: Bundle
    #: node -> why it could not be reached (only with ``tolerate_down``)
    unreachable: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def open_session(
    ws: Workspace, inventory: Inventory, verbose: bool = False, tolerate_down: bool = False
) -> Session:
    """Connect to both nodes in parallel, read their software facts, render for them."""

    from hacloud.deploy.facts import gather, node_facts
    from hacloud.deploy.remote import Connection, parallel
    from hacloud.render.resources import service_ref

    provider = provider_for(ws)
    # nothing from the provider reaches a node, a root shell line or a file unchecked
    inventory = validated(inventory, f"the {inventory.provider} provider's inventory")
    known = ws.state_dir / "known_hosts"
    conns = {
        n.name: Connection(provider.endpoint(ws, n), known, ws.progress, verbose) for n in inventory.nodes
    }

    unreachable: dict[str, str] = {}

    def connect(name: str) -> Any:
        try:
            conn = conns[name].connect()
            return gather(conn, [], service=service_ref(ws.spec))
        except HacloudError as exc:
            if tolerate_down:
                unreachable[name] = exc.message
                return None
            raise

    try:
        facts = dict(zip(conns, parallel(connect, list(conns)), strict=True))
    except BaseException:
        for conn in conns.values():  # ends the steps still running in the pool (Ctrl-C)
            conn.close()
        raise
    nodes = []
    for node in inventory.nodes:
        f = facts[node.name]
        if f is None:
            nodes.append(node)
            continue
        nodes.append(dataclasses.replace(node, facts=node_facts(f, node)))
    inventory = dataclasses.replace(inventory, nodes=(nodes[0], nodes[1]))
    profile = effective_profile(ws.spec, load_profile(ws.spec.profile_name), inventory)
    ws.claim()
    secrets = load_or_create(ws.state_dir)
    passwords, missing = fence_passwords(ws.spec, ws.base_dir)
    if missing:
        raise HacloudError(
            missing[0], "create the file the spec names (mode 0600) with the BMC password", code="HAC410"
        )
    bundle = render_all(ws.spec, inventory, profile, secrets, passwords)
    live = {name: c for name, c in conns.items() if facts[name] is not None}
    return Session(ws, inventory, live, bundle, unreachable)


class ClusterLock:
    """One hacloud run per cluster at a time (an flock on the state directory's lock file)."""

    def __init__(self, ws: Workspace) -> None:
        try:
            ws.claim()  # creates the directory (and .hacloud/.gitignore); refuses another spec's
        except OSError as exc:
            raise HacloudError(
                f"cannot write the cluster's state directory {ws.state_dir}: {exc.strerror}",
                "run hacloud as a user who can write next to the spec",
                code="HAC411",
            ) from None
        self.path = ws.state_dir / "lock"
        self.fd = -1

    def __enter__(self) -> ClusterLock:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise HacloudError(
                "another hacloud run is working on this cluster",
                "wait for it to finish, then run the command again",
                code="HAC412",
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
