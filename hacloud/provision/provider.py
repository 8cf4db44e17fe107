"""The provider seam: the roles a provider plays, found through entry points or ``register``.

A provider plug-in is one object; each consumer types what it takes with the role it uses:

- :class:`NodeSource` (`up`, `plan`, `down`, `ssh`, the deploy session): plans, finds, makes
  and removes the nodes, and says how to reach them.
- :class:`PowerControl` (`hacloud fence-test`, `hacloud lab power`): reads and switches a
  node's power behind the cluster's back, freezes it, cuts the links between the nodes.
- :class:`TerraformAdapter` (``--from-terraform``): reads nodes from Terraform resources and
  adds (``adopt``) or removes (``release``) what the agents need around them.
- :class:`AccountChecks` (`up`, `plan`, `check --live`): this machine and the account can drive
  the provider; the infrastructure `up` would make; read-only checks of it.
- :class:`Hooks`: what only some providers do (``purge`` caches, a failed login's wording).

:class:`Provider` is all of them: what a plug-in registers. :class:`Capabilities` says up front
which roles (and fence-test faults) a provider really has, with the reason for each it has not.

Contracts:
- ``planned_inventory(spec)`` is pure: the inventory the cluster will have, with documented
  placeholders (``placeholder=True``) where ids or addresses do not exist yet.
- ``discover`` is read-only; ``ensure_*`` are idempotent and create only what is missing.
- Fault injection for ``hacloud fence-test`` (``power_off``, ``freeze``, ``partition``) acts
  behind the cluster's back, through the provider, never through Pacemaker; ``power`` and
  ``power_events`` read the provider's own record of a node's power, so a fence can be
  confirmed independently of the cluster that claims it.
- Anything a provider cannot do raises :class:`~hacloud.errors.ProviderUnavailable` naming
  what is missing; ``capabilities`` (``capabilities_for(spec)``) says up front what it can do.
- Providers are found through the ``hacloud.providers`` entry points (looked up once per
  process) and :func:`register` (tests plug in a fake; it shadows an installed one only when
  asked to). Command groups a plug-in adds to the CLI (``hacloud lab ...``) are its
  ``hacloud.commands`` entry points, which the CLI loads without loading any provider.

Provider packages import no cloud SDK at import time (``hacloud --help`` stays fast without extras).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from hacloud.errors import HacloudError, ProviderUnavailable
from hacloud.provision.changes import Change
from hacloud.provision.endpoint import Endpoint
from hacloud.provision.terraform import Candidate, TfResource
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import Spec
from hacloud.spec.workspace import Workspace

if TYPE_CHECKING:
    # annotations only: the account-checks role returns the verify stage's findings
    from hacloud.verify.invariants import Finding

ENTRY_POINT_GROUP = "hacloud.providers"

# Placeholders for cloud nodes that do not exist yet: TEST-NET-3 (RFC 5737) addresses, which
# are never routed, and ids that say what they stand for. `render` warns when it uses them.
PLACEHOLDER_NET = IPv4Address("203.0.113.0")

#: a node's power as the provider records it ("unknown": it cannot tell, e.g. a BMC that
#: does not answer or a machine in a transitional state)
PowerState = Literal["on", "off", "unknown"]
#: one power change a provider recorded: (epoch seconds, what the power became)
PowerChange = tuple[float, Literal["on", "off"]]


class Role(StrEnum):
    """The roles a provider can play (see the module doc)."""

    NODES = "nodes"  # NodeSource: creates the nodes (every provider at least finds them)
    POWER = "power"  # PowerControl
    TERRAFORM = "terraform"  # TerraformAdapter: nodes from Terraform resources without an output
    ACCOUNT = "account"  # AccountChecks: builds and checks infrastructure in an account


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; ``missing`` maps an operation or role to why it is not available.

    ``create_nodes``/``power_control`` are the :class:`Role` ``NODES``/``POWER`` flags;
    ``roles`` lists the others it plays; ``faults`` the fence-test fault methods it can inject
    ("fence" goes through the cluster: always)."""

    create_nodes: bool
    power_control: bool
    missing: dict[str, str] = field(default_factory=dict)
    faults: tuple[str, ...] = ("fence",)
    roles: frozenset[Role] = frozenset()

    def has(self, role: Role) -> bool:
        if role is Role.NODES:
            return self.create_nodes
        if role is Role.POWER:
            return self.power_control
        return role in self.roles

    def why_not(self, role: Role) -> str:
        """Why the provider lacks ``role`` ("" when it has it), for an error message."""
        if self.has(role):
            return ""
        key = {Role.NODES: "create_nodes", Role.POWER: "power_control"}.get(role, role.value)
        return self.missing.get(key, f"the provider does not implement the {role.value} role")


