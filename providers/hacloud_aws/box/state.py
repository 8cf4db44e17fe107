"""``CloudState``: a frozen snapshot of what the emulated account holds, read from moto's
backends in-process, for the parts that make it physical (IMDS, network, guests: the next work
packages) and for tests. It costs no API call, so it never shows in the action log or the
bench's call counts.

Contract: ``snapshot(region)`` returns every instance not ``terminated`` with its interfaces
(private IPs, MAC, source/dest check, groups, public IP), its zone, subnet, instance-profile
role and metadata options; every route table with its subnet associations and routes (target
interface, instance or gateway); the Elastic IPs and their interface; the volumes and their
attachment. Ids are sorted, so two snapshots of one state compare equal. moto's objects are
read while API threads may change them: a snapshot that races a change is taken again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hacloud_aws.box.layout import ACCOUNT_ID


@dataclass(frozen=True)
class Interface:
    id: str
    subnet: str
    private_ips: tuple[str, ...]  # primary first
    mac: str
    source_dest_check: bool
    groups: tuple[str, ...]
    public_ip: str | None


@dataclass(frozen=True)
class Instance:
    id: str
    state: str  # moto's (EC2's) state name: pending, running, stopping, stopped, ...
    zone: str
    subnet: str
    interfaces: tuple[Interface, ...]  # by device index
    role: str | None  # the instance profile's role, whose credentials IMDS hands out
    http_tokens: str  # "required" = IMDSv2 only
    http_endpoint: str  # "enabled" | "disabled"
    hop_limit: int


@dataclass(frozen=True)
class Route:
    destination: str
    interface: str | None
    instance: str | None
    gateway: str | None
    local: bool


@dataclass(frozen=True)
class RouteTable:
    id: str
    subnets: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class ElasticIp:
    allocation: str
    address: str
    interface: str | None


@dataclass(frozen=True)
class Volume:
    id: str
    zone: str
    size_gib: int
    instance: str | None
    device: str | None


@dataclass(frozen=True)
class CloudState:
    region: str
    instances: tuple[Instance, ...]
    route_tables: tuple[RouteTable, ...]
    elastic_ips: tuple[ElasticIp, ...]
    volumes: tuple[Volume, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _interface(eni: Any) -> Interface:
    ips = [str(eni.private_ip_address)]
    ips += [a["PrivateIpAddress"] for a in eni.private_ip_addresses if a["PrivateIpAddress"] not in ips]
    return Interface(
        id=eni.id,
        subnet=eni.subnet.id,
        private_ips=tuple(ips),
        mac=eni.mac_address,
        source_dest_check=str(eni.source_dest_check).lower() == "true",
        groups=tuple(sorted(g.id for g in eni.group_set)),
        public_ip=eni.public_ip or None,
    )


def _instance(backend: Any, inst: Any) -> Instance:
    assoc = backend.iam_instance_profile_associations.get(inst.id)
    roles = list(assoc.iam_instance_profile.roles) if assoc is not None else []
    options = inst.metadata_options
    return Instance(
        id=inst.id,
        state=inst._state.name,
        zone=inst.placement.zone,
        subnet=inst.subnet_id,
        interfaces=tuple(_interface(inst.nics[i]) for i in sorted(inst.nics)),
        role=roles[0].name if roles else None,
        http_tokens=options.http_tokens,
        http_endpoint=options.http_endpoint,
        hop_limit=int(options.http_put_response_hop_limit),
    )


def _route_table(table: Any) -> RouteTable:
    routes = [
        Route(
            destination=r.destination_cidr_block,
            interface=r.interface.id if r.interface is not None else None,
            instance=r.instance.id if r.instance is not None else None,
            gateway=r.gateway.id if r.gateway is not None else None,
            local=bool(r.local),
        )
        for r in list(table.routes)
        if r.destination_cidr_block
    ]
    return RouteTable(
        id=table.id,
        subnets=tuple(sorted(a["SubnetId"] for a in list(table.associations) if "SubnetId" in a)),
        routes=tuple(sorted(routes, key=lambda r: r.destination)),
    )


def _read(region: str) -> CloudState:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT_ID][region]
    instances = [
        _instance(backend, i)
        for r in list(backend.reservations.values())
        for i in list(r.instances)
        if i._state.name != "terminated"
    ]
    volumes = [
        Volume(
            v.id,
            v.zone.name,
            int(v.size),
            v.attachment.instance.id if v.attachment else None,
            v.attachment.device if v.attachment else None,
        )
        for v in list(backend.volumes.values())
    ]
    eips = [
        ElasticIp(a.allocation_id or "", a.public_ip, a.eni.id if a.eni else None)
        for a in list(backend.addresses)
    ]
    return CloudState(
        region=region,
        instances=tuple(sorted(instances, key=lambda i: i.id)),
        route_tables=tuple(
            sorted((_route_table(t) for t in list(backend.route_tables.values())), key=lambda t: t.id)
        ),
        elastic_ips=tuple(sorted(eips, key=lambda e: e.allocation)),
        volumes=tuple(sorted(volumes, key=lambda v: v.id)),
    )


def snapshot(region: str, attempts: int = 5) -> CloudState:
    """The account's state now (see the module contract)."""
    for _ in range(attempts - 1):
        try:
            return _read(region)
        except RuntimeError:  # "changed size during iteration": an API call raced the read
            continue
    return _read(region)
