"""Nodes, volumes and route tables from a Terraform state that does not use hacloud's module.

Contract: :func:`terraform_nodes` is pure: every ``aws_instance`` becomes a candidate with the
EBS volumes its ``aws_volume_attachment`` resources attach (in device-name order, which is the
order of the spec's volumes), named on the node by volume id as hacloud's own volumes are; the
VPC CIDR comes from the instances' ``aws_subnet`` / ``aws_vpc`` when the state holds them, the
route tables from ``aws_route_table``. Attribute names are those of the hashicorp/aws provider.
"""

from __future__ import annotations

from typing import Any

from hacloud.provision.terraform import Candidate, TfResource
from hacloud.spec.inventory import NetworkInfo


def ebs_device_path(volume_id: str) -> str:
    """The stable path of an attached EBS volume on a Nitro instance: udev names NVMe disks by
    their serial, which is the volume id without the dash."""
    return f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"


def _of(resources: list[TfResource], kind: str) -> list[TfResource]:
    return [r for r in resources if r.type == kind]


def terraform_nodes(resources: list[TfResource]) -> tuple[list[Candidate], NetworkInfo, str]:
    attachments: dict[str, list[tuple[str, str]]] = {}
    for att in _of(resources, "aws_volume_attachment"):
        a = att.attributes
        if a.get("instance_id") and a.get("volume_id"):
            attachments.setdefault(str(a["instance_id"]), []).append(
                (str(a.get("device_name") or ""), str(a["volume_id"]))
            )
    subnets = {str(r.attributes.get("id")): r.attributes for r in _of(resources, "aws_subnet")}
    vpcs = {str(r.attributes.get("id")): r.attributes for r in _of(resources, "aws_vpc")}
    candidates: list[Candidate] = []
    vpc_ids: set[str] = set()
    for inst in _of(resources, "aws_instance"):
        attrs: dict[str, Any] = inst.attributes
        tags = attrs.get("tags") or {}
        devices = tuple(ebs_device_path(vol) for _, vol in sorted(attachments.get(str(attrs.get("id")), [])))
        subnet = subnets.get(str(attrs.get("subnet_id")))
        if subnet and subnet.get("vpc_id"):
            vpc_ids.add(str(subnet["vpc_id"]))
        candidates.append(
            Candidate(
                address=inst.address,
                id=str(attrs.get("id")),
                private_ip=str(attrs.get("private_ip") or ""),
                name=tags.get("Name") if isinstance(tags, dict) else None,
                zone=attrs.get("availability_zone"),
                public_ip=attrs.get("public_ip") or None,
                devices=devices,
            )
        )
    cidr = None
    if len(vpc_ids) == 1 and next(iter(vpc_ids)) in vpcs:
        cidr = vpcs[next(iter(vpc_ids))].get("cidr_block")
    elif len(vpcs) == 1:
        cidr = next(iter(vpcs.values())).get("cidr_block")
    tables = tuple(sorted(str(r.attributes.get("id")) for r in _of(resources, "aws_route_table")))
    return candidates, NetworkInfo(vpc_cidr=cidr, route_tables=tables), "aws_instance"