@dataclass(frozen=True)
class NodeProbe:
    """A read-only check the deploy engine runs as root on each node (`up` and `plan`) before
    the CIB that enables fencing: ``command`` is a shell line, exit 0 means it passed;
    ``before_faults``: fence-test's preflight runs it again (a permission the agents need)."""

    code: str
    what: str
    command: str
    remedy: str
    before_faults: bool = False


@dataclass(frozen=True)
class NodeNeeds:
    """Agents' ``commands``, ``packages`` per manager, ``probes``; ``name_hosts``: may rename hosts."""

    commands: tuple[str, ...] = ()
    packages: dict[str, str] = field(default_factory=dict)
    probes: tuple[NodeProbe, ...] = ()
    name_hosts: bool = False


@runtime_checkable
class NodeSource(Protocol):
    """Plans, finds, makes and removes the nodes, and says how to reach them."""

    name: str
    capabilities: Capabilities

    def planned_inventory(self, spec: Spec) -> Inventory: ...
    def discover(self, ws: Workspace) -> Inventory | None: ...
    def ensure_nodes(self, ws: Workspace) -> Inventory: ...
    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory: ...
    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint: ...
    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None: ...
    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds: ...
    def ssh_wait_seconds(self, spec: Spec) -> float: ...


@runtime_checkable
class PowerControl(Protocol):
    """A node's power, and the faults fence-test injects behind the cluster's back (what a
    fence-test round uses of a provider: :mod:`hacloud.verify.fencetest.ports`)."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    def capabilities_for(self, spec: Spec) -> Capabilities: ...
    def power(self, ws: Workspace, node: str) -> PowerState: ...
    def power_off(self, ws: Workspace, node: str) -> None: ...
    def power_on(self, ws: Workspace, node: str) -> None: ...
    def power_events(self, ws: Workspace, node: str, since: float) -> list[PowerChange]: ...
    def freeze(self, ws: Workspace, node: str) -> bool: ...
    def partition(self, ws: Workspace, cut: bool) -> None: ...
    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]: ...
    def power_on_hint(self, ws: Workspace, node: str) -> str: ...
    def power_cycle_hint(self, ws: Workspace, node: str) -> str: ...
    def freeze_hint(self, node: str) -> str: ...


@runtime_checkable
class TerraformAdapter(Protocol):
    """Nodes Terraform made: read from its resources, and what hacloud adds around them."""

    name: str

    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]: ...
    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None: ...
    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[Change]: ...
    def release(self, ws: Workspace, inventory: Inventory) -> list[Change]: ...


@runtime_checkable
class AccountChecks(Protocol):
    """This machine and the provider's account, read-only."""

    name: str

    def check_environment(self) -> None: ...
    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str] | None: ...
    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]: ...


@runtime_checkable
class Hooks(Protocol):
    """What the core asks a provider instead of branching on its kind."""

    def purge(self, ws: Workspace) -> None: ...
    def login_failed(self, ws: Workspace, error: HacloudError) -> HacloudError: ...


@runtime_checkable
class Provider(NodeSource, PowerControl, TerraformAdapter, AccountChecks, Hooks, Protocol):
    """Every role: what a plug-in registers (:class:`BaseProvider` supplies the defaults)."""


def link_count(spec: Spec) -> int:
    """Corosync links per node: as many as the spec names, else the profile's
    ``corosync.links`` (AWS and Azure add the second address themselves)."""
    from hacloud.spec.profiles import load_profile

    given = max(len(n.links) for n in spec.nodes)
    if given:
        return given
    return (
        2 if load_profile(spec.profile_name).with_overrides(spec.overrides).num("corosync.links") >= 2 else 1
    )


def with_placeholder_links(inventory: Inventory, spec: Spec) -> Inventory:
    """``inventory`` with a second placeholder link on every node whose spec names no links:
    what a cloud provider that adds link 1 itself (AWS, Azure) plans before the address exists."""
    import dataclasses

    if any(n.links for n in spec.nodes) or link_count(spec) < 2:
        return inventory
    nodes = []
    for i, node in enumerate(inventory.nodes):
        link1 = str(PLACEHOLDER_NET + 21 + i)
        nodes.append(
            dataclasses.replace(node, links=(node.links[0], link1), extra={**node.extra, "os_links": link1})
        )
    return dataclasses.replace(inventory, nodes=(nodes[0], nodes[1]))


