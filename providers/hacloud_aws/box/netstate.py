"""The network's view of the account: ``NetworkState`` = the ``CloudState`` snapshot plus what
only the router needs (the subnets' CIDRs and zones, the security groups' permissions, the
faults that are on), and ``read_groups`` to take the security groups from moto in-process
(no API call, like ``state.snapshot``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from hacloud_aws.box.layout import ACCOUNT_ID, SUBNETS
from hacloud_aws.box.state import CloudState

INET_BRIDGE = "br-inet"
CLIENT_SUBNET = "c"  # the admin's and the clients' subnet: every zone keeps reaching it
FAULT_KINDS = ("partition", "api_cut")
#: EC2 states in which the instance's OS may be up (a stop begins with a graceful shutdown, so
#: a ``stopping`` instance still serves): its routes forward and its security groups apply
ALIVE = frozenset({"pending", "running", "stopping", "shutting-down"})


@dataclass(frozen=True)
class Rule:
    """One IpPermission: protocol ("tcp", "udp", "icmp", "-1" = all), ports, and a CIDR or a
    security group (whose members' addresses) as the peer."""

    proto: str
    from_port: int | None
    to_port: int | None
    cidr: str | None
    group: str | None


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]


@dataclass(frozen=True)
class NetworkState:
    """What the router makes physical: the account, its subnets as (name, subnet id, CIDR,
    zone), its security groups, and the faults that are on (``partition``, ``api_cut:<zone>``)."""

    cloud: CloudState
    subnets: tuple[tuple[str, str, str, str], ...]
    groups: tuple[SecurityGroup, ...] = ()
    faults: frozenset[str] = field(default_factory=frozenset)


def bridge(subnet_name: str) -> str:
    """The router's bridge of a subnet (``br-a``...)."""
    return f"br-{subnet_name}"


def gateway_address(cidr: str) -> str:
    """The VPC router's address in a subnet: its first host (AWS reserves ``.1``)."""
    return str(next(ipaddress.IPv4Network(cidr).hosts()))


def layout_subnets(subnet_ids: dict[str, str], region: str) -> tuple[tuple[str, str, str, str], ...]:
    """The box layout's subnets as ``NetworkState.subnets`` (ids from ``Layout.subnets``)."""
    return tuple((name, subnet_ids[name], cidr, region + zone) for name, cidr, zone in SUBNETS)


def _rules(moto_rules: list[Any]) -> tuple[Rule, ...]:
    out = []
    for r in list(moto_rules):
        proto = str(r.ip_protocol or "-1")
        ports = (r.from_port, r.to_port) if proto in ("tcp", "udp") else (None, None)
        cidr = r.ip_range.get("CidrIp") if r.ip_range else None
        group = r.source_group.get("GroupId") if r.source_group else None
        if cidr is not None or group is not None:
            out.append(Rule(proto, ports[0], ports[1], cidr, group))
    return tuple(sorted(out, key=repr))


def read_groups(region: str) -> tuple[SecurityGroup, ...]:
    """Every security group of the account's VPCs, read from moto's backend in this process."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT_ID][region]
    groups = [g for by_vpc in list(backend.groups.values()) for g in list(by_vpc.values())]
    return tuple(
        sorted(
            (SecurityGroup(g.id, _rules(g.ingress_rules), _rules(g.egress_rules)) for g in groups),
            key=lambda g: g.id,
        )
    )


def bridge_of(state: NetworkState, subnet_id: str) -> str:
    """The bridge of the subnet with id ``subnet_id`` (where its instances are plugged)."""
    names = [name for name, sid, _cidr, _zone in state.subnets if sid == subnet_id]
    if not names:
        raise KeyError(subnet_id)
    return bridge(names[0])
