"""Everything hacloud makes or finds in an AWS account for one cluster.

Contract (the phases and their order are :class:`hacloud.provision.cloud.CloudInfra`'s):
- :meth:`Infra.validate` reads the account and raises one error listing every problem
  (subnets, zones, VPC, AMI, key pair, route tables, overlay address, Elastic IP) before
  anything is created: validate first, then act.
- ``ensure`` creates only what is missing and fixes only what differs, so a second run
  records no change; with ``apply=False`` it records what it would do and changes nothing.
- Everything created carries ``hacloud:cluster=<name>``; :meth:`Infra.teardown` removes
  only tagged resources (and the routes hacloud itself created, recorded in the state
  directory, because EC2 routes cannot be tagged); data volumes only when asked.

Each phase is a module: :mod:`~hacloud_aws.validate`, :mod:`~hacloud_aws.identity` (role,
profile, the agents' policy), :mod:`~hacloud_aws.network` (security group, overlay route),
:mod:`~hacloud_aws.instances` (+ :mod:`~hacloud_aws.links`, corosync link 1),
:mod:`~hacloud_aws.volumes`; this one assembles them and builds the inventory.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hacloud.provision.provider import link_count
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import AwsMoveIpVip, NodeSpec
from hacloud_aws.base import (
    TAG_CLUSTER,
    TAG_LINK,
    TAG_NODE,
    TAG_VOLUME,
    Site,
    attach_device,
    link_address,
    primary_eni,
)
from hacloud_aws.identity import Identity
from hacloud_aws.instances import Instances
from hacloud_aws.network import ROUTES_FILE, Network
from hacloud_aws.tfstate import ebs_device_path
from hacloud_aws.validate import Validation
from hacloud_aws.volumes import Volumes

__all__ = [
    "ROUTES_FILE",
    "TAG_CLUSTER",
    "TAG_LINK",
    "TAG_NODE",
    "TAG_VOLUME",
    "Infra",
    "Site",
    "attach_device",
    "ebs_device_path",
    "link_address",
    "primary_eni",
]


class Infra(Validation, Identity, Network, Instances, Volumes):
    """One run against the account (``apply=False``: a plan)."""

    def inventory(self, site: Site) -> Inventory:
        nodes = [
            self._node_info(node, site.instances[node.name], site.volumes[node.name])
            if node.name in site.instances
            else self._planned_node(i, node, site.volumes[node.name])
            for i, node in enumerate(self.spec.nodes)
        ]
        vip = self.spec.vip
        tables = tuple(vip.route_tables) if isinstance(vip, AwsMoveIpVip) else ()
        return Inventory(
            1,
            self.cluster,
            "aws",
            (nodes[0], nodes[1]),
            NetworkInfo(
                vpc_cidr=site.vpc_cidrs[0] if site.vpc_cidrs else None,
                route_tables=tables,
                extra={"security_group": site.sg, "region": self.c.region},
            ),
        )

    def _planned_node(self, i: int, node: NodeSpec, volumes: dict[str, str]) -> NodeInfo:
        """A node a plan would create: documentation addresses (RFC 5737) as placeholders."""
        ip = str(ipaddress.IPv4Address("203.0.113.11") + i)
        link1 = str(ipaddress.IPv4Address("203.0.113.21") + i)
        return NodeInfo(
            node.name,
            f"PLACEHOLDER-{node.name}",
            ip,
            tuple(str(a) for a in node.links) or ((ip, link1) if link_count(self.spec) == 2 else (ip,)),
            ip,
            volumes,
            placeholder=True,
        )

    def _node_info(self, node: NodeSpec, inst: dict[str, Any], volumes: dict[str, str]) -> NodeInfo:
        private = str(inst["PrivateIpAddress"])
        public = inst.get("PublicIpAddress")
        ssh = (
            str(node.address)
            if node.address
            else (str(public) if self.opts.ssh_address == "public" and public else private)
        )
        second = link_address(inst) if self.adds_link(node) else None
        links = tuple(str(a) for a in node.links) or ((private, second) if second else (private,))
        return NodeInfo(
            name=node.name,
            id=str(inst["InstanceId"]),
            ssh_address=ssh,
            links=links,
            replication_address=str(node.replication_address or links[0]),
            volumes=volumes,
            zone=str(inst["Placement"]["AvailabilityZone"]),
            placeholder=any("placeholder" in d for d in volumes.values()),
            extra={
                "eni": str(primary_eni(inst)["NetworkInterfaceId"]),
                "subnet": str(inst["SubnetId"]),
                # the OS must hold link 1 itself: Debian configures no secondary IPs
                **({"os_links": second} if second and not node.links else {}),
            },
        )

    def discover(self) -> Inventory | None:
        """Read-only: the inventory when both instances exist, else None."""
        instances = {}
        for node in self.spec.nodes:
            inst = self.find_instance(node)
            if inst is None:
                return None
            instances[node.name] = inst
        volumes = self.discover_volumes()
        vpc_id = next(iter(instances.values()))["VpcId"]
        cidrs = self.vpc_cidrs(vpc_id)
        group = self.find_group(vpc_id)
        site = Site(
            "", vpc_id, cidrs, instances=instances, volumes=volumes, sg=group["GroupId"] if group else ""
        )
        return self.inventory(site)