class BaseProvider:
    """Shared behaviour for plug-ins: the inventory from the spec, SSH as the spec says, the
    hooks' defaults, and a typed error for every operation a provider has not implemented yet."""

    name = "base"
    capabilities = Capabilities(
        create_nodes=False,
        power_control=False,
        missing={"create_nodes": "not implemented", "power_control": "not implemented"},
    )
    #: issue that implements the rest of this provider, for the error message
    tracking = ""
    #: True when a node's provider id is its name (lab guest, on-prem host, Azure VM name
    #: chosen by hacloud); False when the cloud assigns it (EC2 instance ids).
    id_is_name = True

    def default_device(self, spec: Spec, index: int) -> str | None:
        """The data disk of volume ``index`` when the spec names none (None: unknown yet)."""
        return None

    def check_environment(self) -> None:
        """Raise HacloudError (with the fix) when this machine cannot drive the provider."""
        return None

    def planned_inventory(self, spec: Spec) -> Inventory:
        nodes = []
        for i, node in enumerate(spec.nodes):
            placeholder = node.address is None or (node.id is None and not self.id_is_name)
            ssh = str(node.address) if node.address else str(PLACEHOLDER_NET + 11 + i)
            links = tuple(str(a) for a in node.links) or (ssh,)
            volumes: dict[str, str] = {}
            for index, vol in enumerate(spec.volumes):
                device = node.volumes.get(vol.name) or vol.device or self.default_device(spec, index)
                if device is None:
                    device = f"/dev/disk/by-id/hacloud-placeholder-{node.name}-{vol.name}"
                    placeholder = True
                volumes[vol.name] = device
            nodes.append(
                NodeInfo(
                    name=node.name,
                    id=node.id or (node.name if self.id_is_name else f"PLACEHOLDER-{node.name}"),
                    ssh_address=ssh,
                    links=links,
                    replication_address=str(node.replication_address)
                    if node.replication_address
                    else links[0],
                    volumes=volumes,
                    placeholder=placeholder,
                )
            )
        return Inventory(1, spec.cluster.name, self.name, (nodes[0], nodes[1]), NetworkInfo())

    def _todo(self, operation: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"the {self.name} provider cannot {operation} yet",
            f"this lands with {self.tracking}; meanwhile use `hacloud render` and apply the files by hand"
            if self.tracking
            else "use another provider",
            code="HAC300",
        )

    def discover(self, ws: Workspace) -> Inventory | None:
        raise self._todo("discover nodes")

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        raise self._todo("create or find nodes")

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        return inventory

    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint:
        """How to reach ``node`` over SSH: the spec's nodes[].ssh settings."""
        ssh = ws.spec.node(node.name).ssh
        key = str(ws.resolve(ssh.key)) if ssh.key else None
        return Endpoint(node.name, node.ssh_address, ssh.port, ssh.user, key, ssh.jump)

    def capabilities_for(self, spec: Spec) -> Capabilities:
        """What the provider can do for ``spec`` (an emulated cloud can cut networks)."""
        return self.capabilities

    def power(self, ws: Workspace, node: str) -> PowerState:
        raise self._todo("read a node's power state")

    def power_off(self, ws: Workspace, node: str) -> None:
        raise self._todo("power a node off")

    def power_on(self, ws: Workspace, node: str) -> None:
        raise self._todo("power a node on")

    def power_events(self, ws: Workspace, node: str, since: float) -> list[PowerChange]:
        """(epoch seconds, "on"/"off") power changes the provider recorded since ``since``;
        [] when it keeps no such record (fence-test then relies on ``power`` alone)."""
        return []

    def freeze(self, ws: Workspace, node: str) -> bool:
        """Make ``node`` stop answering without powering it off. False: the provider cannot,
        and fence-test crashes the kernel over SSH instead (sysrq)."""
        return False

    def partition(self, ws: Workspace, cut: bool) -> None:
        """Cut (``cut=True``) or heal every network path between the two nodes, leaving each
        reachable from this machine and from its fence device. Idempotent."""
        raise self._todo("cut the network between the nodes")

    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]:
        """``argv`` run where a client of the service sits (default: this machine)."""
        return argv

    def power_on_hint(self, ws: Workspace, node: str) -> str:
        """How the user powers ``node`` back on by hand (fence-test's interrupted message)."""
        return f"the provider's console or CLI (power {node} on)"

    def power_cycle_hint(self, ws: Workspace, node: str) -> str:
        """How the user power-cycles a hung ``node`` by hand (fence-test's crash, interrupted)."""
        return f"power-cycle {node} through the provider's console or CLI"

    def freeze_hint(self, node: str) -> str:
        """What fence-test's crash fault left ``node`` in, said to the user: :meth:`freeze` is
        False by default, so the round crashed the kernel instead."""
        return f"{node}'s kernel was crashed (sysrq, no reboot): it hangs until power-cycled"

    # ------------------------------------------------------------ hooks

    def purge(self, ws: Workspace) -> None:
        """`down --purge`, after ``teardown``: drop what the provider keeps beyond the cluster
        (caches shared by clusters, such as the lab's guest images). Default: it keeps nothing."""
        return None

    def login_failed(self, ws: Workspace, error: HacloudError) -> HacloudError:
        """The error `up` shows when the first SSH login to nodes this provider just built
        fails: the default says the infrastructure is in place (a re-run reuses it) and keeps
        the cause's code and remedy. Providers whose nodes are the user's own return ``error``."""
        return HacloudError(
            f"the {self.name} infrastructure is in place, but step 'log in to the nodes over SSH' "
            f"failed: {error.message}",
            error.remedy,
            code=error.code,  # the cause (refused key, timeout...) is what scripts tell apart
        )

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        raise self._todo("tear down")

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        """Extra commands, packages and pre-fencing checks for this provider's agents."""
        return NodeNeeds()

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str] | None:
        """(what `up` would create or change in the provider's account, the permissions the
        agents get, as text), reading only; None when the provider builds no infrastructure."""
        return None

    def ssh_wait_seconds(self, spec: Spec) -> float:
        """How long `up` waits for nodes it may just have booted to accept SSH (0: no wait)."""
        return 0

    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]:
        """Checks of the provider's own resources (routes, identities, rules), read-only."""
        return []

    # ------------------------------------------------------------ drop-in on Terraform

    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]:
        """(machines in a Terraform state that could be nodes, network facts, what they are
        called) for `--from-terraform` on a state without a hacloud_inventory output."""
        raise HacloudError(
            f"the {self.name} provider does not read nodes from Terraform resources",
            "publish a hacloud_inventory output (docs/inventory.md) or map outputs with --tf-map",
            code="HAC301",
        )

    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None:
        """The block device for a value a --tf-map output holds (None: the default device)."""
        if value is None:
            return spec.nodes[node].volumes.get(spec.volumes[volume].name) or self.default_device(
                spec, volume
            )
        return value

    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[Change]:
        """Add what the agents need around nodes Terraform owns and did not provide (never
        modifying a Terraform resource); record it so `release` removes exactly that.
        Returns what changed (``apply=False``: what would change, changing nothing)."""
        return []

    def release(self, ws: Workspace, inventory: Inventory) -> list[Change]:
        """Remove what ``adopt`` added; Terraform's resources stay. Returns what was removed."""
        return []


