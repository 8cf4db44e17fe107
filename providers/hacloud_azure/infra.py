"""Everything hacloud makes or finds in an Azure resource group for one cluster.

Contract (as for AWS; the phases and their order are :class:`hacloud.provision.cloud.CloudInfra`'s):
:meth:`Infra.validate` reads first and raises one error listing every problem before anything
is created; ``ensure`` creates what is missing and changes only what differs (request bodies
are compared with what ARM returns), so a second run records no change; with ``apply=False``
it only records. Every resource hacloud creates is tagged ``hacloud:cluster=<name>``; role
definitions and assignments, which take no tags, have names derived from the cluster (uuid5),
so they are found and removed exactly. :meth:`Infra.teardown` removes only those; data disks
only when asked.

Bodies are sent as plain JSON in ARM's wire format (the SDKs accept that), which is what the
tests validate against the official specs. Each phase is a module: :mod:`~hacloud_azure.validate`,
:mod:`~hacloud_azure.network` (+ :mod:`~hacloud_azure.loadbalancer`),
:mod:`~hacloud_azure.instances`, :mod:`~hacloud_azure.volumes`, :mod:`~hacloud_azure.role`;
this one assembles them and builds the inventory.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import NodeSpec
from hacloud_azure.base import (
    FENCE_ACTIONS,
    LINK_CONFIG,
    TAG,
    Site,
    link_address,
    lun_path,
    parse_id,
    primary_address,
    system_principal,
)
from hacloud_azure.instances import Instances
from hacloud_azure.network import Network
from hacloud_azure.role import Role
from hacloud_azure.validate import Validation

__all__ = [
    "FENCE_ACTIONS",
    "LINK_CONFIG",
    "TAG",
    "Infra",
    "Site",
    "link_address",
    "lun_path",
    "parse_id",
    "primary_address",
    "system_principal",
]


class Infra(Validation, Network, Instances, Role):
    """One run against the resource group (``apply=False``: a plan)."""

    def inventory(self, site: Site) -> Inventory:
        nodes = [
            self._node_info(node, site.vms[node.name], site.nics[node.name])
            if node.name in site.vms and node.name in site.nics
            else self._planned_node(i, node)
            for i, node in enumerate(self.spec.nodes)
        ]
        return Inventory(
            1,
            self.cluster,
            "azure",
            (nodes[0], nodes[1]),
            NetworkInfo(extra={"subnet": self.opts.subnet_id or "", "resource_group": self.rg}),
        )

    def _planned_node(self, i: int, node: NodeSpec) -> NodeInfo:
        """A node a plan would create: documentation addresses (RFC 5737) as placeholders."""
        ip = str(ipaddress.IPv4Address("203.0.113.11") + i)
        link1 = str(ipaddress.IPv4Address("203.0.113.21") + i)
        return NodeInfo(
            node.name,
            self.vm_name(node),
            ip,
            tuple(str(a) for a in node.links) or ((ip, link1) if self.adds_link(node) else (ip,)),
            ip,
            {v.name: lun_path(k) for k, v in enumerate(self.spec.volumes)},
            placeholder=True,
        )

    def _node_info(self, node: NodeSpec, vm: dict[str, Any], nic: dict[str, Any]) -> NodeInfo:
        ip = primary_address(nic)
        links = tuple(self._links(node, nic))
        luns = {
            d["managedDisk"]["id"].lower(): d["lun"]
            for d in vm["properties"]["storageProfile"].get("dataDisks", [])
        }
        volumes = {}
        for k, vol in enumerate(self.spec.volumes):
            disk = f"{self.vm_name(node)}-{vol.name}"
            did = f"{self.rg_id()}/providers/Microsoft.Compute/disks/{disk}".lower()
            volumes[vol.name] = node.volumes.get(vol.name) or lun_path(luns.get(did, k))
        return NodeInfo(
            name=node.name,
            id=self.vm_name(node),
            ssh_address=str(node.address or ip),
            links=links,
            replication_address=str(node.replication_address or links[0]),
            volumes=volumes,
            zone=(vm.get("zones") or [None])[0],
            extra={
                "nic": str(nic["id"]),
                "principal": str((vm.get("identity") or {}).get("principalId", "")),
                # the OS must bring link 1 up itself: Debian configures no secondary IPs
                **({"os_links": links[1]} if len(links) == 2 and not node.links else {}),
            },
        )

    def discover(self) -> Inventory | None:
        """Read-only: the inventory when both VMs and their NICs exist, else None."""
        site = Site({})
        for node in self.spec.nodes:
            vm = self._vm(node)
            nic = self._node_nic(node) if vm is not None else None
            if vm is None or nic is None:
                return None
            site.vms[node.name], site.nics[node.name] = vm, nic
        return self.inventory(site)
