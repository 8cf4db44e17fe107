"""Everything hacloud makes or finds in an AWS account for one cluster.

Contract:
- :meth:`Infra.validate` reads the account and raises one error listing every problem
  (subnets, zones, VPC, AMI, key pair, route tables, overlay address, Elastic IP) before
  anything is created: validate first, then act.
- ``ensure`` creates only what is missing and fixes only what differs, so a second run
  records no change; with ``apply=False`` it records what it would do and changes nothing.
- Everything created carries ``hacloud:cluster=<name>``; :meth:`Infra.teardown` removes
  only tagged resources (and the routes hacloud itself created, recorded in the state
  directory, because EC2 routes cannot be tagged); data volumes only when asked.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.changes import Recorder
from hacloud.provision.provider import link_count
from hacloud.render.resources import drbd_ports
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import AwsEipVip, AwsMoveIpVip, AwsOptions, DemoService, NodeSpec
from hacloud.spec.workspace import Workspace
from hacloud_aws import iam
from hacloud_aws.api import (
    CAPACITY_CODES,
    THROTTLE_CODES,
    Clients,
    aws_error,
    call,
    error_code,
    wait_for,
)
from hacloud_aws.tfstate import ebs_device_path

TAG_CLUSTER = "hacloud:cluster"
TAG_NODE = "hacloud:node"
TAG_VOLUME = "hacloud:volume"
#: on an instance: the secondary private IP hacloud added to its primary ENI for corosync link 1
#: (addresses cannot be tagged; the tag also tells teardown what to give back on a kept instance)
TAG_LINK = "hacloud:link1"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
ROUTES_FILE = "aws-routes.json"


def attach_device(index: int) -> str:
    return f"/dev/sd{chr(ord('f') + index)}"


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


@dataclass
class Site:
    """Validated facts about the account: where each node goes."""

    account: str
    vpc_id: str
    vpc_cidrs: list[str]
    subnet_az: dict[str, str] = field(default_factory=dict)  # subnet id -> AZ
    #: node name -> its instance as validation found it (None: to be created)
    existing: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass
class Infra(Recorder):
    ws: Workspace
    c: Clients
    apply: bool = True
    changes: list[str] = field(default_factory=list)
    sleep: Callable[[float], None] = time.sleep
    #: the agents' policy, once ``ensure`` has worked it out (what `plan` prints)
    policy: dict[str, Any] | None = None

    @property
    def opts(self) -> AwsOptions:
        options = getattr(self.spec.provider, "options", None)
        assert isinstance(options, AwsOptions)
        return options

    def tag_spec(self, kind: str, **extra: str) -> list[dict[str, Any]]:
        tags = {**self.opts.tags, TAG_CLUSTER: self.cluster, **extra}
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}]

    # ------------------------------------------------------------------ validate

    def validate(self) -> Site:
        problems: list[str] = []
        ec2 = self.c.ec2
        account = call("read the caller identity", self.c.sts.get_caller_identity)["Account"]
        existing = {n.name: self.find_instance(n) for n in self.spec.nodes}
        vpc_id = ""
        subnet_az: dict[str, str] = {}
        to_create = [n for n in self.spec.nodes if existing[n.name] is None]
        if to_create:
            if len(self.opts.subnets) != 2:
                problems.append(
                    "provider.options.subnets: give two subnet ids in two availability zones, one per node "
                    f"(needed to create {', '.join(n.name for n in to_create)})"
                )
            if not self.opts.ami:
                problems.append("provider.options.ami: give the AMI (ami-...) of the nodes to create")
            if self.opts.key_name:
                try:
                    ec2.describe_key_pairs(KeyNames=[self.opts.key_name])
                except Exception as exc:
                    if error_code(exc) != "InvalidKeyPair.NotFound":
                        raise aws_error(exc, "read the key pair") from None
                    problems.append(
                        f"provider.options.key_name: no key pair {self.opts.key_name!r} in {self.c.region}"
                    )
            if self.opts.ami:
                images = call("read the AMI", ec2.describe_images, ImageIds=[self.opts.ami])["Images"]
                if not images:
                    problems.append(
                        f"provider.options.ami: {self.opts.ami} does not exist in {self.c.region}"
                    )
        if self.opts.subnets:
            try:
                subnets = ec2.describe_subnets(SubnetIds=self.opts.subnets)["Subnets"]
            except Exception as exc:
                if error_code(exc) != "InvalidSubnetID.NotFound":
                    raise aws_error(exc, "read the subnets") from None
                problems.append(f"provider.options.subnets: {exc}")
                subnets = []
            subnet_az = {s["SubnetId"]: s["AvailabilityZone"] for s in subnets}
            vpcs = {s["VpcId"] for s in subnets}
            if len(vpcs) > 1:
                problems.append(
                    f"provider.options.subnets: the subnets are in different VPCs ({sorted(vpcs)})"
                )
            if len(subnets) == 2 and len(set(subnet_az.values())) == 1:
                problems.append(
                    f"provider.options.subnets: both subnets are in {next(iter(subnet_az.values()))}; "
                    "a zone outage would take both nodes: choose subnets in two availability zones"
                )
            vpc_id = next(iter(vpcs), "")
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
        cidrs: list[str] = []
        if vpc_id:
            vpc = call("read the VPC", ec2.describe_vpcs, VpcIds=[vpc_id])["Vpcs"][0]
            cidrs = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]
        problems += self._validate_vip(vpc_id, cidrs)
        if problems:
            raise HacloudError(
                f"the AWS account does not fit the spec ({len(problems)} problem"
                f"{'s' if len(problems) > 1 else ''}):\n  - " + "\n  - ".join(problems),
                "correct the spec (or the account) as listed; nothing was created",
            )
        return Site(account, vpc_id, cidrs, subnet_az, existing)

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

    # ------------------------------------------------------------------ instances

    def find_instance(self, node: NodeSpec) -> dict[str, Any] | None:
        """The node's instance: by ``nodes[].id``, else by hacloud's tags (None: none yet)."""
        if node.id:
            try:
                res = self.c.ec2.describe_instances(InstanceIds=[node.id])["Reservations"]
            except Exception as exc:
                raise aws_error(exc, f"find {node.name} ({node.id})") from None
            found = [i for r in res for i in r["Instances"] if i["State"]["Name"] in LIVE_STATES]
            if not found:
                raise HacloudError(
                    f"{node.name}: instance {node.id} is terminated",
                    "remove nodes[].id to let hacloud create the node, or name a live instance",
                )
            return dict(found[0])
        filters = [
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]},
            {"Name": f"tag:{TAG_NODE}", "Values": [node.name]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
        res = call(f"find {node.name}", self.c.ec2.describe_instances, Filters=filters)["Reservations"]
        found = [i for r in res for i in r["Instances"]]
        if len(found) > 1:
            ids = ", ".join(sorted(i["InstanceId"] for i in found))
            raise HacloudError(
                f"{node.name}: {len(found)} instances carry the tags of this node ({ids})",
                "terminate the extra ones, or set nodes[].id to the one to use",
            )
        return dict(found[0]) if found else None

    def _run_instance(self, node: NodeSpec, index: int, sg: str, profile_arn: str, site: Site) -> str:
        subnet = self.opts.subnets[index]
        az = site.subnet_az.get(subnet, "?")
        args: dict[str, Any] = {
            "ImageId": self.opts.ami,
            "InstanceType": self.opts.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": subnet,
            "SecurityGroupIds": [sg],
            "IamInstanceProfile": {"Arn": profile_arn},
            # IMDSv2 only; fence_aws and aws-vpc-move-ip both ask for a token first.
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": self.tag_spec(
                "instance", **{TAG_NODE: node.name, "Name": f"{self.cluster}-{node.name}"}
            ),
        }
        if self.opts.key_name:
            args["KeyName"] = self.opts.key_name
        delay = 1.0
        profile_deadline = time.monotonic() + 90
        for attempt in range(6):
            try:
                inst = self.c.ec2_once.run_instances(**args)["Instances"][0]
                return str(inst["InstanceId"])
            except Exception as exc:
                code = error_code(exc)
                message = str(exc)
                if code in CAPACITY_CODES:
                    raise aws_error(exc, f"create {node.name}", f"availability zone {az}") from None
                # A new instance profile takes a few seconds to be usable by EC2 (IAM is
                # eventually consistent): retry that one error for up to 90 s.
                if (
                    code == "InvalidParameterValue"
                    and "iamInstanceProfile" in message
                    and time.monotonic() < profile_deadline
                ):
                    self.sleep(5)
                    continue
                if code in THROTTLE_CODES and attempt < 5:
                    self.sleep(delay)
                    delay *= 2
                    continue
                raise aws_error(exc, f"create {node.name}", f"availability zone {az}") from None
        raise HacloudError(f"could not create {node.name}", "run `hacloud up` again")  # pragma: no cover

    def wait_running(self, instance_id: str, name: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            res = call(f"read {name}", self.c.ec2.describe_instances, InstanceIds=[instance_id])
            inst = res["Reservations"][0]["Instances"][0]
            return dict(inst) if inst["State"]["Name"] == "running" else None

        return wait_for(f"{name} ({instance_id}) to run", probe, timeout=600, sleep=self.sleep)

    def ensure_instances(self, site: Site, sg: str, profile_arn: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for index, node in enumerate(self.spec.nodes):
            inst = site.existing[node.name]
            if inst is None:
                subnet = self.opts.subnets[index]
                if self.change(
                    f"{node.name}: create instance {self.opts.instance_type} from {self.opts.ami} "
                    f"in {subnet} ({site.subnet_az.get(subnet, '?')})"
                ):
                    iid = self._run_instance(node, index, sg, profile_arn, site)
                    inst = self.wait_running(iid, node.name)
            elif inst["State"]["Name"] != "running" and self.change(
                f"{node.name}: start instance {inst['InstanceId']} ({inst['State']['Name']})"
            ):
                if inst["State"]["Name"] == "stopping":
                    self.c.ec2.get_waiter("instance_stopped").wait(InstanceIds=[inst["InstanceId"]])
                call(f"start {node.name}", self.c.ec2.start_instances, InstanceIds=[inst["InstanceId"]])
                inst = self.wait_running(inst["InstanceId"], node.name)
            if inst is not None:
                self._fix_instance(node, inst, sg, profile_arn)
                out[node.name] = self.ensure_link(node, inst)
            elif self.adds_link(node):  # a plan: the instance, and then its link address, are to come
                self.change(f"{node.name}: add a secondary private IP to its primary ENI (corosync link 1)")
        return out

    def _fix_instance(self, node: NodeSpec, inst: dict[str, Any], sg: str, profile_arn: str) -> None:
        iid = inst["InstanceId"]
        eni = primary_eni(inst)
        groups = [g["GroupId"] for g in eni.get("Groups", [])]
        if sg not in groups and self.change(
            f"{node.name}: add security group {sg} to {eni['NetworkInterfaceId']}"
        ):
            call(
                f"add the security group to {node.name}",
                self.c.ec2.modify_network_interface_attribute,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                Groups=[*groups, sg],
            )
        if isinstance(self.spec.vip, AwsMoveIpVip):
            attr = call(
                f"read {node.name}'s source/destination check",
                self.c.ec2.describe_instance_attribute,
                InstanceId=iid,
                Attribute="sourceDestCheck",
            )
            # The overlay IP is not the instance's own address: with the check on, EC2 drops it.
            if attr["SourceDestCheck"]["Value"] and self.change(
                f"{node.name}: disable the source/destination check of {iid}"
            ):
                call(
                    f"disable {node.name}'s source/destination check",
                    self.c.ec2.modify_instance_attribute,
                    InstanceId=iid,
                    SourceDestCheck={"Value": False},
                )
        profile = (inst.get("IamInstanceProfile") or {}).get("Arn")
        if profile is None:
            assoc = call(
                f"read {node.name}'s instance profile",
                self.c.ec2.describe_iam_instance_profile_associations,
                Filters=[
                    {"Name": "instance-id", "Values": [iid]},
                    {"Name": "state", "Values": ["associated"]},
                ],
            )["IamInstanceProfileAssociations"]
            profile = assoc[0]["IamInstanceProfile"]["Arn"] if assoc else None
        if profile is None:
            if self.change(f"{node.name}: attach instance profile {profile_arn.rsplit('/', 1)[-1]}"):
                call(
                    f"attach the instance profile to {node.name}",
                    self.c.ec2.associate_iam_instance_profile,
                    InstanceId=iid,
                    IamInstanceProfile={"Arn": profile_arn},
                )
        elif profile != profile_arn:
            raise HacloudError(
                f"{node.name}: {iid} already has the instance profile {profile.rsplit('/', 1)[-1]}; "
                "an instance has one profile, so hacloud cannot attach its own",
                "add the policy `hacloud plan` prints to that profile's role and set nothing else, "
                "or detach the profile and run `hacloud up` again",
            )

    # ------------------------------------------------------------------ corosync link 1

    def ensure_link(self, node: NodeSpec, inst: dict[str, Any]) -> dict[str, Any]:
        """A secondary private IP on the primary ENI for corosync link 1, unless the spec names
        the node's links; returns the instance as it now is.

        Why a secondary IP and not a second ENI (AWS SAP HA guides: a secondary IP for the
        redundant ring): both sit on the same Nitro card and subnet, so a second ENI adds no
        independent path, but it costs a device index, needs source routing on the node (two
        interfaces in one subnet) and cannot be tagged away cleanly on a kept instance. The
        address is recorded in the instance tag ``hacloud:link1``: a re-run finds it, a lost
        address is assigned again under the same IP, teardown gives it back."""
        if not self.adds_link(node):
            if _tags(inst.get("Tags")).get(TAG_LINK) and not node.links:  # corosync.links set to 1
                self.release_link(inst["InstanceId"])
            return inst
        eni = primary_eni(inst)
        if link_address(inst):
            return inst
        recorded = _tags(inst.get("Tags")).get(TAG_LINK)
        eni_id = eni["NetworkInterfaceId"]
        if not self.change(f"{node.name}: add a secondary private IP to {eni_id} (corosync link 1)"):
            return inst
        before = {a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses", [])}
        args: dict[str, Any] = {"NetworkInterfaceId": eni_id}
        if recorded:  # keep the address corosync.conf already names
            args["PrivateIpAddresses"] = [recorded]
        else:
            args["SecondaryPrivateIpAddressCount"] = 1
        res = call(f"add {node.name}'s link address", self.c.ec2.assign_private_ip_addresses, **args)
        added = [a["PrivateIpAddress"] for a in res.get("AssignedPrivateIpAddresses", [])]
        new = [a for a in added if a not in before] or ([recorded] if recorded else [])
        if len(new) != 1:
            raise HacloudError(
                f"{node.name}: EC2 assigned {added} to {eni_id}; hacloud cannot tell which address is new",
                f"unassign the extra secondary IPs of {eni_id} and run `hacloud up` again",
            )
        if new[0] != recorded:
            call(
                f"record {node.name}'s link address",
                self.c.ec2.create_tags,
                Resources=[inst["InstanceId"]],
                Tags=[{"Key": TAG_LINK, "Value": new[0]}],
            )
        return _with_link(inst, new[0])

    def adds_link(self, node: NodeSpec) -> bool:
        """Whether hacloud gives ``node`` its link-1 address: the spec names no links and the
        profile's ``corosync.links`` is 2."""
        return not node.links and link_count(self.spec) == 2

    def release_link(self, instance_id: str) -> None:
        """Give back the secondary IP hacloud added to a kept instance, and its tag."""
        res = call("read an instance", self.c.ec2.describe_instances, InstanceIds=[instance_id])
        inst = res["Reservations"][0]["Instances"][0]
        recorded = _tags(inst.get("Tags")).get(TAG_LINK)
        if not recorded:
            return
        eni = primary_eni(inst)
        if link_address(inst) and self.change(
            f"remove secondary private IP {recorded} from {eni['NetworkInterfaceId']}"
        ):
            call(
                "remove the link address",
                self.c.ec2.unassign_private_ip_addresses,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                PrivateIpAddresses=[recorded],
            )
        if self.change(f"remove tag {TAG_LINK} from {instance_id}"):
            call(
                "remove the link tag",
                self.c.ec2.delete_tags,
                Resources=[instance_id],
                Tags=[{"Key": TAG_LINK}],
            )

    # ------------------------------------------------------------------ IAM

    def ensure_identity(self) -> str:
        """Role + instance profile (both tagged); returns the profile ARN."""
        name = iam.role_name(self.cluster)
        tags = [{"Key": TAG_CLUSTER, "Value": self.cluster}]
        client = self.c.iam
        try:
            client.get_role(RoleName=name)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, f"read IAM role {name}") from None
            if self.change(f"IAM: create role {name} (assumed by EC2)"):
                call(
                    f"create IAM role {name}",
                    client.create_role,
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(iam.ASSUME_EC2),
                    Description=f"hacloud cluster {self.cluster}: fence and VIP agents",
                    Tags=tags,
                )
        try:
            profile = client.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, f"read instance profile {name}") from None
            if not self.change(f"IAM: create instance profile {name}"):
                return f"arn:{iam.partition(self.c.region)}:iam::ACCOUNT:instance-profile/{name}"
            profile = call(
                f"create instance profile {name}",
                client.create_instance_profile,
                InstanceProfileName=name,
                Tags=tags,
            )["InstanceProfile"]
        if not any(r["RoleName"] == name for r in profile.get("Roles", [])) and self.change(
            f"IAM: put role {name} into instance profile {name}"
        ):
            call(
                "add the role to the instance profile",
                client.add_role_to_instance_profile,
                InstanceProfileName=name,
                RoleName=name,
            )
        return str(profile["Arn"])

    def ensure_policy(self, account: str, instance_ids: list[str]) -> dict[str, Any]:
        name = iam.role_name(self.cluster)
        want = iam.agent_policy(self.spec, self.c.region, account, instance_ids)
        try:
            have = self.c.iam.get_role_policy(RoleName=name, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
            if isinstance(have, str):
                have = json.loads(have)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, "read the agents' policy") from None
            have = None
        if have != want and self.change(f"IAM: put policy {iam.POLICY_NAME} on role {name}"):
            call(
                "put the agents' policy",
                self.c.iam.put_role_policy,
                RoleName=name,
                PolicyName=iam.POLICY_NAME,
                PolicyDocument=json.dumps(want),
            )
        return want

    # ------------------------------------------------------------------ network

    def wanted_rules(self, sg: str) -> set[tuple[str, int, int, str]]:
        """(protocol, from, to, source) the cluster needs; source is a group id or a CIDR."""
        links = link_count(self.spec)
        port = self.spec.corosync.cluster_port
        rules = {("udp", port + i, port + i, sg) for i in range(links)}
        rules |= {("tcp", port, port, sg) for port in drbd_ports(self.spec)}
        if self.opts.admin_cidr:
            for ssh_port in sorted({n.ssh.port for n in self.spec.nodes}):
                rules.add(("tcp", ssh_port, ssh_port, self.opts.admin_cidr))
        if self.opts.client_cidr and isinstance(self.spec.service, DemoService):
            rules.add(("tcp", self.spec.service.port, self.spec.service.port, self.opts.client_cidr))
        return rules

    def find_group(self, vpc_id: str) -> dict[str, Any] | None:
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        groups = call("find the security group", self.c.ec2.describe_security_groups, Filters=filters)[
            "SecurityGroups"
        ]
        return dict(groups[0]) if groups else None

    def ensure_security_group(self, vpc_id: str) -> str:
        name = f"hacloud-{self.cluster}"
        group = self.find_group(vpc_id)
        if group is None:
            if not self.change(f"network: create security group {name} in {vpc_id}"):
                for proto, lo, _hi, src in sorted(self.wanted_rules("the group itself")):
                    self.change(f"network: allow {proto}/{lo} from {src} in {name}")
                return "sg-PLACEHOLDER"
            gid = call(
                f"create security group {name}",
                self.c.ec2.create_security_group,
                GroupName=name,
                Description=f"hacloud cluster {self.cluster}: corosync and DRBD between the nodes, SSH",
                VpcId=vpc_id,
                TagSpecifications=self.tag_spec("security-group", Name=name),
            )["GroupId"]
            have: set[tuple[str, int, int, str]] = set()
        else:
            gid = group["GroupId"]
            have = _rules(group.get("IpPermissions", []))
        want = self.wanted_rules(gid)
        for proto, lo, hi, src in sorted(want - have):
            if self.change(f"network: allow {proto}/{lo} from {src} in {gid}"):
                call(
                    "add a security group rule",
                    self.c.ec2.authorize_security_group_ingress,
                    GroupId=gid,
                    IpPermissions=[_permission(proto, lo, hi, src)],
                )
        for proto, lo, hi, src in sorted(have - want):
            if self.change(f"network: remove {proto}/{lo} from {src} in {gid} (not in the spec)"):
                call(
                    "remove a security group rule",
                    self.c.ec2.revoke_security_group_ingress,
                    GroupId=gid,
                    IpPermissions=[_permission(proto, lo, hi, src)],
                )
        return str(gid)

    def ensure_routes(self, instances: dict[str, dict[str, Any]]) -> None:
        vip = self.spec.vip
        if not isinstance(vip, AwsMoveIpVip):
            return
        cidr = f"{vip.address}/32"
        if not instances:
            for rtb in vip.route_tables:
                self.change(f"network: route {cidr} in {rtb} to {self.spec.nodes[0].name}'s interface")
            return
        ours = {primary_eni(i)["NetworkInterfaceId"] for i in instances.values()} | {
            i["InstanceId"] for i in instances.values()
        }
        first = primary_eni(instances[self.spec.nodes[0].name])["NetworkInterfaceId"]
        created = self._routes_record()
        for rtb in vip.route_tables:
            table = call("read a route table", self.c.ec2.describe_route_tables, RouteTableIds=[rtb])[
                "RouteTables"
            ][0]
            route = next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == cidr), None)
            if route is None:
                if self.change(f"network: route {cidr} in {rtb} to {first} (the agent moves it on failover)"):
                    call(
                        "create the overlay route",
                        self.c.ec2.create_route,
                        RouteTableId=rtb,
                        DestinationCidrBlock=cidr,
                        NetworkInterfaceId=first,
                    )
                    created[rtb] = cidr
                    self._save_routes(created)
                continue
            target = route.get("NetworkInterfaceId") or route.get("InstanceId") or route.get("GatewayId")
            if target in ours:
                continue
            if route.get("State") == "blackhole" and rtb in created:
                if self.change(f"network: point {cidr} in {rtb} at {first} (was a blackhole)"):
                    call(
                        "repair the overlay route",
                        self.c.ec2.replace_route,
                        RouteTableId=rtb,
                        DestinationCidrBlock=cidr,
                        NetworkInterfaceId=first,
                    )
                continue
            raise HacloudError(
                f"route table {rtb} already routes {cidr} to {target}, which is not a node of this cluster",
                "choose another overlay address (vip.address), or delete that route if nothing uses it",
            )

    def adopt_routes(self, inventory: Inventory) -> None:
        """Drop-in: the overlay routes for instances Terraform owns (created only where missing,
        recorded like hacloud's own, so `down` removes only those)."""
        instances = {}
        for node in inventory.nodes:
            res = call(f"read {node.name} ({node.id})", self.c.ec2.describe_instances, InstanceIds=[node.id])
            instances[node.name] = res["Reservations"][0]["Instances"][0]
        self.ensure_routes(instances)

    def release_routes(self) -> None:
        self._delete_routes()

    def _routes_record(self) -> dict[str, str]:
        path = self.ws.state_dir / ROUTES_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _save_routes(self, routes: dict[str, str]) -> None:
        path = self.ws.state_dir / ROUTES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(routes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    # ------------------------------------------------------------------ volumes

    def find_volume(self, node: str, volume: str) -> dict[str, Any] | None:
        filters = [
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]},
            {"Name": f"tag:{TAG_NODE}", "Values": [node]},
            {"Name": f"tag:{TAG_VOLUME}", "Values": [volume]},
        ]
        vols = [
            v
            for v in call("find a volume", self.c.ec2.describe_volumes, Filters=filters)["Volumes"]
            if v["State"] not in ("deleting", "deleted")
        ]
        if len(vols) > 1:
            raise HacloudError(
                f"{node}: {len(vols)} volumes carry the tags of volume {volume} "
                f"({', '.join(sorted(v['VolumeId'] for v in vols))})",
                "keep the one holding the data and remove the hacloud tags from the others",
            )
        return dict(vols[0]) if vols else None

    def ensure_volumes(
        self, instances: dict[str, dict[str, Any]], zones: dict[str, str] | None = None
    ) -> dict[str, dict[str, str]]:
        """node -> volume name -> device path on the node (``zones``: where planned nodes go)."""
        out: dict[str, dict[str, str]] = {}
        for node in self.spec.nodes:
            inst = instances.get(node.name)
            az = inst["Placement"]["AvailabilityZone"] if inst else (zones or {}).get(node.name, "?")
            out[node.name] = {}
            for index, vol in enumerate(self.spec.volumes):
                if vol.name in node.volumes or vol.device:
                    out[node.name][vol.name] = node.volumes.get(vol.name) or vol.device or ""
                    continue
                found = self.find_volume(node.name, vol.name)
                if found is None:
                    if not self.change(
                        f"{node.name}: create gp3 volume {vol.name} of {vol.size_gib} GiB in {az}"
                    ):
                        out[node.name][vol.name] = (
                            f"/dev/disk/by-id/hacloud-placeholder-{node.name}-{vol.name}"
                        )
                        continue
                    found = call(
                        f"create {node.name}'s volume {vol.name}",
                        self.c.ec2.create_volume,
                        AvailabilityZone=az,
                        Size=vol.size_gib,
                        VolumeType="gp3",
                        Encrypted=True,
                        TagSpecifications=self.tag_spec(
                            "volume",
                            **{
                                TAG_NODE: node.name,
                                TAG_VOLUME: vol.name,
                                "Name": f"{self.cluster}-{node.name}-{vol.name}",
                            },
                        ),
                    )
                    found = self._wait_volume(found["VolumeId"], "available")
                elif found["AvailabilityZone"] != az:
                    raise HacloudError(
                        f"{node.name}: volume {found['VolumeId']} ({vol.name}) is in "
                        f"{found['AvailabilityZone']}, the instance in {az}; EBS volumes attach only "
                        "within their zone",
                        "snapshot it and restore into the node's zone, then move the hacloud tags to "
                        "the copy",
                    )
                elif found["Size"] < vol.size_gib:
                    self.ws.progress(
                        f"{node.name}: volume {found['VolumeId']} has {found['Size']} GiB, the spec asks "
                        f"{vol.size_gib}; hacloud never resizes data volumes (grow it with modify-volume)"
                    )
                out[node.name][vol.name] = ebs_device_path(found["VolumeId"])
                if inst is not None:
                    self._attach(node.name, inst["InstanceId"], found, index)
        return out

    def _wait_volume(self, volume_id: str, state: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            vol = call("read a volume", self.c.ec2.describe_volumes, VolumeIds=[volume_id])["Volumes"][0]
            return dict(vol) if vol["State"] == state else None

        return wait_for(f"volume {volume_id} to be {state}", probe, timeout=300, sleep=self.sleep)

    def _attach(self, node: str, instance_id: str, vol: dict[str, Any], index: int) -> None:
        attached = [a for a in vol.get("Attachments", []) if a["State"] in ("attaching", "attached")]
        if any(a["InstanceId"] == instance_id for a in attached):
            return
        if attached:
            raise HacloudError(
                f"{node}: volume {vol['VolumeId']} is attached to {attached[0]['InstanceId']}, "
                f"not to {instance_id}",
                "detach it from that instance (it holds this node's data), then run `hacloud up` again",
            )
        device = attach_device(index)
        if self.change(f"{node}: attach {vol['VolumeId']} to {instance_id} as {device}"):
            call(
                f"attach {node}'s volume",
                self.c.ec2.attach_volume,
                VolumeId=vol["VolumeId"],
                InstanceId=instance_id,
                Device=device,
            )
            self._wait_volume(vol["VolumeId"], "in-use")

    # ------------------------------------------------------------------ all together

    def ensure(self) -> Inventory:
        site = self.validate()
        profile_arn = self.ensure_identity()
        sg = self.ensure_security_group(site.vpc_id)
        instances = self.ensure_instances(site, sg, profile_arn)
        # placeholders only in a plan: `up` has made both instances by now
        ids = [
            instances[n.name]["InstanceId"] if n.name in instances else f"<{n.name} instance id>"
            for n in self.spec.nodes
        ]
        self.policy = self.ensure_policy(site.account, ids)
        zones = {
            n.name: site.subnet_az.get(s, "?")
            for n, s in zip(self.spec.nodes, self.opts.subnets, strict=False)
        }
        volumes = self.ensure_volumes(instances, zones)
        self.ensure_routes(instances)
        return self.inventory(instances, volumes, site.vpc_cidrs, sg)

    def inventory(
        self,
        instances: dict[str, dict[str, Any]],
        volumes: dict[str, dict[str, str]],
        vpc_cidrs: list[str],
        sg: str,
    ) -> Inventory:
        nodes = []
        for i, node in enumerate(self.spec.nodes):
            inst = instances.get(node.name)
            if inst is None:
                ip = str(ipaddress.IPv4Address("203.0.113.11") + i)
                link1 = str(ipaddress.IPv4Address("203.0.113.21") + i)
                nodes.append(
                    NodeInfo(
                        node.name,
                        f"PLACEHOLDER-{node.name}",
                        ip,
                        tuple(str(a) for a in node.links)
                        or ((ip, link1) if link_count(self.spec) == 2 else (ip,)),
                        ip,
                        volumes[node.name],
                        placeholder=True,
                    )
                )
                continue
            private = str(inst["PrivateIpAddress"])
            public = inst.get("PublicIpAddress")
            ssh = (
                str(node.address)
                if node.address
                else (str(public) if self.opts.ssh_address == "public" and public else private)
            )
            second = link_address(inst) if self.adds_link(node) else None
            links = tuple(str(a) for a in node.links) or ((private, second) if second else (private,))
            eni = primary_eni(inst)
            nodes.append(
                NodeInfo(
                    name=node.name,
                    id=str(inst["InstanceId"]),
                    ssh_address=ssh,
                    links=links,
                    replication_address=str(node.replication_address or links[0]),
                    volumes=volumes[node.name],
                    zone=str(inst["Placement"]["AvailabilityZone"]),
                    placeholder=any("placeholder" in d for d in volumes[node.name].values()),
                    extra={
                        "eni": str(eni["NetworkInterfaceId"]),
                        "subnet": str(inst["SubnetId"]),
                        # the OS must hold link 1 itself: Debian configures no secondary IPs
                        **({"os_links": second} if second and not node.links else {}),
                    },
                )
            )
        vip = self.spec.vip
        tables = tuple(vip.route_tables) if isinstance(vip, AwsMoveIpVip) else ()
        return Inventory(
            1,
            self.cluster,
            "aws",
            (nodes[0], nodes[1]),
            NetworkInfo(
                vpc_cidr=vpc_cidrs[0] if vpc_cidrs else None,
                route_tables=tables,
                extra={"security_group": sg, "region": self.c.region},
            ),
        )

    def discover(self) -> Inventory | None:
        """Read-only: the inventory when both instances exist, else None."""
        instances = {}
        for node in self.spec.nodes:
            inst = self.find_instance(node)
            if inst is None:
                return None
            instances[node.name] = inst
        volumes: dict[str, dict[str, str]] = {}
        for node in self.spec.nodes:
            volumes[node.name] = {}
            for vol in self.spec.volumes:
                if vol.name in node.volumes or vol.device:
                    volumes[node.name][vol.name] = node.volumes.get(vol.name) or vol.device or ""
                    continue
                found = self.find_volume(node.name, vol.name)
                volumes[node.name][vol.name] = (
                    ebs_device_path(found["VolumeId"])
                    if found
                    else f"/dev/disk/by-id/hacloud-placeholder-{node.name}-{vol.name}"
                )
        vpc_id = next(iter(instances.values()))["VpcId"]
        vpc = call("read the VPC", self.c.ec2.describe_vpcs, VpcIds=[vpc_id])["Vpcs"][0]
        cidrs = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]
        group = self.find_group(vpc_id)
        return self.inventory(instances, volumes, cidrs, group["GroupId"] if group else "")

    # ------------------------------------------------------------------ teardown

    def teardown(self, delete_volumes: bool) -> None:
        ec2 = self.c.ec2
        tagged = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        res = call(
            "find the instances",
            ec2.describe_instances,
            Filters=[*tagged, {"Name": "instance-state-name", "Values": LIVE_STATES}],
        )["Reservations"]
        ids = sorted(i["InstanceId"] for r in res for i in r["Instances"])
        group = self.find_group("")
        # Routes first: they point at the instances' interfaces.
        self._delete_routes()
        # Instances given by id (not tagged) stay; take hacloud's group off them.
        if group is not None:
            for node in self.spec.nodes:
                if node.id and node.id not in ids:
                    self._release_instance(node.id, group["GroupId"])
        if ids and self.change(f"terminate {', '.join(ids)}"):
            call("terminate the instances", ec2.terminate_instances, InstanceIds=ids)
            for iid in ids:
                self._wait_terminated(iid)
        if group is not None and self.change(f"delete security group {group['GroupId']}"):
            self._delete_group(group["GroupId"])
        self._delete_identity()
        vols = call("find the volumes", ec2.describe_volumes, Filters=tagged)["Volumes"]
        for vol in vols:
            if not delete_volumes:
                self.ws.progress(
                    f"kept volume {vol['VolumeId']} ({_tags(vol.get('Tags')).get(TAG_NODE)} data)"
                )
                continue
            if self.change(f"delete volume {vol['VolumeId']}"):
                # Still attached only to an instance hacloud did not make (and so kept).
                for a in vol.get("Attachments", []):
                    if a["State"] in ("attaching", "attached") and a["InstanceId"] not in ids:
                        call(
                            "detach a volume",
                            ec2.detach_volume,
                            VolumeId=vol["VolumeId"],
                            InstanceId=a["InstanceId"],
                        )
                if vol["State"] != "available":
                    self._wait_volume(vol["VolumeId"], "available")
                call("delete a volume", ec2.delete_volume, VolumeId=vol["VolumeId"])

    def _delete_routes(self) -> None:
        created = self._routes_record()
        for rtb, cidr in sorted(created.items()):
            if self.change(f"delete route {cidr} from {rtb}"):
                try:
                    self.c.ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock=cidr)
                except Exception as exc:
                    if error_code(exc) not in ("InvalidRoute.NotFound", "InvalidRouteTableID.NotFound"):
                        raise aws_error(exc, f"delete the route in {rtb}") from None
                del created[rtb]
                self._save_routes(created)

    def _release_instance(self, instance_id: str, sg: str) -> None:
        self.release_link(instance_id)
        res = call("read an instance", self.c.ec2.describe_instances, InstanceIds=[instance_id])
        inst = res["Reservations"][0]["Instances"][0]
        eni = primary_eni(inst)
        groups = [g["GroupId"] for g in eni.get("Groups", [])]
        if sg in groups and len(groups) > 1 and self.change(f"remove security group {sg} from {instance_id}"):
            call(
                "remove the security group",
                self.c.ec2.modify_network_interface_attribute,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                Groups=[g for g in groups if g != sg],
            )
        assoc = call(
            "read instance profiles",
            self.c.ec2.describe_iam_instance_profile_associations,
            Filters=[{"Name": "instance-id", "Values": [instance_id]}],
        )["IamInstanceProfileAssociations"]
        for a in assoc:
            if a["IamInstanceProfile"]["Arn"].endswith(f"/{iam.role_name(self.cluster)}") and self.change(
                f"detach instance profile from {instance_id}"
            ):
                call(
                    "detach the instance profile",
                    self.c.ec2.disassociate_iam_instance_profile,
                    AssociationId=a["AssociationId"],
                )

    def _wait_terminated(self, instance_id: str) -> None:
        def probe() -> bool | None:
            res = call("read an instance", self.c.ec2.describe_instances, InstanceIds=[instance_id])
            return True if res["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated" else None

        wait_for(f"{instance_id} to terminate", probe, timeout=600, sleep=self.sleep)

    def _delete_group(self, gid: str) -> None:
        # ENIs of terminated instances release the group a little after termination.
        def probe() -> bool | None:
            try:
                self.c.ec2.delete_security_group(GroupId=gid)
            except Exception as exc:
                if error_code(exc) == "DependencyViolation":
                    return None
                if error_code(exc) == "InvalidGroup.NotFound":
                    return True
                raise aws_error(exc, f"delete security group {gid}") from None
            return True

        wait_for(f"security group {gid} to be free", probe, timeout=300, interval=5, sleep=self.sleep)

    def _delete_identity(self) -> None:
        name = iam.role_name(self.cluster)
        client = self.c.iam
        try:
            role = client.get_role(RoleName=name)["Role"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, f"read IAM role {name}") from None
            role = None
        try:
            profile = client.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, f"read instance profile {name}") from None
            profile = None
        if role is not None and _tags(role.get("Tags")).get(TAG_CLUSTER) != self.cluster:
            self.ws.progress(f"kept IAM role {name}: it does not carry {TAG_CLUSTER}={self.cluster}")
            return
        if profile is not None and self.change(f"IAM: delete instance profile {name}"):
            for r in profile.get("Roles", []):
                call(
                    "take the role out of the profile",
                    client.remove_role_from_instance_profile,
                    InstanceProfileName=name,
                    RoleName=r["RoleName"],
                )
            call("delete the instance profile", client.delete_instance_profile, InstanceProfileName=name)
        if role is not None and self.change(f"IAM: delete role {name}"):
            for policy in call("list role policies", client.list_role_policies, RoleName=name)["PolicyNames"]:
                call("delete a role policy", client.delete_role_policy, RoleName=name, PolicyName=policy)
            call("delete the role", client.delete_role, RoleName=name)


