"""Frozen dataclasses exchanged between providers, renderers and the deploy engine.

The :class:`Inventory` is what exists (or will exist) for a cluster: providers return it,
``hacloud render --inventory FILE`` reads it, and the Terraform integration produces it. Its
JSON form is documented in ``docs/inventory.md`` and ``docs/inventory.schema.json``
(checked against :func:`inventory_json_schema` by a test).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from hacloud.spec.grammar import (
    CLUSTER_NAME,
    CidrText,
    ExtraText,
    HostText,
    InterfaceName,
    Ipv4Text,
    NodeName,
    ProviderId,
    RouteTableId,
    SafePath,
    ServiceRef,
    VolumeName,
    ZoneName,
)

INVENTORY_SCHEMA_VERSION = 1
_FORBID = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ServiceLimits:
    """How long the node's own definition of the service lets a start or stop take, in seconds.

    ``service`` names what was read, in Pacemaker's class:provider:type form: a systemd unit
    (``systemd:postgresql@15-main.service``: ``TimeoutStartUSec``/``TimeoutStopUSec`` from
    ``systemctl show``) or an OCF agent (``ocf:heartbeat:mysql``: the start/stop ``timeout``
    its meta-data advises as a minimum). ``start``/``stop`` None: the unit sets no limit
    (systemd ``infinity``; ``0`` means the same, systemd.service(5)); for an agent, 0 when its
    meta-data advises none. ``stays_active``: a ``Type=oneshot`` unit with
    ``RemainAfterExit=yes``, which stays active whatever its processes do (an umbrella unit).
    """

    __pydantic_config__ = _FORBID

    service: ServiceRef
    start: Annotated[int, Field(ge=0)] | None
    stop: Annotated[int, Field(ge=0)] | None
    stays_active: bool = False


@dataclass(frozen=True)
class NodeFacts:
    """What is known about a node's software and network; None means unknown (a default is used).

    ``corosync_log_dir``: the directory the node's corosync package logs to (Debian
    ``/var/log/corosync``, RHEL/SUSE ``/var/log/cluster``); ``primary_interface``: the interface
    holding the node's first link address (else the default route's); ``service``: the limits
    the spec's service sets itself on this node.
    """

    __pydantic_config__ = _FORBID

    drbd: Literal["8.4", "9"] | None = None
    pacemaker: str | None = None
    os_family: Literal["debian", "rhel", "suse"] | None = None
    corosync_log_dir: SafePath | None = None
    primary_interface: InterfaceName | None = None
    service: ServiceLimits | None = None


@dataclass(frozen=True)
class NodeInfo:
    """One cluster node.

    ``name`` is the Pacemaker node name (host name); ``id`` the provider's id for it (EC2
    instance id, Azure VM name, lab guest or host name); ``links`` the corosync link addresses
    in link order; ``volumes`` maps volume name to the block device path on this node.
    ``placeholder`` is true when ids or addresses are stand-ins for resources not yet created.
    Each field has a grammar (:mod:`hacloud.spec.grammar`) checked when an inventory is loaded or
    imported: addresses are IPv4 addresses, devices safe absolute paths, ids and zones tokens.
    """

    __pydantic_config__ = _FORBID

    name: NodeName
    id: ProviderId
    ssh_address: HostText
    links: tuple[Ipv4Text, ...]
    replication_address: Ipv4Text
    volumes: dict[VolumeName, SafePath]
    zone: ZoneName | None = None
    bmc_address: HostText | None = None
    placeholder: bool = False
    facts: NodeFacts = field(default_factory=NodeFacts)
    extra: dict[ProviderId, ExtraText] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkInfo:
    """Network facts: provider-specific values live in ``extra`` (the core never reads them)."""

    __pydantic_config__ = _FORBID

    vpc_cidr: CidrText | None = None
    route_tables: tuple[RouteTableId, ...] = ()
    extra: dict[ProviderId, ExtraText] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    __pydantic_config__ = _FORBID

    schema_version: Literal[1]
    cluster: Annotated[str, Field(pattern=CLUSTER_NAME, description="the spec's cluster.name")]
    provider: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="provider kind, e.g. aws")]
    nodes: tuple[NodeInfo, NodeInfo]
    network: NetworkInfo = field(default_factory=NetworkInfo)

    def node(self, name: str) -> NodeInfo:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def placeholder(self) -> bool:
        return any(n.placeholder for n in self.nodes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


INVENTORY_ADAPTER: TypeAdapter[Inventory] = TypeAdapter(Inventory)


def inventory_json_schema() -> dict[str, Any]:
    schema = INVENTORY_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hacloud inventory"
    return schema


# ---------------------------------------------------------------- Pacemaker resources as data


@dataclass(frozen=True)
class Op:
    """A resource operation; ``role`` is 'Promoted'/'Unpromoted' or None."""

    name: str
    interval: int
    timeout: int
    role: str | None = None


@dataclass(frozen=True)
class Primitive:
    """A Pacemaker primitive as data; core templates render it to CIB XML.

    ``standard`` is ocf, stonith or systemd; ``provider`` is set for ocf only. ``avoid`` names a
    node the resource must never run on (a fence device is kept off the node it fences).
    """

    id: str
    standard: str
    type: str
    provider: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    ops: tuple[Op, ...] = ()
    avoid: str | None = None

    @property
    def agent(self) -> str:
        if self.provider:
            return f"{self.standard}:{self.provider}:{self.type}"
        return f"{self.standard}:{self.type}"

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)


@dataclass(frozen=True)
class FenceDevice:
    """A fencing primitive and the node it fences, at topology ``level`` (1 = tried first)."""

    primitive: Primitive
    target: str
    level: int = 1


@dataclass(frozen=True)
class RenderedFile:
    """A file for one node: ``path`` absolute on the node; ``secret`` files are never shown."""

    path: str
    content: bytes
    mode: int = 0o644
    secret: bool = False
