"""Azure volumes: one managed data disk per VM and spec volume, in the VM's zone (a disk found
in another zone is refused, never moved), attached at LUN N by the instances phase; deleted by
teardown only with ``--delete-volumes`` (detached first from a VM hacloud keeps)."""

from __future__ import annotations

from typing import Any

from hacloud.errors import HacloudError
from hacloud.spec.model import NodeSpec
from hacloud_azure.base import AzureBase, parse_id


class Volumes(AzureBase):
    def ensure_disk(self, node: NodeSpec, index: int, zone: list[str]) -> str | None:
        vol = self.spec.volumes[index]
        name = f"{self.vm_name(node)}-{vol.name}"
        have = self._get(f"read disk {name}", self.c.compute.disks.get, self.rg, name)
        if have is None:
            if not self.change(
                f"disk/{name}",
                "create",
                f"{node.name}: create {self.opts.disk_sku} disk {name} of {vol.size_gib} GiB"
                f"{' in zone ' + zone[0] if zone else ''}",
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
                code="HAC677",
            )
        return str(have["id"])

    def teardown_volumes(self, delete_volumes: bool) -> None:
        c = self.c
        for node in self.spec.nodes:
            for vol in self.spec.volumes:
                name = f"{self.vm_name(node)}-{vol.name}"
                have = self._get(f"read disk {name}", c.compute.disks.get, self.rg, name)
                if have is None or not self.owned(have.get("tags")):
                    continue
                if self.keeps(delete_volumes, f"disk {name} ({node.name}'s data)"):
                    continue
                if self.change(f"disk/{name}", "delete", f"delete disk {name}"):
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
