"""Azure instances: the two VMs (one per zone, or in the availability set), each with a
system-assigned managed identity and password login off, created with its NIC and data disks
(a VM is created with its disks attached, so each node's disks are ensured just before its
VM), or found and given what differs (identity, missing disks); teardown deletes only the
cluster's tagged VMs."""

from __future__ import annotations

from typing import Any

from hacloud.spec.model import NodeSpec
from hacloud_azure.base import Site
from hacloud_azure.volumes import Volumes


class Instances(Volumes):
    def ensure_instances(self, site: Site) -> None:
        """``site.vms``: each node's VM as it now is (a plan leaves out the ones it would create)."""
        for index, node in enumerate(self.spec.nodes):
            disks = [
                d
                for d in (self.ensure_disk(node, i, self.zone(index)) for i in range(len(self.spec.volumes)))
                if d
            ]
            ready = node.name in site.nics and len(disks) == len(self.spec.volumes)
            if not ready and (self.apply or self._vm(node) is not None):
                continue  # (a plan still lists the VM it would create)
            nic_id = site.nics[node.name]["id"] if node.name in site.nics else ""
            vm = self.ensure_vm(node, index, nic_id, disks)
            if vm is not None:
                site.vms[node.name] = vm

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

    def ensure_vm(self, node: NodeSpec, index: int, nic_id: str, disks: list[str]) -> dict[str, Any] | None:
        name = self.vm_name(node)
        have = self._vm(node)
        if have is None:
            if not self.change(
                f"virtual-machine/{name}",
                "create",
                f"{node.name}: create VM {name} ({self.opts.vm_size}"
                f"{', zone ' + self.zone(index)[0] if self.opts.zones else ''})",
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
        if patch and self.change(
            f"virtual-machine/{name}", "update", f"{node.name}: update VM {name} ({', '.join(sorted(patch))})"
        ):
            have = self.c.wait(
                f"update VM {name}", self.c.compute.virtual_machines.begin_update, self.rg, name, patch
            )
            self._vms[node.name] = have
        return have

    def teardown_instances(self) -> None:
        """The cluster's own VMs (tagged); VMs the spec names by id stay."""
        for node in self.spec.nodes:
            vm = self._vm(node)
            if vm is None or not self.owned(vm.get("tags")):
                continue
            if self.change(f"virtual-machine/{vm['name']}", "delete", f"delete VM {vm['name']}"):
                self.c.wait(
                    f"delete VM {vm['name']}",
                    self.c.compute.virtual_machines.begin_delete,
                    self.rg,
                    vm["name"],
                )
                self._vms[node.name] = None
