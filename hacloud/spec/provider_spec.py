"""The spec's ``provider:`` section: where the nodes come from (lab, onprem, aws, azure) and
each provider's options. These are settings in ``hacloud.yaml`` (``...ProviderSpec``); the
provider plug-ins that act on them (``hacloud_lab.LabProvider``...) are a different thing.

Contract: pure pydantic models, frozen, unknown keys refused; :data:`ProviderSpec` picks the
model by ``kind``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hacloud.spec.base import CIDR, SpecModel
from hacloud.spec.grammar import AWS_REGION, AZURE_LOCATION, AZURE_RESOURCE_GROUP, GUID, HttpsEndpoint


class LabOptions(SpecModel):
    memory_mib: int = Field(
        1024,
        ge=768,
        le=8192,
        description="memory of each lab guest in MiB (512 lets the OOM killer take corosync)",
    )


class LabProviderSpec(SpecModel):
    kind: Literal["lab"]
    options: LabOptions = Field(default_factory=LabOptions, description="lab options")


class OnpremProviderSpec(SpecModel):
    kind: Literal["onprem"]


class AwsStopModel(SpecModel):
    graceful_timeout_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="a stop without SkipOsShutdown first shuts the OS down (the ACPI power button); after "
        "this many seconds the instance is powered off (AWS documents no value: 120 s is hacloud's choice)",
    )
    hypervisor_delay_s: float = Field(
        0.0, ge=0, le=600, description="seconds between a stop with SkipOsShutdown and the power going off"
    )


class AwsEmulation(SpecModel):
    """An emulated AWS on this machine (the AWS box): moto, IMDS, a VPC router, lab guests."""

    stop: AwsStopModel = Field(default_factory=AwsStopModel, description="how a stopped instance powers off")
    memory_mib: int = Field(1024, ge=512, le=8192, description="RAM of each instance's guest, MiB")


class AwsOptions(SpecModel):
    region: str = Field(pattern=AWS_REGION, description="AWS region, e.g. eu-central-1")
    instance_type: str = Field("t3.medium", description="EC2 instance type, e.g. m6i.large")
    ami: str | None = Field(
        None, pattern=r"^ami-[0-9a-f]{8,17}$", description="AMI id (ami-...) for created instances"
    )
    key_name: str | None = Field(None, description="EC2 key pair name for SSH")
    subnets: list[str] = Field(
        default_factory=list,
        description="two subnet ids (subnet-...) in two availability zones, one per node",
    )
    admin_cidr: str | None = Field(
        None, pattern=CIDR, description="CIDR allowed to reach the nodes over SSH, e.g. 203.0.113.0/24"
    )
    client_cidr: str | None = Field(
        None, pattern=CIDR, description="CIDR of the service's clients (demo port opened to it)"
    )
    ssh_address: Literal["private", "public"] = Field(
        "private",
        description="address hacloud uses over SSH: private (from inside the VPC or via nodes[].ssh.jump) "
        "or public",
    )
    ssh_wait_seconds: int = Field(
        300, ge=0, le=3600, description="how long `up` waits for the instances to answer SSH after boot"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags for what hacloud creates")
    emulated: AwsEmulation | None = Field(
        None,
        description="run against an emulated AWS on this machine (`hacloud init --provider aws --emulated`): "
        "same schema and code path, a local endpoint and lab guests as instances",
    )


class AwsProviderSpec(SpecModel):
    kind: Literal["aws"]
    options: AwsOptions = Field(description="AWS options (region is required)")


class AzureOptions(SpecModel):
    subscription_id: str = Field(pattern=GUID, description="Azure subscription id (a GUID)")
    resource_group: str = Field(
        pattern=AZURE_RESOURCE_GROUP, description="resource group that holds the cluster"
    )
    location: str = Field(pattern=AZURE_LOCATION, description="Azure region, e.g. westeurope")
    vm_size: str = Field("Standard_D2s_v5", description="VM size")
    subnet_id: str | None = Field(None, description="resource id of the subnet for both NICs")
    zones: list[str] = Field(
        default_factory=lambda: ["1", "2"],
        description="two availability zones, one per node; [] for an availability set",
    )
    image: str = Field(
        "Debian:debian-12:12-gen2:latest",
        pattern=r"^[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]+$",
        description="image URN publisher:offer:sku:version for created VMs",
    )
    admin_user: str = Field("azureuser", pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="VM admin user")
    ssh_public_key: str | None = Field(
        None, description="file on this machine with the admin's SSH public key (needed to create VMs)"
    )
    disk_sku: Literal["Premium_LRS", "PremiumV2_LRS", "StandardSSD_LRS", "UltraSSD_LRS"] = Field(
        "Premium_LRS", description="SKU of the data disks (zonal: each in its VM's zone)"
    )
    admin_cidr: str | None = Field(None, pattern=CIDR, description="CIDR allowed to reach the nodes over SSH")
    arm_endpoint: HttpsEndpoint = Field(
        "https://management.azure.com",
        description="Azure Resource Manager endpoint (sovereign clouds have their own)",
    )
    operation_timeout: int = Field(
        900, ge=60, le=7200, description="seconds to wait for one Azure long-running operation"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags for what hacloud creates")


class AzureProviderSpec(SpecModel):
    kind: Literal["azure"]
    options: AzureOptions = Field(description="Azure options")


ProviderSpec = Annotated[
    LabProviderSpec | OnpremProviderSpec | AwsProviderSpec | AzureProviderSpec, Field(discriminator="kind")
]
