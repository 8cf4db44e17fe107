"""What every phase of the Azure infrastructure shares: the run's fields, names derived from
the cluster, reading a resource, the VMs and NICs as read in this run, and pure helpers.

The phases are mixins of :class:`AzureBase` (validate, network, load balancer, instances,
volumes, role), assembled into :class:`hacloud_azure.infra.Infra`; the order they run in,
the recording of changes and what teardown may delete are
:class:`hacloud.provision.cloud.CloudInfra`'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacloud.provision.changes import Change
from hacloud.provision.cloud import TAG_CLUSTER, CloudInfra
from hacloud.provision.provider import link_count
from hacloud.spec.model import AzureOptions, NodeSpec
from hacloud.spec.workspace import Workspace
from hacloud_azure.api import Clients, azure_error, wire

TAG = TAG_CLUSTER
#: the NIC ip configuration hacloud adds for corosync link 1 (Microsoft's HA guides: a second
#: IP per node for a second ring). Never in the load balancer's pool: the HA-ports rule uses
#: floating IP, which Azure does not support on secondary ip configurations.
LINK_CONFIG = "hacloud-link1"
FENCE_ACTIONS = (
    "Microsoft.Compute/*/read",
    "Microsoft.Compute/virtualMachines/powerOff/action",
    "Microsoft.Compute/virtualMachines/start/action",
)


@dataclass
class Site:
    """What validation found, then what each phase found or made in this run."""

    subnet: dict[str, Any]
    #: the network security group's id (network phase)
    nsg: str = ""
    #: the load balancer's backend pool id, None without an Azure load balancer VIP
    pool: str | None = None
    #: node name -> its NIC as ARM returns it (a plan leaves out the ones it would create)
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: node name -> its VM (instances phase; a plan leaves out the ones it would create)
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class AzureBase(CloudInfra[Site]):
    ws: Workspace
    c: Clients
    apply: bool = True
    changes: list[Change] = field(default_factory=list)
    #: node name -> the VM as last read or written in this run (one GET per VM, not one per step)
    _vms: dict[str, dict[str, Any] | None] = field(default_factory=dict, repr=False)

    account_word = "subscription"
    cloud_name = "Azure"

    # ------------------------------------------------------------------ names

    @property
    def opts(self) -> AzureOptions:
        options = getattr(self.spec.provider, "options", None)
        assert isinstance(options, AzureOptions)
        return options

    @property
    def rg(self) -> str:
        return self.opts.resource_group

    def vm_name(self, node: NodeSpec) -> str:
        return node.id or node.name

    def rg_id(self) -> str:
        return f"/subscriptions/{self.c.subscription}/resourceGroups/{self.rg}"

    def vm_id(self, node: NodeSpec) -> str:
        return f"{self.rg_id()}/providers/Microsoft.Compute/virtualMachines/{self.vm_name(node)}"

    def lb_id(self) -> str:
        return f"{self.rg_id()}/providers/Microsoft.Network/loadBalancers/{self.cluster}-lb"

    def role_definition_name(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hacloud:{self.rg_id()}:{self.cluster}:fence-role"))

    def role_definition_id(self) -> str:
        return (
            f"{self.rg_id()}/providers/Microsoft.Authorization/roleDefinitions/{self.role_definition_name()}"
        )

    def assignment_name(self, scope: str, principal: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hacloud:{self.cluster}:{scope.lower()}:{principal}"))

    def tags(self, **extra: str) -> dict[str, str]:
        return self.cluster_tags(self.opts.tags, **extra)

    def zone(self, index: int) -> list[str]:
        return [self.opts.zones[index]] if self.opts.zones else []

    def adds_link(self, node: NodeSpec) -> bool:
        """Whether hacloud gives ``node`` the ip configuration for link 1: the spec names no links
        and the profile's ``corosync.links`` is 2."""
        return not node.links and link_count(self.spec) == 2

    # ------------------------------------------------------------------ reading

    def _get(self, doing: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        """GET a resource as wire JSON; None when it does not exist."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return wire(fn(*args))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise azure_error(exc, doing) from None

    def _vm(self, node: NodeSpec) -> dict[str, Any] | None:
        if node.name not in self._vms:
            self._vms[node.name] = self._get(
                f"read VM {self.vm_name(node)}",
                self.c.compute.virtual_machines.get,
                self.rg,
                self.vm_name(node),
            )
        return self._vms[node.name]

    def nic_ref(self, node: NodeSpec) -> tuple[str, str, bool]:
        """(resource group, name, adopted) of the node's NIC: the primary NIC of a VM that exists
        (adopted when it is not hacloud's own), else the one hacloud makes."""
        vm = self._vm(node)
        own = f"{self.vm_name(node)}-nic"
        if vm is None:
            return self.rg, own, False
        nics = vm["properties"].get("networkProfile", {}).get("networkInterfaces", [])
        primary = next(
            (n for n in nics if (n.get("properties") or {}).get("primary")), nics[0] if nics else None
        )
        if primary is None:
            return self.rg, own, False
        f = parse_id(primary["id"])
        return f["resourcegroups"], f["networkinterfaces"], f["networkinterfaces"].lower() != own.lower()

    def _node_nic(self, node: NodeSpec) -> dict[str, Any] | None:
        rg, name, _ = self.nic_ref(node)
        return self._get(f"read {name}", self.c.network.network_interfaces.get, rg, name)

    def _links(self, node: NodeSpec, nic: dict[str, Any]) -> list[str]:
        """The node's corosync link addresses: the spec's, else the primary and link-1 ones."""
        if node.links:
            return [str(a) for a in node.links]
        second = link_address(nic) if self.adds_link(node) else None
        return [primary_address(nic), second] if second else [primary_address(nic)]


# ---------------------------------------------------------------------- pure helpers


def lun_path(index: int) -> str:
    return f"/dev/disk/azure/scsi1/lun{index}"


def parse_id(resource_id: str) -> dict[str, str]:
    """/subscriptions/S/resourceGroups/G/providers/NS/type/name[/child/name] -> fields."""
    parts = resource_id.strip("/").split("/")
    out = {parts[i].lower(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    return out


def system_principal(vm: Mapping[str, Any] | None) -> str:
    """The principal id of ``vm``'s system-assigned identity ("" when it has none): the one
    fence_azure_arm signs in with (msi); a user-assigned identity "shouldn't be used with
    Pacemaker" (best-practices.md §3.2, MS-SLES)."""
    ident = (vm or {}).get("identity") or {}
    if "SystemAssigned" not in str(ident.get("type", "")):
        return ""
    return str(ident.get("principalId") or "")


def primary_address(nic: dict[str, Any]) -> str:
    configs = nic["properties"]["ipConfigurations"]
    primary = next((c for c in configs if c["properties"].get("primary")), configs[0])
    return str(primary["properties"]["privateIPAddress"])


def link_address(nic: dict[str, Any]) -> str | None:
    """The address of the NIC's ``hacloud-link1`` ip configuration, if it has one."""
    for c in nic["properties"]["ipConfigurations"]:
        if c["name"] == LINK_CONFIG and c["properties"].get("privateIPAddress"):
            return str(c["properties"]["privateIPAddress"])
    return None


def link_config(subnet: dict[str, Any]) -> dict[str, Any]:
    # no loadBalancerBackendAddressPools: floating IP is unsupported on secondary ip configs
    return {
        "name": LINK_CONFIG,
        "properties": {"subnet": subnet, "privateIPAllocationMethod": "Dynamic", "primary": False},
    }
