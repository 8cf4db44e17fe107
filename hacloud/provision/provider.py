"""The provider seam: one small Protocol, found through the ``hacloud.providers`` entry points.

Contract:
- ``planned_inventory(spec)`` is pure: the inventory the cluster will have, with documented
  placeholders (``placeholder=True``) where ids or addresses do not exist yet.
- ``discover`` is read-only; ``ensure_*`` are idempotent and create only what is missing.
- ``fencing`` / ``vip`` are pure and return Pacemaker resources as data.
- Fault injection for ``hacloud fence-test`` (``power_off``, ``freeze``, ``partition``) acts
  behind the cluster's back, through the provider, never through Pacemaker; ``power`` and
  ``power_events`` read the provider's own record of a node's power, so a fence can be
  confirmed independently of the cluster that claims it.
- Anything a provider cannot do raises :class:`~hacloud.errors.ProviderUnavailable` naming
  what is missing; ``capabilities`` says up front what it can do.

Provider packages must not import a cloud SDK at import time (``hacloud --help`` stays fast
and works without the extras installed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from ipaddress import IPv4Address
from typing import Protocol, runtime_checkable

from hacloud.deploy.remote import Endpoint
from hacloud.errors import HacloudError, ProviderUnavailable
from hacloud.provision.terraform import Candidate, TfResource
from hacloud.render.fencing import fence_devices
from hacloud.render.resources import vip_primitives
from hacloud.spec.inventory import FenceDevice, Inventory, NetworkInfo, NodeInfo, Primitive
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.spec.workspace import Workspace
from hacloud.verify.invariants import Finding

ENTRY_POINT_GROUP = "hacloud.providers"

# Placeholders for cloud nodes that do not exist yet: TEST-NET-3 (RFC 5737) addresses, which
# are never routed, and ids that say what they stand for. `render` warns when it uses them.
PLACEHOLDER_NET = IPv4Address("203.0.113.0")


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; ``missing`` maps an operation to why it is not available."""

    create_nodes: bool
    power_control: bool
    missing: dict[str, str] = field(default_factory=dict)
    #: fence-test fault methods it can inject ("fence" goes through the cluster: always)
    faults: tuple[str, ...] = ("fence",)


PowerState = str  # "on" | "off" | "unknown"


@dataclass(frozen=True)
class NodeProbe:
    """A read-only check the deploy engine runs as root on each node (`up` and `plan`) before
    the CIB that enables fencing: ``command`` is a shell line, exit 0 means it passed."""

    code: str
    what: str
    command: str
    remedy: str


@dataclass(frozen=True)
class NodeNeeds:
    """What a provider's agents need on the nodes beyond the core packages: ``commands`` that
    must exist, ``packages`` per package manager that provide them, and ``probes``."""

    commands: tuple[str, ...] = ()
    packages: dict[str, str] = field(default_factory=dict)
    probes: tuple[NodeProbe, ...] = ()


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: Capabilities

    def planned_inventory(self, spec: Spec) -> Inventory: ...
    def check_environment(self) -> None: ...
    def discover(self, ws: Workspace) -> Inventory | None: ...
    def ensure_nodes(self, ws: Workspace) -> Inventory: ...
    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory: ...
    def fencing(self, spec: Spec, inventory: Inventory, profile: Profile) -> list[FenceDevice]: ...
    def vip(self, spec: Spec, inventory: Inventory, profile: Profile) -> list[Primitive]: ...
    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint: ...
    def power(self, ws: Workspace, node: str) -> PowerState: ...
    def power_off(self, ws: Workspace, node: str) -> None: ...
    def power_on(self, ws: Workspace, node: str) -> None: ...
    def power_events(self, ws: Workspace, node: str, since: float) -> list[tuple[float, str]]: ...
    def freeze(self, ws: Workspace, node: str) -> bool: ...
    def partition(self, ws: Workspace, cut: bool) -> None: ...
    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]: ...
    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None: ...
    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds: ...
    def ssh_wait_seconds(self, spec: Spec) -> float: ...
    def plan_infrastructure(self, ws: Workspace) -> tuple[list[str], str] | None: ...
    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]: ...
    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]: ...
    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None: ...
    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[str]: ...
    def release(self, ws: Workspace, inventory: Inventory) -> list[str]: ...


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
    """Shared behaviour: inventory from the spec, fencing/VIP from the core builders, and a
    typed error for every operation a provider has not implemented yet."""

    name = "base"
    capabilities = Capabilities(create_nodes=False, power_control=False)
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

    def fencing(self, spec: Spec, inventory: Inventory, profile: Profile) -> list[FenceDevice]:
        return fence_devices(spec, inventory, profile)

    def vip(self, spec: Spec, inventory: Inventory, profile: Profile) -> list[Primitive]:
        return vip_primitives(spec, inventory, profile)

    def _todo(self, operation: str) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"the {self.name} provider cannot {operation} yet",
            f"this lands with {self.tracking}; meanwhile use `hacloud render` and apply the files by hand"
            if self.tracking
            else "use another provider",
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

    def power(self, ws: Workspace, node: str) -> PowerState:
        raise self._todo("read a node's power state")

    def power_off(self, ws: Workspace, node: str) -> None:
        raise self._todo("power a node off")

    def power_on(self, ws: Workspace, node: str) -> None:
        raise self._todo("power a node on")

    def power_events(self, ws: Workspace, node: str, since: float) -> list[tuple[float, str]]:
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

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        raise self._todo("tear down")

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        """Extra commands, packages and pre-fencing checks for this provider's agents."""
        return NodeNeeds()

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[str], str] | None:
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
        )

    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None:
        """The block device for a value a --tf-map output holds (None: the default device)."""
        if value is None:
            return spec.nodes[node].volumes.get(spec.volumes[volume].name) or self.default_device(
                spec, volume
            )
        return value

    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[str]:
        """Add what the agents need around nodes Terraform owns and did not provide (never
        modifying a Terraform resource); record it so `release` removes exactly that.
        Returns what changed (``apply=False``: what would change, changing nothing)."""
        return []

    def release(self, ws: Workspace, inventory: Inventory) -> list[str]:
        """Remove what ``adopt`` added; Terraform's resources stay. Returns what was removed."""
        return []


def provider_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def get_provider(name: str) -> Provider:
    """Load the provider registered under ``name`` (imports only that provider's package)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            provider = ep.load()
            if not isinstance(provider, Provider):
                raise HacloudError(
                    f"entry point {ep.value} is not a hacloud provider",
                    "reinstall the package that registers it",
                )
            return provider
    raise HacloudError(
        f"no provider named {name!r} is installed (have: {', '.join(provider_names()) or 'none'})",
        "install hacloud with `pip install -e .` so its entry points are registered",
    )
