"""Everything hacloud makes or finds in an Azure resource group for one cluster.

Contract (as for AWS): :meth:`Infra.validate` reads first and raises one error listing every
problem before anything is created; ``ensure`` creates what is missing and changes only what
differs (request bodies are compared with what ARM returns), so a second run records no
change; with ``apply=False`` it only records. Every resource hacloud creates is tagged
``hacloud:cluster=<name>``; role definitions and assignments, which take no tags, have
names derived from the cluster (uuid5), so they are found and removed exactly.
:meth:`Infra.teardown` removes only those; data disks only when asked.

Bodies are sent as plain JSON in ARM's wire format (the SDKs accept that), which is what the
tests validate against the official specs.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.changes import Recorder
from hacloud.provision.provider import link_count
from hacloud.render.resources import drbd_ports
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import AzureLbVip, AzureOptions, NodeSpec
from hacloud.spec.workspace import Workspace
from hacloud_azure.api import Clients, azure_error, call, wire

TAG = "hacloud:cluster"
#: the NIC ip configuration hacloud adds for corosync link 1 (Microsoft's HA guides: a second
#: IP per node for a second ring). Never in the load balancer's pool: the HA-ports rule uses
#: floating IP, which Azure does not support on secondary ip configurations.
LINK_CONFIG = "hacloud-link1"
FENCE_ACTIONS = (
    "Microsoft.Compute/*/read",
    "Microsoft.Compute/virtualMachines/powerOff/action",
    "Microsoft.Compute/virtualMachines/start/action",
)


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


@dataclass
class Infra(Recorder):
    ws: Workspace
    c: Clients
    apply: bool = True
    changes: list[str] = field(default_factory=list)
    #: node name -> the VM as last read or written in this run (one GET per VM, not one per step)
    _vms: dict[str, dict[str, Any] | None] = field(default_factory=dict, repr=False)

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

    def role_definition_name(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hacloud:{self.rg_id()}:{self.cluster}:fence-role"))

    def role_definition_id(self) -> str:
        return (
            f"{self.rg_id()}/providers/Microsoft.Authorization/roleDefinitions/{self.role_definition_name()}"
        )

    def assignment_name(self, scope: str, principal: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hacloud:{self.cluster}:{scope.lower()}:{principal}"))

    def tags(self, **extra: str) -> dict[str, str]:
        return {**self.opts.tags, TAG: self.cluster, **extra}

    def _get(self, doing: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        """GET a resource as wire JSON; None when it does not exist."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return wire(fn(*args))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise azure_error(exc, doing) from None

    # ------------------------------------------------------------------ validate

    def validate(self) -> dict[str, Any]:
        problems: list[str] = []
        subnet: dict[str, Any] | None = None
        if not self.opts.subnet_id:
            problems.append("provider.options.subnet_id: name the subnet (resource id) both NICs go into")
        else:
            f = parse_id(self.opts.subnet_id)
            if not {"subscriptions", "resourcegroups", "virtualnetworks", "subnets"} <= set(f):
                problems.append(
                    f"provider.options.subnet_id: {self.opts.subnet_id} is not a subnet resource id"
                )
            else:
                subnet = self._get(
                    "read the subnet",
                    self.c.network.subnets.get,
                    f["resourcegroups"],
                    f["virtualnetworks"],
                    f["subnets"],
                )
                if subnet is None:
                    problems.append(
                        f"provider.options.subnet_id: subnet {self.opts.subnet_id} does not exist"
                    )
        if subnet is not None and isinstance(self.spec.vip, AzureLbVip):
            prefixes = [
                subnet["properties"].get("addressPrefix"),
                *subnet["properties"].get("addressPrefixes", []),
            ]
            nets = [ipaddress.IPv4Network(p) for p in prefixes if p]
            if not any(self.spec.vip.address in n for n in nets):
                problems.append(
                    f"vip.address: {self.spec.vip.address} is outside the subnet "
                    f"({', '.join(map(str, nets))}); the internal load balancer's frontend must be an "
                    "address of the nodes' subnet"
                )
        zones = self.opts.zones
        if zones and (len(zones) != 2 or zones[0] == zones[1]):
            problems.append(
                "provider.options.zones: give two different zones (one per node), "
                "or [] for an availability set"
            )
        missing = [n for n in self.spec.nodes if self._vm(n) is None]
        if missing:
            key = self.opts.ssh_public_key
            if not key:
                problems.append(
                    "provider.options.ssh_public_key: name the public key file of the VMs' admin "
                    f"(needed to create {', '.join(n.name for n in missing)})"
                )
            elif not self.ws.resolve(key).is_file():
                problems.append(f"provider.options.ssh_public_key: {self.ws.resolve(key)} does not exist")
        if problems:
            raise HacloudError(
                f"the Azure subscription does not fit the spec ({len(problems)} problem"
                f"{'s' if len(problems) > 1 else ''}):\n  - " + "\n  - ".join(problems),
                "correct the spec (or the subscription) as listed; nothing was created",
            )
        assert subnet is not None
        return subnet

    # ------------------------------------------------------------------ network

    def nsg_body(self, addresses: list[str], links: list[str] | None = None) -> dict[str, Any]:
        """``addresses``: the nodes' primary addresses (DRBD); ``links``: every corosync link
        address of both nodes (default: the primary ones)."""
        rules: list[dict[str, Any]] = []
        links = links or addresses

        def rule(
            name: str, prio: int, proto: str, ports: list[int], sources: list[str], dests: list[str]
        ) -> None:
            props: dict[str, Any] = {
                "protocol": proto,
                "access": "Allow",
                "direction": "Inbound",
                "priority": prio,
                "sourcePortRange": "*",
            }
            props |= (
                {"destinationPortRange": str(ports[0])}
                if len(ports) == 1
                else {"destinationPortRanges": [str(p) for p in ports]}
            )
            props |= (
                {"sourceAddressPrefix": sources[0]}
                if len(sources) == 1
                else {"sourceAddressPrefixes": sources}
            )
            props |= (
                {"destinationAddressPrefix": dests[0]}
                if len(dests) == 1
                else {"destinationAddressPrefixes": dests}
            )
            rules.append({"name": name, "properties": props})

        vip = self.spec.vip
        if isinstance(vip, AzureLbVip):
            # The probe comes from the platform address 168.63.129.16, tagged AzureLoadBalancer.
            rule("hacloud-lb-probe", 100, "Tcp", [vip.probe_port], ["AzureLoadBalancer"], ["*"])
        if addresses:
            count = link_count(self.spec)
            port = self.spec.corosync.cluster_port
            rule("hacloud-corosync", 110, "Udp", [port + i for i in range(count)], links, links)
            drbd = drbd_ports(self.spec)  # one port per DRBD resource, not per volume
            rule("hacloud-drbd", 120, "Tcp", drbd, addresses, addresses)
        if self.opts.admin_cidr:
            ssh = sorted({n.ssh.port for n in self.spec.nodes})
            rule("hacloud-ssh", 130, "Tcp", ssh, [self.opts.admin_cidr], ["*"])
        return {"location": self.opts.location, "tags": self.tags(), "properties": {"securityRules": rules}}

    def ensure_nsg(self, addresses: list[str], links: list[str] | None = None) -> str:
        name = f"{self.cluster}-nsg"
        want = self.nsg_body(addresses, links)
        have = self._get(
            "read the network security group", self.c.network.network_security_groups.get, self.rg, name
        )
        if have is None or not _same_rules(have, want) or have.get("tags") != want["tags"]:
            verb = "create" if have is None else "update the rules of"
            if self.change(f"network: {verb} network security group {name}"):
                have = self.c.wait(
                    f"write network security group {name}",
                    self.c.network.network_security_groups.begin_create_or_update,
                    self.rg,
                    name,
                    want,
                )
        return f"{self.rg_id()}/providers/Microsoft.Network/networkSecurityGroups/{name}"

    def nic_body(self, node: NodeSpec, nsg_id: str, pool_id: str | None) -> dict[str, Any]:
        subnet = {"id": self.opts.subnet_id}
        ipc: dict[str, Any] = {"subnet": subnet, "privateIPAllocationMethod": "Dynamic"}
        if pool_id:
            ipc["loadBalancerBackendAddressPools"] = [{"id": pool_id}]
        configs = [{"name": "ipconfig1", "properties": {"primary": True, **ipc}}]
        if self.adds_link(node):
            configs.append(_link_config(subnet))
        return {
            "location": self.opts.location,
            "tags": self.tags(),
            "properties": {"ipConfigurations": configs, "networkSecurityGroup": {"id": nsg_id}},
        }

    def adds_link(self, node: NodeSpec) -> bool:
        """Whether hacloud gives ``node`` the ip configuration for link 1: the spec names no links
        and the profile's ``corosync.links`` is 2."""
        return not node.links and link_count(self.spec) == 2

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

    def adopt_nic(
        self, node: NodeSpec, rg: str, name: str, pool_id: str | None, nsg_id: str
    ) -> dict[str, Any]:
        """An existing VM's NIC: only put it into the backend pool (and behind the cluster's NSG
        when it has none); every other setting is carried over as it is."""
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, rg, name)
        if have is None:
            raise HacloudError(
                f"{node.name}: network interface {name} of the VM is gone", "look at the VM in the portal"
            )
        body = _writable_nic(have)
        changed = False
        primary = body["properties"]["ipConfigurations"][0]["properties"]
        pools = primary.setdefault("loadBalancerBackendAddressPools", [])
        if pool_id and pool_id.lower() not in {x["id"].lower() for x in pools}:
            pools.append({"id": pool_id})
            changed = True
        if not pools:
            primary.pop("loadBalancerBackendAddressPools")
        if "networkSecurityGroup" not in body["properties"]:
            body["properties"]["networkSecurityGroup"] = {"id": nsg_id}
            changed = True
        configs = body["properties"]["ipConfigurations"]
        has_link = any(c["name"] == LINK_CONFIG for c in configs)
        if self.adds_link(node) and not has_link:
            configs.append(_link_config({"id": primary["subnet"]["id"]}))
            changed = True
        elif has_link and not self.adds_link(node):  # corosync.links set to 1: give it back
            body["properties"]["ipConfigurations"] = [c for c in configs if c["name"] != LINK_CONFIG]
            changed = True
        if not changed or not self.change(
            f"{node.name}: put the VM's network interface {name} into the cluster's load balancer pool "
            f"(and give it the ip configuration {LINK_CONFIG} for corosync link 1)"
        ):
            return have
        return self.c.wait(
            f"write {name}", self.c.network.network_interfaces.begin_create_or_update, rg, name, body
        )

    def _release_nic(self, rg: str, name: str) -> None:
        """Undo :meth:`adopt_nic`: out of the cluster's pool, and its NSG off when it is hacloud's."""
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, rg, name)
        if have is None:
            return
        body = _writable_nic(have)
        pool = f"{self.lb_id()}/backendAddressPools/backend"
        changed = _without_pool(body, pool)
        nsg = body["properties"].get("networkSecurityGroup", {}).get("id", "")
        if nsg.lower().endswith(f"/networksecuritygroups/{self.cluster}-nsg"):
            del body["properties"]["networkSecurityGroup"]
            changed = True
        configs = body["properties"]["ipConfigurations"]
        if any(c["name"] == LINK_CONFIG for c in configs):
            body["properties"]["ipConfigurations"] = [c for c in configs if c["name"] != LINK_CONFIG]
            changed = True
        if changed and self.change(
            f"take network interface {name} out of the cluster's load balancer and NSG"
        ):
            self.c.wait(
                f"write {name}", self.c.network.network_interfaces.begin_create_or_update, rg, name, body
            )

    def ensure_nic(self, node: NodeSpec, nsg_id: str, pool_id: str | None) -> dict[str, Any] | None:
        rg, name, adopted = self.nic_ref(node)
        if adopted:
            return self.adopt_nic(node, rg, name, pool_id, nsg_id)
        want = self.nic_body(node, nsg_id, pool_id)
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, self.rg, name)
        if have is not None and not _nic_differs(have, want):
            return have
        if not self.change(f"{node.name}: {'create' if have is None else 'update'} network interface {name}"):
            return have
        if have is not None:
            # keep the addresses the NIC has: a node's address must not move under corosync
            held = {
                c["name"]: c["properties"].get("privateIPAddress")
                for c in have["properties"]["ipConfigurations"]
            }
            for cfg in want["properties"]["ipConfigurations"]:
                if held.get(cfg["name"]):
                    cfg["properties"] |= {
                        "privateIPAddress": held[cfg["name"]],
                        "privateIPAllocationMethod": "Static",
                    }
        return self.c.wait(
            f"write {name}", self.c.network.network_interfaces.begin_create_or_update, self.rg, name, want
        )

    def lb_id(self) -> str:
        return f"{self.rg_id()}/providers/Microsoft.Network/loadBalancers/{self.cluster}-lb"

    def lb_body(self) -> dict[str, Any]:
        vip = self.spec.vip
        assert isinstance(vip, AzureLbVip)
        base = self.lb_id()
        return {
            "location": self.opts.location,
            "tags": self.tags(),
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {
                "frontendIPConfigurations": [
                    {
                        "name": "frontend",
                        "properties": {
                            "privateIPAddress": str(vip.address),
                            "privateIPAllocationMethod": "Static",
                            "subnet": {"id": self.opts.subnet_id},
                        },
                        **({"zones": list(self.opts.zones)} if self.opts.zones else {}),
                    }
                ],
                "backendAddressPools": [{"name": "backend"}],
                "probes": [
                    {
                        "name": "azure-lb",
                        # MS-SLES/MS-NFS: TCP probe on the azure-lb port, every 5 s, down after 2
                        "properties": {
                            "protocol": "Tcp",
                            "port": vip.probe_port,
                            "intervalInSeconds": 5,
                            "probeThreshold": 2,
                        },
                    }
                ],
                "loadBalancingRules": [
                    {
                        "name": "ha-ports",
                        # HA ports (protocol All, port 0) + floating IP: the node answers on the
                        # VIP itself (IPaddr2); idle timeout 30 min as Microsoft's guides set it.
                        "properties": {
                            "frontendIPConfiguration": {"id": f"{base}/frontendIPConfigurations/frontend"},
                            "backendAddressPool": {"id": f"{base}/backendAddressPools/backend"},
                            "probe": {"id": f"{base}/probes/azure-lb"},
                            "protocol": "All",
                            "frontendPort": 0,
                            "backendPort": 0,
                            "enableFloatingIP": True,
                            "idleTimeoutInMinutes": 30,
                            "enableTcpReset": False,
                        },
                    }
                ],
            },
        }

    def ensure_lb(self) -> str | None:
        if not isinstance(self.spec.vip, AzureLbVip):
            return None
        name = f"{self.cluster}-lb"
        want = self.lb_body()
        have = self._get("read the load balancer", self.c.network.load_balancers.get, self.rg, name)
        if (have is None or _lb_differs(have, want)) and self.change(
            f"network: {'create' if have is None else 'update'} internal load balancer {name}"
        ):
            self.c.wait(
                f"write load balancer {name}",
                self.c.network.load_balancers.begin_create_or_update,
                self.rg,
                name,
                want,
            )
        return f"{self.rg_id()}/providers/Microsoft.Network/loadBalancers/{name}/backendAddressPools/backend"

    # ------------------------------------------------------------------ disks and VMs

    def _vm(self, node: NodeSpec) -> dict[str, Any] | None:
        if node.name not in self._vms:
            self._vms[node.name] = self._get(
                f"read VM {self.vm_name(node)}",
                self.c.compute.virtual_machines.get,
                self.rg,
                self.vm_name(node),
            )
        return self._vms[node.name]

    def zone(self, index: int) -> list[str]:
        return [self.opts.zones[index]] if self.opts.zones else []

    def ensure_disk(self, node: NodeSpec, index: int, zone: list[str]) -> str | None:
        vol = self.spec.volumes[index]
        name = f"{self.vm_name(node)}-{vol.name}"
        have = self._get(f"read disk {name}", self.c.compute.disks.get, self.rg, name)
        if have is None:
            if not self.change(
                f"{node.name}: create {self.opts.disk_sku} disk {name} of {vol.size_gib} GiB"
                f"{' in zone ' + zone[0] if zone else ''}"
            ):
                return None
            body: dict[str, Any] = {
                "location": self.opts.location,
                "tags": self.tags(**{"hacloud:node": node.name, "hacloud:volume": vol.name}),
                "sku": {"name": self.opts.disk_sku},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": vol.size_gib},
            }
            if zone:
                body["zones"] = zone
            have = self.c.wait(
                f"create disk {name}", self.c.compute.disks.begin_create_or_update, self.rg, name, body
            )
        elif zone and have.get("zones") and have["zones"] != zone:
            raise HacloudError(
                f"{node.name}: disk {name} is in zone {have['zones'][0]}, the VM in zone {zone[0]}; "
                "a zonal disk attaches only in its zone",
                "snapshot it and restore into the VM's zone under the same name, then run `hacloud up` again",
            )
        return str(have["id"])

    def vm_body(self, node: NodeSpec, index: int, nic_id: str, disks: list[str]) -> dict[str, Any]:
        key = self.ws.resolve(self.opts.ssh_public_key or "").read_text(encoding="utf-8").strip()
        publisher, offer, sku, version = self.opts.image.split(":")
        body: dict[str, Any] = {
            "location": self.opts.location,
            "tags": self.tags(**{"hacloud:node": node.name}),
            # the fence agent logs in as the VM itself (msi=true): no secret on the node
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "hardwareProfile": {"vmSize": self.opts.vm_size},
                "storageProfile": {
                    "imageReference": {
                        "publisher": publisher,
                        "offer": offer,
                        "sku": sku,
                        "version": version,
                    },
                    "osDisk": {
                        "createOption": "FromImage",
                        "deleteOption": "Delete",
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                    "dataDisks": [
                        {
                            "lun": lun,
                            "createOption": "Attach",
                            "caching": "None",
                            "deleteOption": "Detach",
                            "managedDisk": {"id": d},
                        }
                        for lun, d in enumerate(disks)
                    ],
                },
                "osProfile": {
                    "computerName": node.name,
                    "adminUsername": self.opts.admin_user,
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": True,
                        "ssh": {
                            "publicKeys": [
                                {"path": f"/home/{self.opts.admin_user}/.ssh/authorized_keys", "keyData": key}
                            ]
                        },
                    },
                },
                "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
            },
        }
        if self.opts.zones:
            body["zones"] = self.zone(index)
        else:
            body["properties"]["availabilitySet"] = {
                "id": f"{self.rg_id()}/providers/Microsoft.Compute/availabilitySets/{self.cluster}-avset"
            }
        return body

    def ensure_availability_set(self) -> None:
        if self.opts.zones:
            return
        name = f"{self.cluster}-avset"
        have = self._get("read the availability set", self.c.compute.availability_sets.get, self.rg, name)
        if have is None and self.change(f"compute: create availability set {name} (the region has no zones)"):
            call(
                "create the availability set",
                self.c.compute.availability_sets.create_or_update,
                self.rg,
                name,
                {
                    "location": self.opts.location,
                    "tags": self.tags(),
                    "sku": {"name": "Aligned"},
                    "properties": {"platformFaultDomainCount": 2, "platformUpdateDomainCount": 5},
                },
            )

    def ensure_vm(self, node: NodeSpec, index: int, nic_id: str, disks: list[str]) -> dict[str, Any] | None:
        name = self.vm_name(node)
        have = self._vm(node)
        if have is None:
            if not self.change(
                f"{node.name}: create VM {name} ({self.opts.vm_size}"
                f"{', zone ' + self.zone(index)[0] if self.opts.zones else ''})"
            ):
                return None
            self._vms[node.name] = self.c.wait(
                f"create VM {name}",
                self.c.compute.virtual_machines.begin_create_or_update,
                self.rg,
                name,
                self.vm_body(node, index, nic_id, disks),
            )
            return self._vms[node.name]
        patch: dict[str, Any] = {}
        if "SystemAssigned" not in (have.get("identity") or {}).get("type", ""):
            patch["identity"] = {"type": "SystemAssigned"}
        attached = {
            d.get("managedDisk", {}).get("id", "").lower()
            for d in have["properties"]["storageProfile"].get("dataDisks", [])
        }
        missing = [d for d in disks if d.lower() not in attached]
        if missing:
            current = [
                {"lun": d["lun"], "createOption": "Attach", "managedDisk": {"id": d["managedDisk"]["id"]}}
                for d in have["properties"]["storageProfile"].get("dataDisks", [])
            ]
            luns = {d["lun"] for d in current}
            for d in missing:
                lun = min(set(range(64)) - luns)
                luns.add(lun)
                current.append({"lun": lun, "createOption": "Attach", "managedDisk": {"id": d}})
            patch["properties"] = {"storageProfile": {"dataDisks": current}}
        if patch and self.change(f"{node.name}: update VM {name} ({', '.join(sorted(patch))})"):
            have = self.c.wait(
                f"update VM {name}", self.c.compute.virtual_machines.begin_update, self.rg, name, patch
            )
            self._vms[node.name] = have
        return have

    # ------------------------------------------------------------------ fencing role

    def ensure_role(self, vms: dict[str, dict[str, Any]], pairs: set[tuple[str, str]] | None = None) -> None:
        """A custom role with exactly read, powerOff and start, assignable only on the two VMs,
        assigned to each VM's managed identity on every cluster VM (MS-SLES); with ``pairs``
        (source node, target node) only on those."""
        from azure.mgmt.authorization.v2022_04_01.models import (
            Permission,
            RoleAssignmentCreateParameters,
            RoleDefinition,
        )

        auth = self.c.authorization
        scopes = sorted(v["id"] for v in vms.values())
        if len(scopes) < 2:
            self.change("fencing: create the fence role and assign it once both VMs exist")
            return
        have = self._get(
            "read the fence role", auth.role_definitions.get, self.rg_id(), self.role_definition_name()
        )
        want_actions = sorted(FENCE_ACTIONS)
        stale = (
            have is None
            or sorted(have.get("permissions", [{}])[0].get("actions", [])) != want_actions
            or sorted(have.get("assignable_scopes", [])) != scopes
        )
        if stale and self.change(
            f"fencing: {'create' if have is None else 'update'} custom role hacloud-{self.cluster}-fence"
        ):
            role = RoleDefinition(
                role_name=f"hacloud-{self.cluster}-fence",
                description=f"hacloud cluster {self.cluster}: fence_azure_arm reads, powers off and "
                "starts the nodes",
                role_type="CustomRole",
                permissions=[Permission(actions=want_actions, not_actions=[])],
                assignable_scopes=scopes,
            )
            call(
                "write the fence role",
                auth.role_definitions.create_or_update,
                self.rg_id(),
                self.role_definition_name(),
                role,
            )
        for source, vm in vms.items():
            principal = (vm.get("identity") or {}).get("principalId")
            if not principal:
                continue
            for target, other in vms.items():
                if pairs is not None and (source, target) not in pairs:
                    continue
                scope = other["id"]
                name = self.assignment_name(scope, principal)
                got = self._get("read a role assignment", auth.role_assignments.get, scope, name)
                if got is None and self.change(
                    f"fencing: let {vm['name']}'s identity fence {scope.rsplit('/', 1)[-1]}"
                ):
                    params = RoleAssignmentCreateParameters(
                        role_definition_id=self.role_definition_id(),
                        principal_id=principal,
                        principal_type="ServicePrincipal",
                    )
                    call("assign the fence role", auth.role_assignments.create, scope, name, params)

    # ------------------------------------------------------------------ drop-in (Terraform's VMs)

    def terraform_vms(self) -> dict[str, dict[str, Any]]:
        """The two VMs Terraform made, read (never changed); raises one error naming every VM
        that is missing or has no system-assigned identity, with the fix in Terraform."""
        problems: list[str] = []
        vms: dict[str, dict[str, Any]] = {}
        for node in self.spec.nodes:
            vm = self._vm(node)
            if vm is None:
                problems.append(
                    f"{node.name}: VM {self.vm_name(node)} is not in resource group {self.rg}: set "
                    "provider.options.resource_group to the group Terraform made it in"
                )
            elif not system_principal(vm):
                problems.append(
                    f"{node.name}: VM {vm['name']} has no system-assigned identity (fence_azure_arm "
                    'signs in with it): add `identity { type = "SystemAssigned" }` to the VM in '
                    "Terraform and apply (hacloud does not change Terraform's VMs)"
                )
            else:
                vms[node.name] = vm
        if problems:
            raise HacloudError("; ".join(problems), "fix the Terraform configuration, then run `hacloud up`")
        return vms

    def adopt_role(self) -> None:
        """Let each identity fence both VMs where no role (Terraform's or anyone's) does yet:
        hacloud's own custom role and assignments, named from the cluster so `release_role`
        removes exactly them."""
        from hacloud_azure.access import grants

        vms = self.terraform_vms()
        have = grants(self, vms)
        missing = {pair for pair, grant in have.items() if grant is None}
        # hacloud's role is checked (and repaired) whenever one of its assignments is in use;
        # an assignment `grants` found is not read again
        if missing or any(grant is not None and grant.hacloud for grant in have.values()):
            self.ensure_role(vms, missing)

    def release_role(self) -> None:
        """Remove what `adopt_role` added; Terraform's roles and assignments stay."""
        self._remove_role({n.name: self._vm(n) for n in self.spec.nodes})

    def _remove_role(self, vms: dict[str, dict[str, Any] | None]) -> None:
        c = self.c
        # assignments first: a role definition with assignments cannot be deleted
        for vm in vms.values():
            principal = ((vm or {}).get("identity") or {}).get("principalId")
            for other in vms.values():
                if vm is None or other is None or not principal:
                    continue
                name = self.assignment_name(other["id"], principal)
                found = self._get(
                    "read a role assignment", c.authorization.role_assignments.get, other["id"], name
                )
                if found is not None and self.change(
                    f"fencing: remove the fence role of {vm['name']} on {other['name']}"
                ):
                    call(
                        "remove a role assignment",
                        c.authorization.role_assignments.delete,
                        other["id"],
                        name,
                    )
        role = self._get(
            "read the fence role",
            c.authorization.role_definitions.get,
            self.rg_id(),
            self.role_definition_name(),
        )
        if role is not None and self.change(f"fencing: delete custom role hacloud-{self.cluster}-fence"):
            call(
                "delete the fence role",
                c.authorization.role_definitions.delete,
                self.rg_id(),
                self.role_definition_name(),
            )

    # ------------------------------------------------------------------ all together

    def ensure(self) -> Inventory:
        self.validate()
        self.ensure_availability_set()
        # the NSG's node rules name the NICs' addresses, known once the NICs exist
        nsg = self.ensure_nsg(*self._nic_addresses())
        pool = self.ensure_lb()
        nics = {}
        for node in self.spec.nodes:
            nic = self.ensure_nic(node, nsg, pool)
            if nic is not None:
                nics[node.name] = nic
        addresses = [primary_address(nics[n.name]) for n in self.spec.nodes if n.name in nics]
        links = [a for n in self.spec.nodes if n.name in nics for a in self._links(n, nics[n.name])]
        if len(addresses) == 2:
            self.ensure_nsg(addresses, links)
        vms: dict[str, dict[str, Any]] = {}
        for index, node in enumerate(self.spec.nodes):
            disks = [
                d
                for d in (self.ensure_disk(node, i, self.zone(index)) for i in range(len(self.spec.volumes)))
                if d
            ]
            ready = node.name in nics and len(disks) == len(self.spec.volumes)
            if not ready and (self.apply or self._vm(node) is not None):
                continue  # (a plan still lists the VM it would create)
            vm = self.ensure_vm(node, index, nics[node.name]["id"] if node.name in nics else "", disks)
            if vm is not None:
                vms[node.name] = vm
        self.ensure_role(vms)
        return self.inventory(vms, nics)

    def _nic_addresses(self) -> tuple[list[str], list[str]]:
        """(primary addresses, every corosync link address) of the two NICs; empty when one is
        missing."""
        out: list[str] = []
        links: list[str] = []
        for node in self.spec.nodes:
            nic = self._node_nic(node)
            if nic is None:
                return [], []
            out.append(primary_address(nic))
            links += self._links(node, nic)
        return out, links

    def _links(self, node: NodeSpec, nic: dict[str, Any]) -> list[str]:
        """The node's corosync link addresses: the spec's, else the primary and link-1 ones."""
        if node.links:
            return [str(a) for a in node.links]
        second = link_address(nic) if self.adds_link(node) else None
        return [primary_address(nic), second] if second else [primary_address(nic)]

    def inventory(self, vms: dict[str, dict[str, Any]], nics: dict[str, dict[str, Any]]) -> Inventory:
        nodes = []
        for i, node in enumerate(self.spec.nodes):
            vm, nic = vms.get(node.name), nics.get(node.name)
            if vm is None or nic is None:
                ip = str(ipaddress.IPv4Address("203.0.113.11") + i)
                link1 = str(ipaddress.IPv4Address("203.0.113.21") + i)
                nodes.append(
                    NodeInfo(
                        node.name,
                        self.vm_name(node),
                        ip,
                        tuple(str(a) for a in node.links) or ((ip, link1) if self.adds_link(node) else (ip,)),
                        ip,
                        {v.name: lun_path(k) for k, v in enumerate(self.spec.volumes)},
                        placeholder=True,
                    )
                )
                continue
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
            nodes.append(
                NodeInfo(
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
            )
        return Inventory(
            1,
            self.cluster,
            "azure",
            (nodes[0], nodes[1]),
            NetworkInfo(extra={"subnet": self.opts.subnet_id or "", "resource_group": self.rg}),
        )

    def discover(self) -> Inventory | None:
        vms, nics = {}, {}
        for node in self.spec.nodes:
            vm = self._vm(node)
            nic = self._node_nic(node) if vm is not None else None
            if vm is None or nic is None:
                return None
            vms[node.name], nics[node.name] = vm, nic
        return self.inventory(vms, nics)

    # ------------------------------------------------------------------ teardown

    def teardown(self, delete_volumes: bool) -> None:
        c = self.c
        vms = {n.name: self._vm(n) for n in self.spec.nodes}
        ours = {
            k: v for k, v in vms.items() if v is not None and (v.get("tags") or {}).get(TAG) == self.cluster
        }
        self._remove_role(vms)  # first: an assignment's scope is the VM
        for key, vm in ours.items():
            if self.change(f"delete VM {vm['name']}"):
                c.wait(
                    f"delete VM {vm['name']}", c.compute.virtual_machines.begin_delete, self.rg, vm["name"]
                )
                self._vms[key] = None
        for node in self.spec.nodes:
            rg, nic, adopted = self.nic_ref(node)
            if adopted:
                self._release_nic(rg, nic)
                continue
            have = self._get("read a NIC", c.network.network_interfaces.get, self.rg, nic)
            if (
                have is not None
                and (have.get("tags") or {}).get(TAG) == self.cluster
                and self.change(f"delete network interface {nic}")
            ):
                c.wait(f"delete {nic}", c.network.network_interfaces.begin_delete, self.rg, nic)
        for getter, deleter, name, what in (
            (
                c.network.load_balancers.get,
                c.network.load_balancers.begin_delete,
                f"{self.cluster}-lb",
                "load balancer",
            ),
            (
                c.network.network_security_groups.get,
                c.network.network_security_groups.begin_delete,
                f"{self.cluster}-nsg",
                "network security group",
            ),
        ):
            have = self._get(f"read the {what}", getter, self.rg, name)
            if (
                have is not None
                and (have.get("tags") or {}).get(TAG) == self.cluster
                and self.change(f"delete {what} {name}")
            ):
                c.wait(f"delete {what} {name}", deleter, self.rg, name)
        if not self.opts.zones:
            have = self._get(
                "read the availability set", c.compute.availability_sets.get, self.rg, f"{self.cluster}-avset"
            )
            if have is not None and self.change(f"delete availability set {self.cluster}-avset"):
                call(
                    "delete the availability set",
                    c.compute.availability_sets.delete,
                    self.rg,
                    f"{self.cluster}-avset",
                )
        for node in self.spec.nodes:
            for vol in self.spec.volumes:
                name = f"{self.vm_name(node)}-{vol.name}"
                have = self._get(f"read disk {name}", c.compute.disks.get, self.rg, name)
                if have is None or (have.get("tags") or {}).get(TAG) != self.cluster:
                    continue
                if not delete_volumes:
                    self.ws.progress(f"kept disk {name} ({node.name}'s data)")
                    continue
                if self.change(f"delete disk {name}"):
                    if have.get("managedBy"):  # still on a VM hacloud did not make (and keeps)
                        self._detach(have["managedBy"], have["id"])
                    c.wait(f"delete disk {name}", c.compute.disks.begin_delete, self.rg, name)

    def _detach(self, vm_id: str, disk_id: str) -> None:
        f = parse_id(vm_id)
        vm = self._get(
            "read a VM", self.c.compute.virtual_machines.get, f["resourcegroups"], f["virtualmachines"]
        )
        if vm is None:
            return
        disks = [
            {"lun": d["lun"], "createOption": "Attach", "managedDisk": {"id": d["managedDisk"]["id"]}}
            for d in vm["properties"]["storageProfile"].get("dataDisks", [])
            if d.get("managedDisk", {}).get("id", "").lower() != disk_id.lower()
        ]
        patch = {"properties": {"storageProfile": {"dataDisks": disks}}}
        self.c.wait(
            f"detach a disk from {vm['name']}",
            self.c.compute.virtual_machines.begin_update,
            f["resourcegroups"],
            f["virtualmachines"],
            patch,
        )


def _writable_nic(have: dict[str, Any]) -> dict[str, Any]:
    """The settable part of a NIC as ARM returned it (read-only fields must not be sent back)."""
    props = have["properties"]
    ipcs = []
    for ipc in props.get("ipConfigurations", []):
        p = ipc.get("properties", {})
        keep = {
            k: p[k]
            for k in ("privateIPAddress", "privateIPAllocationMethod", "primary", "privateIPAddressVersion")
            if k in p
        }
        for ref in ("subnet", "publicIPAddress"):
            if p.get(ref):
                keep[ref] = {"id": p[ref]["id"]}
        if p.get("loadBalancerBackendAddressPools"):
            keep["loadBalancerBackendAddressPools"] = [
                {"id": x["id"]} for x in p["loadBalancerBackendAddressPools"]
            ]
        ipcs.append({"name": ipc["name"], "properties": keep})
    body: dict[str, Any] = {
        "location": have["location"],
        "tags": have.get("tags") or {},
        "properties": {"ipConfigurations": ipcs},
    }
    for flag in ("enableAcceleratedNetworking", "enableIPForwarding"):
        if flag in props:
            body["properties"][flag] = props[flag]
    if (props.get("dnsSettings") or {}).get("dnsServers"):
        body["properties"]["dnsSettings"] = {"dnsServers": props["dnsSettings"]["dnsServers"]}
    if props.get("networkSecurityGroup"):
        body["properties"]["networkSecurityGroup"] = {"id": props["networkSecurityGroup"]["id"]}
    return body


def _without_pool(body: dict[str, Any], pool: str) -> bool:
    """Drop ``pool`` from every IP configuration of a NIC body; True when it was there."""
    found = False
    for ipc in body["properties"]["ipConfigurations"]:
        pools = ipc["properties"].get("loadBalancerBackendAddressPools", [])
        kept = [p for p in pools if p["id"].lower() != pool.lower()]
        found |= len(kept) != len(pools)
        if kept:
            ipc["properties"]["loadBalancerBackendAddressPools"] = kept
        else:
            ipc["properties"].pop("loadBalancerBackendAddressPools", None)
    return found


def _same_rules(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def canon(body: dict[str, Any]) -> list[tuple[str, str]]:
        out = []
        for r in body.get("properties", {}).get("securityRules", []):
            props = {
                k: v for k, v in r.get("properties", {}).items() if k not in ("provisioningState", "etag")
            }
            props = {k: v for k, v in props.items() if v not in ([], None, "")}
            out.append((r["name"], repr(sorted(props.items()))))
        return sorted(out)

    return canon(have) == canon(want)


def _nic_differs(have: dict[str, Any], want: dict[str, Any]) -> bool:
    h, w = have["properties"], want["properties"]
    if {c["name"] for c in h["ipConfigurations"]} != {c["name"] for c in w["ipConfigurations"]}:
        return True
    if (h.get("networkSecurityGroup") or {}).get("id", "").lower() != w["networkSecurityGroup"]["id"].lower():
        return True
    hi, wi = h["ipConfigurations"][0]["properties"], w["ipConfigurations"][0]["properties"]
    if hi.get("subnet", {}).get("id", "").lower() != wi["subnet"]["id"].lower():
        return True
    return _pools(hi) != _pools(wi) or have.get("tags") != want["tags"]


def _pools(ipconfig: dict[str, Any]) -> list[str]:
    return sorted(x["id"].lower() for x in ipconfig.get("loadBalancerBackendAddressPools", []))


def _lb_differs(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def canon(body: dict[str, Any]) -> dict[str, Any]:
        p = body["properties"]
        fe = p["frontendIPConfigurations"][0]["properties"]
        probe = p["probes"][0]["properties"]
        rule = p["loadBalancingRules"][0]["properties"]
        return {
            "sku": body.get("sku", {}).get("name"),
            "fe": (fe.get("privateIPAddress"), fe.get("subnet", {}).get("id", "").lower()),
            "probe": (
                probe.get("protocol"),
                probe.get("port"),
                probe.get("intervalInSeconds"),
                probe.get("probeThreshold"),
            ),
            "rule": (
                rule.get("protocol"),
                rule.get("frontendPort"),
                rule.get("backendPort"),
                rule.get("enableFloatingIP"),
                rule.get("idleTimeoutInMinutes"),
            ),
            "tags": body.get("tags"),
        }

    try:
        return canon(have) != canon(want)
    except (KeyError, IndexError):
        return True


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


def _link_config(subnet: dict[str, Any]) -> dict[str, Any]:
    # no loadBalancerBackendAddressPools: floating IP is unsupported on secondary ip configs
    return {
        "name": LINK_CONFIG,
        "properties": {"subnet": subnet, "privateIPAllocationMethod": "Dynamic", "primary": False},
    }
