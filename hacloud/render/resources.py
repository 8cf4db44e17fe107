"""Build the Pacemaker resources of a cluster as data (pure).

Contract: every function here is pure: (spec, inventory, profile, targets) in, frozen
:class:`~hacloud.spec.inventory.Primitive` values out. VIP builders are per kind; providers
return their results from ``Provider.vip``. The fence devices are built in
:mod:`hacloud.render.fencing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hacloud.errors import HacloudError
from hacloud.render.versions import Targets
from hacloud.spec.inventory import Inventory, Op, Primitive, ServiceLimits
from hacloud.spec.model import (
    AwsEipVip,
    AwsMoveIpVip,
    AzureLbVip,
    DemoService,
    IPaddr2Vip,
    OcfService,
    Spec,
    SystemdService,
    VolumeSpec,
)
from hacloud.spec.profiles import Profile

GROUP_ID = "g_service"


def _b(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class DrbdVolume:
    """One volume of a DRBD resource: ``index`` in ``spec.volumes``, ``number`` inside the
    resource (its ``volume N`` section), ``minor`` of /dev/drbdN."""

    index: int
    number: int
    minor: int
    spec: VolumeSpec


@dataclass(frozen=True)
class DrbdResource:
    """One DRBD resource: its volumes in spec order, one replication port."""

    name: str
    port: int
    volumes: tuple[DrbdVolume, ...]


def volume_minor(spec: Spec, index: int) -> int:
    """The volume's own minor, else its index in ``volumes``: appending a volume, to the spec or
    to a resource, never renumbers an existing one."""
    vol = spec.volumes[index]
    return vol.minor if vol.minor is not None else index


def drbd_resources(spec: Spec) -> list[DrbdResource]:
    """The DRBD resources in order of first appearance. The port is the one a member sets,
    else 7789 + the index of the resource's first volume: for a spec without grouping that
    is 7789 + index as it always was, and appending volumes changes no existing port."""
    members: dict[str, list[int]] = {}
    for index, vol in enumerate(spec.volumes):
        members.setdefault(vol.drbd_resource, []).append(index)
    out = []
    for name, indexes in members.items():
        vols = tuple(
            DrbdVolume(index, number, volume_minor(spec, index), spec.volumes[index])
            for number, index in enumerate(indexes)
        )
        port = next((v.spec.port for v in vols if v.spec.port is not None), 7789 + indexes[0])
        out.append(DrbdResource(name, port, vols))
    return out


def drbd_ports(spec: Spec) -> list[int]:
    """Every DRBD replication port, once (what the firewall must let through)."""
    return [r.port for r in drbd_resources(spec)]


# ---------------------------------------------------------------- DRBD, filesystem, service


def primitive_id_of_drbd(resource: str) -> str:
    """The id of the ``ocf:linbit:drbd`` primitive of DRBD resource ``resource`` (the one place
    it is made: node queries look resources up by it)."""
    return f"drbd_{resource}"


def filesystem_ids(spec: Spec) -> list[str]:
    """The Filesystem primitives' ids, in the spec's volume order (the service's data first)."""
    return [f"fs_{vol.name}" for vol in spec.volumes]


def drbd_primitive(resource: str, profile: Profile, targets: Targets) -> Primitive:
    """``ocf:linbit:drbd`` for one DRBD resource, all its volumes (the agent promotes the
    resource as a whole)."""
    p = profile.num
    return Primitive(
        id=primitive_id_of_drbd(resource),
        standard="ocf",
        provider="linbit",
        type="drbd",
        params=(("drbd_resource", resource),),
        ops=(
            Op("start", 0, p("ops.drbd.start_timeout")),
            Op("stop", 0, p("ops.drbd.stop_timeout")),
            Op("promote", 0, p("ops.drbd.promote_timeout")),
            Op("demote", 0, p("ops.drbd.demote_timeout")),
            Op("notify", 0, p("ops.drbd.notify_timeout")),
            # Two monitors on one resource must differ in interval (Pacemaker keys ops by it).
            Op("monitor", p("ops.drbd.monitor_promoted"), p("ops.drbd.monitor_timeout"), targets.promoted),
            Op(
                "monitor", p("ops.drbd.monitor_unpromoted"), p("ops.drbd.monitor_timeout"), targets.unpromoted
            ),
        ),
    )


def filesystem_primitive(spec: Spec, index: int, profile: Profile) -> Primitive:
    vol = spec.volumes[index]
    p = profile.num
    params = [
        ("device", f"/dev/drbd{volume_minor(spec, index)}"),
        ("directory", vol.mount_point),
        ("fstype", vol.filesystem),
    ]
    if vol.mount_options:
        params.append(("options", vol.mount_options))
    return Primitive(
        id=filesystem_ids(spec)[index],
        standard="ocf",
        provider="heartbeat",
        type="Filesystem",
        params=tuple(params),
        ops=(
            Op("start", 0, p("ops.filesystem.start_timeout")),
            Op("stop", 0, p("ops.filesystem.stop_timeout")),
            Op("monitor", p("ops.filesystem.monitor_interval"), p("ops.filesystem.monitor_timeout")),
        ),
    )


def service_ref(spec: Spec) -> str | None:
    """The spec's service as Pacemaker names it (``systemd:UNIT.service``, ``ocf:PROVIDER:TYPE``);
    None for the demo, whose agent hacloud ships. The deploy engine reads its limits by this name."""
    svc = spec.service
    if isinstance(svc, SystemdService):
        unit = svc.unit if svc.unit.endswith(".service") else f"{svc.unit}.service"
        return f"systemd:{unit}"
    if isinstance(svc, OcfService):
        return svc.agent
    return None


def service_limits(spec: Spec, inventory: Inventory) -> list[ServiceLimits]:
    """The limits each node reported for the spec's service (stale facts about another service
    are ignored); empty when not known yet."""
    ref = service_ref(spec)
    return [n.facts.service for n in inventory.nodes if n.facts.service and n.facts.service.service == ref]


def service_timeouts(spec: Spec, inventory: Inventory, profile: Profile) -> tuple[int, int]:
    """(start, stop) timeout in seconds for the service's operations.

    A spec value is used as given (``hacloud check`` HAC092/HAC093 flag one below the node's own
    limit). Otherwise: the larger of the profile's floor and what the nodes need, never below
    either. A systemd unit needs its TimeoutStartSec/TimeoutStopSec plus ``ops.service.unit_margin``
    so systemd's own verdict lands first (at TimeoutStopSec it kills the service; a stop that
    Pacemaker times out instead fences the node). An OCF agent needs the minimum its meta-data
    advises. A unit with no start limit gets ``ops.service.unbounded_start_timeout``: a start
    that times out is fatal on that node (start-failure-is-fatal). A unit with no stop limit
    keeps the floor: Pacemaker's stop timeout is then the bound, and fencing ends the service.
    """
    svc = spec.service
    start, stop = profile.num("ops.service.start_timeout"), profile.num("ops.service.stop_timeout")
    for limits in service_limits(spec, inventory):
        margin = profile.num("ops.service.unit_margin") if limits.service.startswith("systemd:") else 0
        if limits.start is None:
            start = max(start, profile.num("ops.service.unbounded_start_timeout"))
        else:
            start = max(start, limits.start + margin)
        if limits.stop is not None:
            stop = max(stop, limits.stop + margin)
    if isinstance(svc, SystemdService | OcfService):
        start = svc.start_timeout or start
        stop = svc.stop_timeout or stop
    return start, stop


def _service_ops(spec: Spec, inventory: Inventory, profile: Profile) -> tuple[Op, ...]:
    p = profile.num
    start, stop = service_timeouts(spec, inventory, profile)
    return (
        Op("start", 0, start),
        Op("stop", 0, stop),
        Op("monitor", p("ops.service.monitor_interval"), p("ops.service.monitor_timeout")),
    )


def service_primitive(spec: Spec, inventory: Inventory, profile: Profile) -> Primitive:
    svc = spec.service
    ops = _service_ops(spec, inventory, profile)
    if isinstance(svc, DemoService):
        params = (("data", demo_data_dir(spec)), ("port", str(svc.port)))
        return Primitive("svc_demo", "ocf", "demo", provider="hacloud", params=params, ops=ops)
    if isinstance(svc, SystemdService):
        unit = svc.unit.removesuffix(".service")
        return Primitive(f"svc_{xml_id(unit)}", "systemd", unit, ops=ops)
    assert isinstance(svc, OcfService)
    _, provider, kind = svc.agent.split(":")
    ocf_params = tuple((k, _text(v)) for k, v in sorted(svc.params.items()))
    return Primitive(f"svc_{xml_id(kind)}", "ocf", kind, provider=provider, params=ocf_params, ops=ops)


def demo_data_dir(spec: Spec) -> str:
    """Where the demo keeps its records: on the first volume's replicated filesystem."""
    return f"{spec.volumes[0].mount_point.rstrip('/')}/hacloud-demo"


def xml_id(text: str) -> str:
    """``text`` as a CIB id: letters, digits, ``_`` and ``-``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def _text(value: str | int | bool) -> str:
    return _b(value) if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------- VIP


def _vip_ops(profile: Profile) -> tuple[Op, ...]:
    p = profile.num
    return (
        Op("start", 0, p("ops.vip.start_timeout")),
        Op("stop", 0, p("ops.vip.stop_timeout")),
        Op("monitor", p("ops.vip.monitor_interval"), p("ops.vip.monitor_timeout")),
    )


# aws-vpc-move-ip's own default interface (its meta-data); right only where the NIC is eth0.
AWS_AGENT_INTERFACE = "eth0"


def vip_interface(spec: Spec, inventory: Inventory) -> str:
    """The interface aws-vpc-move-ip adds the overlay IP to (and whose ENI the route names).

    ``vip.interface`` wins; else the nodes' primary interface from their facts (Debian/Ubuntu
    Nitro AMIs name it ens5, not eth0); else the agent's default, which ``hacloud check``
    (HAC091) reports as unknown. Raises HacloudError when the nodes name it differently: the
    agent takes one name for both.
    """
    assert isinstance(spec.vip, AwsMoveIpVip)
    if spec.vip.interface:
        return spec.vip.interface
    found = {n.name: n.facts.primary_interface for n in inventory.nodes if n.facts.primary_interface}
    if len(set(found.values())) > 1:
        named = ", ".join(f"{node} {iface}" for node, iface in sorted(found.items()))
        raise HacloudError(
            f"the nodes' primary interfaces differ ({named}); aws-vpc-move-ip takes one name for both",
            "give both nodes the same interface name (same AMI and instance family, or a systemd .link "
            "file), then set vip.interface to it",
            code="HAC223",
        )
    return next(iter(found.values()), AWS_AGENT_INTERFACE)


def vip_primitives(spec: Spec, inventory: Inventory, profile: Profile) -> list[Primitive]:
    """The VIP resources in start order (they join the service group after the service)."""
    vip = spec.vip
    ops = _vip_ops(profile)
    if isinstance(vip, IPaddr2Vip):
        params = [("ip", str(vip.address)), ("cidr_netmask", str(vip.cidr_netmask))]
        if vip.nic:
            params.append(("nic", vip.nic))
        return [Primitive("vip_ip", "ocf", "IPaddr2", "heartbeat", tuple(params), ops=ops)]
    if isinstance(vip, AwsMoveIpVip):
        return [
            Primitive(
                "vip_aws",
                "ocf",
                "aws-vpc-move-ip",
                "heartbeat",
                (
                    ("ip", str(vip.address)),
                    ("routing_table", ",".join(vip.route_tables)),
                    ("interface", vip_interface(spec, inventory)),
                    # monapi=false: the monitor checks the local route only, so an EC2 API hiccup
                    # does not fail the VIP over (AWS sample config, TFSAP).
                    ("monapi", "false"),
                    # The agent always writes the route by interface id (replace-route
                    # --network-interface-id); comparing by the same id is exact even on an
                    # instance with several interfaces (the default compares instance ids).
                    ("lookup_type", "NetworkInterfaceId"),
                ),
                ops=ops,
            )
        ]
    if isinstance(vip, AwsEipVip):
        params = [("elastic_ip", str(vip.elastic_ip)), ("allocation_id", vip.allocation_id)]
        if vip.private_ip_address:
            params.append(("private_ip_address", str(vip.private_ip_address)))
        return [Primitive("vip_eip", "ocf", "awseip", "heartbeat", tuple(params), ops=ops)]
    assert isinstance(vip, AzureLbVip)
    return [
        Primitive(
            "vip_ip",
            "ocf",
            "IPaddr2",
            "heartbeat",
            (("ip", str(vip.address)), ("cidr_netmask", str(vip.cidr_netmask))),
            ops=ops,
        ),
        # The probe listener starts last: the load balancer sends traffic only once the
        # service and the VIP are up on this node. stickiness 0 per MicrosoftDocs #97227.
        Primitive(
            "vip_lb",
            "ocf",
            "azure-lb",
            "heartbeat",
            (("port", str(vip.probe_port)),),
            meta=(("resource-stickiness", "0"),),
            ops=ops,
        ),
    ]
