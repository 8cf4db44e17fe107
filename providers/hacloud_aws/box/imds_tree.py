"""What the box's IMDS tells one instance: the metadata tree, built from the ``CloudState``
snapshot plus a few facts only moto's backend holds (AMI, type, key pair, VPC, profile ARN).

Contract: ``Facts.read(region, instance_id)`` reads those facts in-process (no API call, so
nothing shows in the action log); ``lookup(path, view)`` answers one GET path under
``/latest/`` the way EC2's IMDS does: a leaf is its text, a directory is its entries one per
line (sub-directories end in ``/``), an unknown path is None (the server answers 404). Names
and formats follow the EC2 user guide, "Instance metadata categories"
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-categories.html) and
"Instance identity documents" (.../instance-identity-documents.html). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacloud_aws.box.layout import ACCOUNT_ID
from hacloud_aws.box.state import Instance, Interface

#: a node of the tree: a leaf's text, a directory, or a leaf computed on each request
#: (credentials rotate, so they are never frozen into the tree)
Node = str | dict[str, "Node"] | Callable[[], str | None]


@dataclass(frozen=True)
class Facts:
    """What the snapshot does not carry and IMDS answers (read from moto in-process)."""

    ami: str
    instance_type: str
    key_name: str | None
    public_key: str | None
    launch_time: str  # ISO 8601, UTC
    vpc: str
    vpc_cidr: str
    subnet_cidrs: dict[str, str]  # subnet id -> CIDR
    zone_id: str
    profile_arn: str | None
    profile_id: str | None

    @staticmethod
    def read(region: str, instance_id: str) -> Facts:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT_ID][region]
        inst = backend.get_instance(instance_id)
        pair = backend.key_pairs.get(inst.key_name) if inst.key_name else None
        public = pair.material_public if pair is not None else None
        assoc = backend.iam_instance_profile_associations.get(instance_id)
        profile = assoc.iam_instance_profile if assoc is not None else None
        subnets = {s.id: s.cidr_block for zone in backend.subnets.values() for s in zone.values()}
        zone_ids = {z.name: z.zone_id for z in backend.describe_availability_zones()}
        vpc = backend.get_vpc(str(inst.vpc_id))
        return Facts(
            ami=inst.image_id,
            instance_type=inst.instance_type,
            key_name=inst.key_name,
            public_key=public.decode() if isinstance(public, bytes) else public,
            launch_time=inst.launch_time if isinstance(inst.launch_time, str) else str(inst.launch_time),
            vpc=vpc.id,
            vpc_cidr=vpc.cidr_block,
            subnet_cidrs=subnets,
            zone_id=zone_ids.get(str(inst.placement.zone), ""),
            profile_arn=profile.arn if profile is not None else None,
            profile_id=profile.id if profile is not None else None,
        )


@dataclass(frozen=True)
class View:
    """One instance as its IMDS sees it."""

    instance: Instance
    facts: Facts
    region: str
    #: the role's credentials document (JSON text), or None when the instance has no role
    credentials: Callable[[], str | None]
    last_updated: Callable[[], str]


def hostname(ip: str, region: str) -> str:
    """EC2's IP-based private DNS name (``ip-192-0-2-10.eu-central-1.compute.internal``)."""
    return f"ip-{ip.replace('.', '-')}.{region}.compute.internal"


def _interface(eni: Interface, index: int, facts: Facts, region: str) -> dict[str, Node]:
    return {
        "device-number": str(index),
        "interface-id": eni.id,
        "local-hostname": hostname(eni.private_ips[0], region),
        "local-ipv4s": "\n".join(eni.private_ips),
        "mac": eni.mac,
        "owner-id": ACCOUNT_ID,
        "security-group-ids": "\n".join(eni.groups),
        "subnet-id": eni.subnet,
        "subnet-ipv4-cidr-block": facts.subnet_cidrs.get(eni.subnet, ""),
        "vpc-id": facts.vpc,
        "vpc-ipv4-cidr-block": facts.vpc_cidr,
        "vpc-ipv4-cidr-blocks": facts.vpc_cidr,
        **({"public-ipv4s": eni.public_ip} if eni.public_ip else {}),
    }


def identity_document(view: View) -> str:
    inst, facts = view.instance, view.facts
    doc = {
        "accountId": ACCOUNT_ID,
        "architecture": "x86_64",
        "availabilityZone": inst.zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": facts.ami,
        "instanceId": inst.id,
        "instanceType": facts.instance_type,
        "kernelId": None,
        "pendingTime": facts.launch_time,
        "privateIp": inst.interfaces[0].private_ips[0],
        "ramdiskId": None,
        "region": view.region,
        "version": "2017-09-30",
    }
    return json.dumps(doc, indent=2)


def _iam(view: View) -> dict[str, Node] | None:
    role, facts = view.instance.role, view.facts
    if role is None:
        return None  # no instance profile: EC2 has no iam/ category at all
    info = {
        "Code": "Success",
        "LastUpdated": view.last_updated(),
        "InstanceProfileArn": facts.profile_arn,
        "InstanceProfileId": facts.profile_id,
    }
    return {
        "info": json.dumps(info, indent=2),
        "security-credentials": {role: view.credentials},
    }


def tree(view: View) -> dict[str, Node]:
    """The ``/latest/`` tree of one instance (see the module contract)."""
    inst, facts = view.instance, view.facts
    primary = inst.interfaces[0]
    local_host = hostname(primary.private_ips[0], view.region)
    meta: dict[str, Node] = {
        "ami-id": facts.ami,
        "hostname": local_host,
        "instance-id": inst.id,
        "instance-type": facts.instance_type,
        "local-hostname": local_host,
        "local-ipv4": primary.private_ips[0],
        "mac": primary.mac,
        "network": {
            "interfaces": {
                "macs": {
                    eni.mac: _interface(eni, i, facts, view.region) for i, eni in enumerate(inst.interfaces)
                }
            }
        },
        "placement": {
            "availability-zone": inst.zone,
            "availability-zone-id": facts.zone_id,
            "region": view.region,
        },
        "security-groups": "\n".join(primary.groups),
    }
    iam = _iam(view)
    if iam is not None:
        meta["iam"] = iam
    if facts.public_key is not None:
        meta["public-keys"] = {f"0={facts.key_name}": {"openssh-key": facts.public_key}}
    return {
        "meta-data": meta,
        "dynamic": {"instance-identity": {"document": identity_document(view)}},
    }


def _listing(node: dict[str, Node]) -> str:
    names = []
    for name, child in node.items():
        if name.startswith("0=") and isinstance(child, dict):
            names.append(name)  # public-keys/: "0=<key name>", reached as public-keys/0/
        else:
            names.append(f"{name}/" if isinstance(child, dict) else name)
    return "\n".join(names)


def _child(node: dict[str, Node], part: str) -> Node | None:
    if part in node:
        return node[part]
    for name, child in node.items():  # public-keys/0/ is listed as "0=<key name>"
        if name.startswith(f"{part}="):
            return child
    return None


def lookup(path: str, view: View) -> str | None:
    """The answer to ``GET /latest/<path>`` (see the module contract)."""
    node: Any = tree(view)
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict):
            return None
        node = _child(node, part)
        if node is None:
            return None
    if isinstance(node, dict):
        return _listing(node)
    if callable(node):
        result: str | None = node()
        return result
    return str(node)
