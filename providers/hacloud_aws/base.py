"""What every phase of the AWS infrastructure shares: the run's fields, names, tags, finding
an instance, and the pure helpers that read EC2's descriptions.

The phases are mixins of :class:`AwsBase` (validate, identity, network, instances, links,
volumes), assembled into :class:`hacloud_aws.infra.Infra`; the order they run in, the
recording of changes and what teardown may delete are :class:`hacloud.provision.cloud.CloudInfra`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.changes import Change
from hacloud.provision.cloud import TAG_CLUSTER, CloudInfra
from hacloud.provision.provider import link_count
from hacloud.spec.model import AwsOptions, NodeSpec
from hacloud.spec.workspace import Workspace
from hacloud_aws.api import Clients, aws_error, call

TAG_NODE = "hacloud:node"
TAG_VOLUME = "hacloud:volume"
#: on an instance: the secondary private IP hacloud added to its primary ENI for corosync link 1
#: (addresses cannot be tagged; the tag also tells teardown what to give back on a kept instance)
TAG_LINK = "hacloud:link1"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]

__all__ = ["TAG_CLUSTER", "TAG_LINK", "TAG_NODE", "TAG_VOLUME", "AwsBase", "Site"]


@dataclass
class Site:
    """Validated facts about the account (where each node goes), then what each phase found
    or made in this run."""

    account: str
    vpc_id: str
    vpc_cidrs: list[str]
    subnet_az: dict[str, str] = field(default_factory=dict)  # subnet id -> AZ
    #: node name -> its instance as validation found it (None: to be created)
    existing: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    #: the instance profile's ARN (identity phase)
    profile_arn: str = ""
    #: the security group's id, "sg-PLACEHOLDER" in a plan that would create it (network phase)
    sg: str = ""
    #: node name -> instance as it now is; a plan leaves out the ones it would create
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: node name -> volume name -> device path on the node (volumes phase)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class AwsBase(CloudInfra[Site]):
    ws: Workspace
    c: Clients
    apply: bool = True
    changes: list[Change] = field(default_factory=list)
    sleep: Callable[[float], None] = time.sleep
    #: the agents' policy, once ``ensure`` has worked it out (what `plan` prints)
    policy: dict[str, Any] | None = None
    #: teardown: the cluster's security group and the ids of the instances it terminates
    #: (read once, before the routes go; the volume phase must not detach from those)
    doomed: list[str] = field(default_factory=list, repr=False)
    group: dict[str, Any] | None = field(default=None, repr=False)

    account_word = "account"
    cloud_name = "AWS"

    @property
    def opts(self) -> AwsOptions:
        options = getattr(self.spec.provider, "options", None)
        assert isinstance(options, AwsOptions)
        return options

    def tag_spec(self, kind: str, **extra: str) -> list[dict[str, Any]]:
        tags = self.cluster_tags(self.opts.tags, **extra)
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}]

    def adds_link(self, node: NodeSpec) -> bool:
        """Whether hacloud gives ``node`` its link-1 address: the spec names no links and the
        profile's ``corosync.links`` is 2."""
        return not node.links and link_count(self.spec) == 2

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
                    code="HAC660",
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
                code="HAC661",
            )
        return dict(found[0]) if found else None

    def find_group(self, vpc_id: str) -> dict[str, Any] | None:
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        groups = call("find the security group", self.c.ec2.describe_security_groups, Filters=filters)[
            "SecurityGroups"
        ]
        return dict(groups[0]) if groups else None

    def describe(self, instance_id: str, doing: str = "read an instance") -> dict[str, Any]:
        """One instance as EC2 describes it now."""
        res = call(doing, self.c.ec2.describe_instances, InstanceIds=[instance_id])
        return dict(res["Reservations"][0]["Instances"][0])

    def vpc_cidrs(self, vpc_id: str) -> list[str]:
        vpc = call("read the VPC", self.c.ec2.describe_vpcs, VpcIds=[vpc_id])["Vpcs"][0]
        return [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]


# ---------------------------------------------------------------------- reading descriptions


def attach_device(index: int) -> str:
    return f"/dev/sd{chr(ord('f') + index)}"


def tags_of(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def primary_eni(inst: dict[str, Any]) -> dict[str, Any]:
    for eni in inst.get("NetworkInterfaces", []):
        if eni.get("Attachment", {}).get("DeviceIndex") == 0:
            return dict(eni)
    enis = inst.get("NetworkInterfaces", [])
    if not enis:
        raise HacloudError(
            f"{inst.get('InstanceId')} has no network interface",
            "look at it in the EC2 console",
            code="HAC662",
        )
    return dict(enis[0])


def link_address(inst: dict[str, Any]) -> str | None:
    """The secondary IP of the primary ENI that the ``hacloud:link1`` tag names, if it is there."""
    recorded = tags_of(inst.get("Tags")).get(TAG_LINK)
    held = {
        a["PrivateIpAddress"] for a in primary_eni(inst).get("PrivateIpAddresses", []) if not a.get("Primary")
    }
    return recorded if recorded in held else None
