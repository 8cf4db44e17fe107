"""The cluster spec (``hacloud.yaml``): what the user wants, as frozen, validated models.

Contract: :func:`hacloud.spec.load.load_spec` is the only way a spec reaches the rest of
hacloud; it either returns a :class:`Spec` that passed every field validation here and every
spec rule in :mod:`hacloud.spec.rules`, or raises ``SpecError`` listing every problem.
Every field carries a description: it feeds ``hacloud schema`` and the remedy of a type error.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Any, Literal

from pydantic import Field

from hacloud.spec.base import SpecModel
from hacloud.spec.grammar import (
    AWS_REGION,
    AZURE_RESOURCE_GROUP,
    BMC_USER,
    GUID,
    LINE_TEXT,
    NIC,
    OCF_PARAM,
    PROVIDER_ID,
    SafePath,
)

# The provider settings (``provider:``) live in their own module; the ones the plug-ins have
# always imported from here stay importable from here.
from hacloud.spec.provider_spec import AwsOptions as AwsOptions  # noqa: PLC0414
from hacloud.spec.provider_spec import AzureOptions as AzureOptions  # noqa: PLC0414
from hacloud.spec.provider_spec import LabProviderSpec as LabProviderSpec  # noqa: PLC0414
from hacloud.spec.provider_spec import ProviderSpec

PROVIDER_KINDS = ("lab", "onprem", "aws", "azure")
FENCING_KINDS = ("fence_ipmilan", "fence_redfish", "sbd", "fence_aws", "fence_azure_arm")
VIP_KINDS = ("IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb")

ProviderKind = Literal["lab", "onprem", "aws", "azure"]

# Pacemaker node names are the nodes' short host names; keep them DNS labels.
HOSTNAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# corosync's cluster_name and DRBD resource names end up in file names and XML ids.
CLUSTER_NAME = r"^[a-z][a-z0-9-]{0,31}$"
RESOURCE_NAME = r"^[a-z][a-z0-9_]{0,15}$"
ABS_PATH = r"^/[^\s]*$"  # paths on this machine only; paths on the nodes are grammar.SafePath


# ---------------------------------------------------------------- cluster


class ClusterSpec(SpecModel):
    name: str = Field(
        pattern=CLUSTER_NAME,
        description="cluster name: lower-case letter, then up to 31 letters, digits or '-'",
    )


# ---------------------------------------------------------------- nodes


class SshSpec(SpecModel):
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]*$", description="SSH user (sudo if not root)")
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    key: str | None = Field(None, description="path of the private key on this machine")
    jump: str | None = Field(
        None,
        pattern=r"^([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.:-]+(:\d+)?$",
        description="bastion host as [user@]host[:port]",
    )


class NodeSpec(SpecModel):
    name: str = Field(pattern=HOSTNAME, description="host name, which is the Pacemaker node name")
    address: IPv4Address | None = Field(
        None, description="address hacloud reaches the node at over SSH (cloud: filled by the provider)"
    )
    links: list[IPv4Address] = Field(
        default_factory=list,
        max_length=2,
        description="corosync link addresses, one per network (default: [address])",
    )
    replication_address: IPv4Address | None = Field(
        None, description="address DRBD replicates over (default: the first link)"
    )
    ssh: SshSpec = Field(default_factory=SshSpec, description="how to log in")
    volumes: dict[str, SafePath] = Field(
        default_factory=dict,
        description="volume name -> block device on this node, best a /dev/disk/by-id path",
    )
    id: str | None = Field(
        None, pattern=PROVIDER_ID, description="provider id: EC2 instance id or Azure VM name"
    )


# ---------------------------------------------------------------- volumes and service


class VolumeSpec(SpecModel):
    """One replicated block device and its filesystem.

    Grouping: volumes with the same ``resource`` (default: their own ``name``) are the
    volumes 0, 1, ... of ONE DRBD resource, numbered in list order: one write-ordering
    stream, one promote, one fence constraint (data + WAL of one database). A spec without
    ``resource`` keeps one DRBD resource per volume, named after it, exactly as before.
    """

    name: str = Field(
        "r0",
        pattern=RESOURCE_NAME,
        description="volume name (keys nodes[].volumes); also its DRBD resource's name unless "
        "`resource` is set",
    )
    resource: str | None = Field(
        None,
        pattern=RESOURCE_NAME,
        description="DRBD resource this volume belongs to (default: its name); volumes naming the same "
        "resource replicate as its volumes 0, 1, ... in list order: append new ones, never reorder",
    )
    size_gib: int = Field(10, ge=1, le=65536, description="size of each node's data disk in GiB")
    mount_point: SafePath = Field("/srv/data", description="absolute mount point, e.g. /srv/data")
    filesystem: Literal["ext4", "xfs"] = Field("ext4", description="filesystem: ext4 or xfs")
    mount_options: str = Field("noatime", pattern=r"^[A-Za-z0-9_=,.-]*$", description="mount options")
    device: SafePath | None = Field(
        None,
        description="backing block device, the same path on both nodes (else nodes[].volumes)",
    )
    minor: int | None = Field(
        None, ge=0, le=1048575, description="DRBD minor (default: its index in volumes)"
    )
    port: int | None = Field(
        None,
        ge=1024,
        le=65535,
        description="DRBD TCP port of its resource (default 7789 + the index of the resource's "
        "first volume); in a grouped resource set it on the first volume only",
    )

    @property
    def drbd_resource(self) -> str:
        return self.resource or self.name


class DemoService(SpecModel):
    kind: Literal["demo"]
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the demo service")


class _ServiceTimeouts(SpecModel):
    # ge=1: Pacemaker reads an operation timeout of 0 as "use the default" (20 s), not "none".
    start_timeout: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="seconds Pacemaker waits for a start (default: the unit's TimeoutStartSec or the "
        "agent's advised start timeout read from the nodes, at least the profile's "
        "ops.service.start_timeout); a start that times out is fatal on that node",
    )
    stop_timeout: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="seconds Pacemaker waits for a stop (default: the unit's TimeoutStopSec or the "
        "agent's advised stop timeout, at least ops.service.stop_timeout); a stop that times out "
        "fences the node",
    )


class SystemdService(_ServiceTimeouts):
    kind: Literal["systemd"]
    unit: str = Field(
        pattern=r"^[A-Za-z0-9@_.-]+?(\.service)?$",
        description="systemd unit that runs the server itself, e.g. postgresql@15-main.service "
        "(not an umbrella unit such as Debian's postgresql.service)",
    )


class OcfService(_ServiceTimeouts):
    kind: Literal["ocf"]
    agent: str = Field(
        pattern=r"^ocf:[a-z0-9_-]+:[A-Za-z0-9_.-]+$", description="OCF agent, e.g. ocf:heartbeat:apache"
    )
    params: dict[
        Annotated[str, Field(pattern=OCF_PARAM)], Annotated[str, Field(pattern=LINE_TEXT)] | int | bool
    ] = Field(
        default_factory=dict,
        description="agent parameters: name (letters, digits, '_') -> one line of text, a number "
        "or true/false",
    )


ServiceSpec = Annotated[DemoService | SystemdService | OcfService, Field(discriminator="kind")]


class CorosyncSpec(SpecModel):
    cluster_port: int = Field(5405, ge=1024, le=65535, description="knet port of link 0 (link N: +N)")
    crypto_cipher: Literal["aes256", "aes192", "aes128"] = Field("aes256", description="knet cipher")
    crypto_hash: Literal["sha256", "sha384", "sha512"] = Field("sha256", description="knet hash")


# ---------------------------------------------------------------- VIP


class IPaddr2Vip(SpecModel):
    kind: Literal["IPaddr2"]
    address: IPv4Address = Field(description="the virtual IP")
    cidr_netmask: int = Field(24, ge=1, le=32, description="prefix length of the VIP")
    nic: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,15}$", description="interface, e.g. eth0")


class AwsMoveIpVip(SpecModel):
    kind: Literal["aws-vpc-move-ip"]
    address: IPv4Address = Field(description="overlay IP: a /32 outside the VPC CIDR")
    route_tables: list[Annotated[str, Field(pattern=r"^rtb-[0-9a-f]{8,17}$")]] = Field(
        min_length=1, description="every route table (rtb-...) whose subnets reach the VIP"
    )
    interface: str | None = Field(
        None,
        pattern=NIC,
        description="interface the overlay IP is added to; its ENI is where the route points "
        "(default: the interface holding the node's address, read from the nodes at deploy)",
    )


class AwsEipVip(SpecModel):
    kind: Literal["awseip"]
    elastic_ip: IPv4Address = Field(description="the Elastic IP address")
    allocation_id: str = Field(pattern=r"^eipalloc-[0-9a-f]{8,17}$", description="its allocation id")
    private_ip_address: IPv4Address | None = Field(None, description="secondary private IP to bind")


class AzureLbVip(SpecModel):
    kind: Literal["azure-lb"]
    address: IPv4Address = Field(description="frontend IP of the internal Standard load balancer")
    cidr_netmask: int = Field(24, ge=1, le=32, description="prefix length for IPaddr2 on the node")
    probe_port: int = Field(61000, ge=1024, le=65535, description="health probe port (azure-lb)")


VipSpec = Annotated[IPaddr2Vip | AwsMoveIpVip | AwsEipVip | AzureLbVip, Field(discriminator="kind")]

# ---------------------------------------------------------------- fencing


class _SecretSource(SpecModel):
    password_file: str | None = Field(
        None, description="file on this machine holding the password (kept out of the CIB)"
    )
    password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the password",
    )


class IpmiTarget(_SecretSource):
    ip: str = Field(pattern=r"^[A-Za-z0-9.:-]+$", description="BMC address")
    port: int = Field(623, ge=1, le=65535, description="IPMI port")
    username: str = Field(pattern=BMC_USER, description="BMC user (printable ASCII, one line)")
    lanplus: bool = Field(True, description="IPMI v2.0 lanplus")


class RedfishTarget(_SecretSource):
    ip: str = Field(pattern=r"^[A-Za-z0-9.:-]+$", description="BMC address")
    port: int = Field(443, ge=1, le=65535, description="Redfish HTTPS port")
    username: str = Field(pattern=BMC_USER, description="BMC user (printable ASCII, one line)")
    systems_uri: SafePath | None = Field(
        None,
        description="Redfish system URI, e.g. /redfish/v1/Systems/System.Embedded.1 (Dell iDRAC); "
        "default: fence_redfish discovers it from /redfish/v1 (set it only for a BMC with several systems)",
    )
    ssl_insecure: bool = Field(False, description="skip TLS verification (self-signed BMC)")


class IpmiFencing(SpecModel):
    kind: Literal["fence_ipmilan"]
    nodes: dict[str, IpmiTarget] = Field(description="node name -> its BMC")


class RedfishFencing(SpecModel):
    kind: Literal["fence_redfish"]
    nodes: dict[str, RedfishTarget] = Field(description="node name -> its BMC")


class SbdFencing(SpecModel):
    kind: Literal["sbd"]
    devices: list[SafePath] = Field(
        min_length=1,
        max_length=3,
        description="1 or 3 shared disks, best /dev/disk/by-id paths (2 cannot fence when one fails)",
    )
    watchdog_device: SafePath = Field("/dev/watchdog", description="watchdog device")


class AwsFenceTarget(SpecModel):
    instance_id: str = Field(pattern=r"^i-[0-9a-f]{8,17}$", description="EC2 instance id")


class AwsFencing(SpecModel):
    kind: Literal["fence_aws"]
    region: str | None = Field(
        None,
        pattern=AWS_REGION,
        description="AWS region, e.g. eu-central-1 (default: provider.options.region)",
    )
    nodes: dict[str, AwsFenceTarget] = Field(
        default_factory=dict, description="node name -> instance (default: from the provider)"
    )


class AzureFenceTarget(SpecModel):
    vm_name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Azure VM name")


class AzureFencing(SpecModel):
    kind: Literal["fence_azure_arm"]
    subscription_id: str | None = Field(
        None, pattern=GUID, description="subscription GUID (default: provider.options.subscription_id)"
    )
    resource_group: str | None = Field(
        None, pattern=AZURE_RESOURCE_GROUP, description="default: provider.options.resource_group"
    )
    nodes: dict[str, AzureFenceTarget] = Field(
        default_factory=dict, description="node name -> VM (default: from the provider)"
    )
    cloud: Literal["public", "china", "usgov"] | None = Field(
        None,
        description="Azure cloud fence_azure_arm talks to (its cloud= parameter); default: the cloud "
        "of provider.options.arm_endpoint, else public. Set it only when arm_endpoint is a proxy",
    )


FencingSpec = Annotated[
    IpmiFencing | RedfishFencing | SbdFencing | AwsFencing | AzureFencing,
    Field(discriminator="kind"),
]


class DrbdSpec(SpecModel):
    split_brain_recovery: Literal["manual", "discard-secondary"] = Field(
        "manual",
        description="after a split brain with one Primary: manual (default) leaves DRBD disconnected "
        "and `hacloud status` names the nodes and the recovery commands; discard-secondary throws "
        "away every write the Secondary took since the split (acknowledged writes are lost) and "
        "resyncs it from the Primary automatically",
    )
    verify_alg: Literal["sha256", "sha1", "crc32c"] = Field(
        "sha256",
        description="checksum online verify (`hacloud verify`) compares blocks with; sha256 "
        "(DRBD-opts: a secure hash), crc32c is cheaper on CPU but weaker",
    )


class TargetsSpec(SpecModel):
    drbd: Literal["8.4", "9"] | None = Field(
        None, description="DRBD kernel module generation (default: profile; facts win at deploy)"
    )
    pacemaker: str | None = Field(
        None, pattern=r"^\d+\.\d+(\.\d+)?$", description="Pacemaker version, e.g. 2.1.5 or 3.0.2"
    )


class Spec(SpecModel):
    """A whole cluster spec. Cross-field rules live in :mod:`hacloud.spec.rules`."""

    version: Literal[1] = Field(1, description="spec format version")
    cluster: ClusterSpec = Field(description="the cluster")
    provider: ProviderSpec = Field(description="where the nodes come from")
    profile: ProviderKind | None = Field(
        None, description="tuning profile: lab, onprem, aws, azure (default: the provider kind)"
    )
    nodes: list[NodeSpec] = Field(min_length=2, max_length=2, description="exactly two nodes")
    volumes: list[VolumeSpec] = Field(
        default_factory=lambda: [VolumeSpec()],
        min_length=1,
        max_length=8,
        description="replicated volumes (one DRBD resource each, or grouped by `resource`)",
    )
    service: ServiceSpec = Field(
        default_factory=lambda: DemoService(kind="demo"), description="the service kept available"
    )
    corosync: CorosyncSpec = Field(default_factory=CorosyncSpec, description="corosync options")
    vip: VipSpec = Field(description="the virtual IP that follows the service")
    fencing: list[FencingSpec] = Field(
        min_length=1,
        max_length=3,
        description="fencing methods; more than one needs fencing_topology: true",
    )
    fencing_topology: bool = Field(
        False, description="try the fencing methods as levels, in the order listed"
    )
    targets: TargetsSpec = Field(default_factory=TargetsSpec, description="target software versions")
    drbd: DrbdSpec = Field(default_factory=DrbdSpec, description="DRBD data-safety policies")
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="profile values to override, e.g. corosync.token: 5000"
    )

    @property
    def profile_name(self) -> str:
        return self.profile or self.provider.kind

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``hacloud.yaml`` (``hacloud schema``)."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hacloud cluster spec"
    return schema
