"""AWS phase 1, validate: read the account and list every problem before anything is created
(subnets, zones, VPC, AMI, key pair, route tables, overlay address, Elastic IP)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hacloud.spec.model import AwsEipVip, AwsMoveIpVip, NodeSpec
from hacloud_aws.api import aws_error, call, error_code
from hacloud_aws.base import AwsBase, Site


class Validation(AwsBase):
    def validate(self) -> Site:
        """The site the spec describes; raises one error listing every problem (nothing made)."""
        problems: list[str] = []
        account = call("read the caller identity", self.c.sts.get_caller_identity)["Account"]
        existing = {n.name: self.find_instance(n) for n in self.spec.nodes}
        to_create = [n for n in self.spec.nodes if existing[n.name] is None]
        if to_create:
            problems += self._validate_new(to_create)
        vpc_id, subnet_az = self._validate_subnets(problems)
        vpc_id = self._validate_found(existing, vpc_id, subnet_az, problems)
        cidrs = self.vpc_cidrs(vpc_id) if vpc_id else []
        problems += self._validate_vip(vpc_id, cidrs)
        self.refuse(problems)
        return Site(account, vpc_id, cidrs, subnet_az, existing)

    def _validate_new(self, to_create: list[NodeSpec]) -> list[str]:
        """What creating instances needs: two subnets, the AMI, the key pair."""
        problems: list[str] = []
        if len(self.opts.subnets) != 2:
            problems.append(
                "provider.options.subnets: give two subnet ids in two availability zones, one per node "
                f"(needed to create {', '.join(n.name for n in to_create)})"
            )
        if not self.opts.ami:
            problems.append("provider.options.ami: give the AMI (ami-...) of the nodes to create")
        if self.opts.key_name:
            try:
                self.c.ec2.describe_key_pairs(KeyNames=[self.opts.key_name])
            except Exception as exc:
                if error_code(exc) != "InvalidKeyPair.NotFound":
                    raise aws_error(exc, "read the key pair") from None
                problems.append(
                    f"provider.options.key_name: no key pair {self.opts.key_name!r} in {self.c.region}"
                )
        if self.opts.ami:
            images = call("read the AMI", self.c.ec2.describe_images, ImageIds=[self.opts.ami])["Images"]
            if not images:
                problems.append(f"provider.options.ami: {self.opts.ami} does not exist in {self.c.region}")
        return problems

    def _validate_subnets(self, problems: list[str]) -> tuple[str, dict[str, str]]:
        """(the subnets' VPC, subnet id -> zone); one VPC, two zones."""
        if not self.opts.subnets:
            return "", {}
        try:
            subnets = self.c.ec2.describe_subnets(SubnetIds=self.opts.subnets)["Subnets"]
        except Exception as exc:
            if error_code(exc) != "InvalidSubnetID.NotFound":
                raise aws_error(exc, "read the subnets") from None
            problems.append(f"provider.options.subnets: {exc}")
            subnets = []
        subnet_az = {s["SubnetId"]: s["AvailabilityZone"] for s in subnets}
        vpcs = {s["VpcId"] for s in subnets}
        if len(vpcs) > 1:
            problems.append(f"provider.options.subnets: the subnets are in different VPCs ({sorted(vpcs)})")
        if len(subnets) == 2 and len(set(subnet_az.values())) == 1:
            problems.append(
                f"provider.options.subnets: both subnets are in {next(iter(subnet_az.values()))}; "
                "a zone outage would take both nodes: choose subnets in two availability zones"
            )
        return next(iter(vpcs), ""), subnet_az

    @staticmethod
    def _validate_found(
        existing: dict[str, dict[str, Any] | None],
        vpc_id: str,
        subnet_az: dict[str, str],
        problems: list[str],
    ) -> str:
        """Instances that exist: in the subnets' VPC and in two zones; returns the VPC."""
        for inst in existing.values():
            if inst is not None:
                if vpc_id and inst["VpcId"] != vpc_id:
                    problems.append(
                        f"nodes[].id: {inst['InstanceId']} is in {inst['VpcId']}, the subnets in {vpc_id}"
                    )
                vpc_id = vpc_id or inst["VpcId"]
                subnet_az.setdefault(inst["SubnetId"], inst["Placement"]["AvailabilityZone"])
        found = [i for i in existing.values() if i is not None]
        if (
            len(found) == 2
            and found[0]["Placement"]["AvailabilityZone"] == found[1]["Placement"]["AvailabilityZone"]
        ):
            problems.append(
                "nodes[].id: both instances are in one availability zone; a zone outage would take "
                "both: move one (or let hacloud create them in two subnets)"
            )
        return vpc_id

    def _validate_vip(self, vpc_id: str, cidrs: list[str]) -> list[str]:
        vip = self.spec.vip
        problems: list[str] = []
        if isinstance(vip, AwsMoveIpVip):
            address = ipaddress.IPv4Address(vip.address)
            inside = [c for c in cidrs if address in ipaddress.IPv4Network(c)]
            if inside:
                problems.append(
                    f"vip.address: {address} is inside the VPC CIDR {inside[0]}; an overlay IP must be "
                    "outside every VPC CIDR (AWS routes inside-VPC addresses to the subnet, not the node)"
                )
            try:
                tables = self.c.ec2.describe_route_tables(RouteTableIds=vip.route_tables)["RouteTables"]
            except Exception as exc:
                if error_code(exc) != "InvalidRouteTableID.NotFound":
                    raise aws_error(exc, "read the route tables") from None
                return [*problems, f"vip.route_tables: {exc}"]
            for table in tables:
                if vpc_id and table["VpcId"] != vpc_id:
                    problems.append(
                        f"vip.route_tables: {table['RouteTableId']} belongs to {table['VpcId']}, "
                        f"the nodes to {vpc_id}"
                    )
        if isinstance(vip, AwsEipVip):
            try:
                self.c.ec2.describe_addresses(AllocationIds=[vip.allocation_id])
            except Exception as exc:
                if error_code(exc) not in ("InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed"):
                    raise aws_error(exc, "read the Elastic IP") from None
                problems.append(f"vip.allocation_id: {vip.allocation_id} does not exist in {self.c.region}")
        return problems