# ---------------------------------------------------------------- finding providers

_REGISTERED: dict[str, Provider] = {}


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    """The installed entry points of ``group`` by name, looked up once per process (it scans
    every installed distribution's metadata)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def provider_names() -> list[str]:
    return sorted(set(_entry_points(ENTRY_POINT_GROUP)) | set(_REGISTERED))


def register(name: str, provider: Provider, *, replace: bool = False) -> None:
    """Make ``provider`` the provider called ``name`` in this process (tests plug in fakes).
    An installed provider of that name is shadowed only with ``replace``; registering a name
    twice is refused (unregister it first)."""
    if not isinstance(provider, Provider):
        raise HacloudError(
            f"{provider!r} is not a hacloud provider (it lacks methods of the Provider roles)",
            "derive it from hacloud.provision.provider.BaseProvider",
            code="HAC304",
        )
    if name in _REGISTERED or (name in _entry_points(ENTRY_POINT_GROUP) and not replace):
        raise HacloudError(
            f"a provider named {name!r} is already {'registered' if name in _REGISTERED else 'installed'}",
            "unregister it first, choose another name, or pass replace=True to shadow an installed one",
            code="HAC305",
        )
    _REGISTERED[name] = provider


def unregister(name: str) -> None:
    """Forget a provider :func:`register` added (the installed one of that name comes back)."""
    _REGISTERED.pop(name, None)


@contextmanager
def registered(name: str, provider: Provider, *, replace: bool = False) -> Iterator[Provider]:
    """``provider`` registered as ``name`` for the ``with`` block, and unregistered after it."""
    register(name, provider, replace=replace)
    try:
        yield provider
    finally:
        unregister(name)


def get_provider(name: str) -> Provider:
    """The provider called ``name``: a registered one, else the installed entry point's (which
    imports only that provider's package)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    ep = _entry_points(ENTRY_POINT_GROUP).get(name)
    if ep is None:
        raise HacloudError(
            f"no provider named {name!r} is installed (have: {', '.join(provider_names()) or 'none'})",
            "install hacloud with `pip install -e .` so its entry points are registered",
            code="HAC303",
        )
    provider = ep.load()
    if not isinstance(provider, Provider):
        raise HacloudError(
            f"entry point {ep.value} is not a hacloud provider",
            "reinstall the package that registers it",
            code="HAC302",
        )
    return provider