def primary_eni(inst: dict[str, Any]) -> dict[str, Any]:
    for eni in inst.get("NetworkInterfaces", []):
        if eni.get("Attachment", {}).get("DeviceIndex") == 0:
            return dict(eni)
    enis = inst.get("NetworkInterfaces", [])
    if not enis:
        raise HacloudError(
            f"{inst.get('InstanceId')} has no network interface", "look at it in the EC2 console"
        )
    return dict(enis[0])


def _rules(perms: list[dict[str, Any]]) -> set[tuple[str, int, int, str]]:
    out = set()
    for p in perms:
        proto = str(p.get("IpProtocol"))
        lo, hi = int(p.get("FromPort", -1)), int(p.get("ToPort", -1))
        for pair in p.get("UserIdGroupPairs", []):
            out.add((proto, lo, hi, str(pair["GroupId"])))
        for rng in p.get("IpRanges", []):
            out.add((proto, lo, hi, str(rng["CidrIp"])))
    return out


def _permission(proto: str, lo: int, hi: int, source: str) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": proto, "FromPort": lo, "ToPort": hi}
    if source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source, "Description": "hacloud"}]
    return perm


def link_address(inst: dict[str, Any]) -> str | None:
    """The secondary IP of the primary ENI that the ``hacloud:link1`` tag names, if it is there."""
    recorded = _tags(inst.get("Tags")).get(TAG_LINK)
    held = {
        a["PrivateIpAddress"] for a in primary_eni(inst).get("PrivateIpAddresses", []) if not a.get("Primary")
    }
    return recorded if recorded in held else None


def _with_link(inst: dict[str, Any], address: str) -> dict[str, Any]:
    """``inst`` as EC2 now describes it: ``address`` on its primary ENI and recorded in its tag."""
    eni = primary_eni(inst)
    eni["PrivateIpAddresses"] = [
        *[a for a in eni.get("PrivateIpAddresses", []) if a["PrivateIpAddress"] != address],
        {"Primary": False, "PrivateIpAddress": address},
    ]
    enis = [
        eni if e.get("NetworkInterfaceId") == eni["NetworkInterfaceId"] else e
        for e in inst["NetworkInterfaces"]
    ]
    tags = [t for t in inst.get("Tags", []) if t["Key"] != TAG_LINK] + [{"Key": TAG_LINK, "Value": address}]
    return {**inst, "NetworkInterfaces": enis, "Tags": tags}
