"""Nodes and data disks from a Terraform state that does not use hacloud's module.

Contract: :func:`terraform_nodes` is pure: every ``azurerm_linux_virtual_machine`` becomes a
candidate (id = VM name, as fence_azure_arm addresses VMs) with the disks its
``azurerm_virtual_machine_data_disk_attachment`` resources attach, in LUN order, named on the
node by LUN (``/dev/disk/azure/scsi1/lunN``, the path Azure's udev rules publish); frontend
addresses of ``azurerm_lb`` land in ``network.extra``. Attribute names are those of the
hashicorp/azurerm provider.
"""

from __future__ import annotations

from typing import Any

from hacloud.provision.terraform import Candidate, TfResource
from hacloud.spec.inventory import NetworkInfo


def _of(resources: list[TfResource], kind: str) -> list[TfResource]:
    return [r for r in resources if r.type == kind]


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list-of-blocks attribute (Terraform writes a list of objects)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"expected a list of objects, got {type(value).__name__}")
    return value


def terraform_nodes(resources: list[TfResource]) -> tuple[list[Candidate], NetworkInfo, str]:
    luns: dict[str, list[int]] = {}
    for att in _of(resources, "azurerm_virtual_machine_data_disk_attachment"):
        a = att.attributes
        if a.get("virtual_machine_id") is not None and a.get("lun") is not None:
            if not isinstance(a["lun"], int) or isinstance(a["lun"], bool):
                # hacloud.provision.terraform reports it as a problem of the state, naming the resource
                raise ValueError(f"{att.address}: lun is {a['lun']!r}, not a number")
            luns.setdefault(str(a["virtual_machine_id"]).lower(), []).append(a["lun"])
    candidates: list[Candidate] = []
    for vm in _of(resources, "azurerm_linux_virtual_machine"):
        attrs: dict[str, Any] = vm.attributes
        devices = tuple(
            f"/dev/disk/azure/scsi1/lun{n}" for n in sorted(luns.get(str(attrs.get("id")).lower(), []))
        )
        candidates.append(
            Candidate(
                address=vm.address,
                id=str(attrs.get("name")),
                private_ip=str(attrs.get("private_ip_address") or ""),
                name=attrs.get("computer_name") or attrs.get("name"),
                zone=attrs.get("zone") or None,
                public_ip=attrs.get("public_ip_address") or None,
                devices=devices,
            )
        )
    frontends = sorted(
        str(fe.get("private_ip_address"))
        for lb in _of(resources, "azurerm_lb")
        for fe in _objects(lb.attributes.get("frontend_ip_configuration"))
        if fe.get("private_ip_address")
    )
    spaces = [
        s for r in _of(resources, "azurerm_virtual_network") for s in r.attributes.get("address_space") or []
    ]
    extra = {"lb_frontends": ",".join(frontends)} if frontends else {}
    network = NetworkInfo(vpc_cidr=spaces[0] if len(spaces) == 1 else None, extra=extra)
    return candidates, network, "azurerm_linux_virtual_machine"
