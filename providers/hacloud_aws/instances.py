"""AWS instances: the two nodes created (IMDSv2 only, one per subnet and zone) or found (by
tag or ``nodes[].id``), started, given the security group, the instance profile and, for the
overlay IP, no source/destination check; teardown terminates only tagged instances and gives
back what hacloud added to kept ones."""

from __future__ import annotations

import time
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.cloud import TAG_CLUSTER
from hacloud.spec.model import AwsMoveIpVip, NodeSpec
from hacloud_aws import iam
from hacloud_aws.api import CAPACITY_CODES, THROTTLE_CODES, aws_error, call, error_code, wait_for
from hacloud_aws.base import LIVE_STATES, TAG_NODE, Site, primary_eni
from hacloud_aws.links import Links


class Instances(Links):
    def ensure_instances(self, site: Site) -> None:
        """``site.instances``: each node's instance as it now is (a plan leaves out new ones)."""
        for index, node in enumerate(self.spec.nodes):
            inst = site.existing[node.name]
            if inst is None:
                subnet = self.opts.subnets[index]
                if self.change(
                    f"instance/{node.name}",
                    "create",
                    f"{node.name}: create instance {self.opts.instance_type} from {self.opts.ami} "
                    f"in {subnet} ({site.subnet_az.get(subnet, '?')})",
                ):
                    iid = self._run_instance(node, index, site.sg, site.profile_arn, site)
                    inst = self.wait_running(iid, node.name)
            elif inst["State"]["Name"] != "running":
                inst = self._start(node, inst)
            if inst is not None:
                self._fix_instance(node, inst, site.sg, site.profile_arn)
                site.instances[node.name] = self.ensure_link(node, inst)
            elif self.adds_link(node):  # a plan: the instance, and then its link address, are to come
                self.change(
                    f"secondary-ip/{node.name}",
                    "create",
                    f"{node.name}: add a secondary private IP to its primary ENI (corosync link 1)",
                )

    def _start(self, node: NodeSpec, inst: dict[str, Any]) -> dict[str, Any]:
        if not self.change(
            f"instance/{node.name}",
            "start",
            f"{node.name}: start instance {inst['InstanceId']} ({inst['State']['Name']})",
        ):
            return inst
        if inst["State"]["Name"] == "stopping":
            self.c.ec2.get_waiter("instance_stopped").wait(InstanceIds=[inst["InstanceId"]])
        call(f"start {node.name}", self.c.ec2.start_instances, InstanceIds=[inst["InstanceId"]])
        return self.wait_running(inst["InstanceId"], node.name)

    def _run_args(self, node: NodeSpec, index: int, sg: str, profile_arn: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "ImageId": self.opts.ami,
            "InstanceType": self.opts.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": self.opts.subnets[index],
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
        return args

    def _run_instance(self, node: NodeSpec, index: int, sg: str, profile_arn: str, site: Site) -> str:
        az = site.subnet_az.get(self.opts.subnets[index], "?")
        args = self._run_args(node, index, sg, profile_arn)
        delay = 1.0
        profile_deadline = time.monotonic() + 90
        for attempt in range(6):
            try:
                inst = self.c.ec2_once.run_instances(**args)["Instances"][0]
                return str(inst["InstanceId"])
            except Exception as exc:
                code = error_code(exc)
                if code in CAPACITY_CODES:
                    raise aws_error(exc, f"create {node.name}", f"availability zone {az}") from None
                # A new instance profile takes a few seconds to be usable by EC2 (IAM is
                # eventually consistent): retry that one error for up to 90 s.
                if (
                    code == "InvalidParameterValue"
                    and "iamInstanceProfile" in str(exc)
                    and time.monotonic() < profile_deadline
                ):
                    self.sleep(5)
                    continue
                if code in THROTTLE_CODES and attempt < 5:
                    self.sleep(delay)
                    delay *= 2
                    continue
                raise aws_error(exc, f"create {node.name}", f"availability zone {az}") from None
        raise HacloudError(  # pragma: no cover
            f"could not create {node.name}", "run `hacloud up` again", code="HAC665"
        )

    def wait_running(self, instance_id: str, name: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            inst = self.describe(instance_id, f"read {name}")
            return inst if inst["State"]["Name"] == "running" else None

        return wait_for(f"{name} ({instance_id}) to run", probe, timeout=600, sleep=self.sleep)

    # ------------------------------------------------------------------ fixing what differs

    def _fix_instance(self, node: NodeSpec, inst: dict[str, Any], sg: str, profile_arn: str) -> None:
        eni = primary_eni(inst)
        groups = [g["GroupId"] for g in eni.get("Groups", [])]
        if sg not in groups and self.change(
            f"instance/{node.name}",
            "update",
            f"{node.name}: add security group {sg} to {eni['NetworkInterfaceId']}",
        ):
            call(
                f"add the security group to {node.name}",
                self.c.ec2.modify_network_interface_attribute,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                Groups=[*groups, sg],
            )
        if isinstance(self.spec.vip, AwsMoveIpVip):
            self._fix_source_dest(node, inst["InstanceId"])
        self._fix_profile(node, inst, profile_arn)

    def _fix_source_dest(self, node: NodeSpec, iid: str) -> None:
        attr = call(
            f"read {node.name}'s source/destination check",
            self.c.ec2.describe_instance_attribute,
            InstanceId=iid,
            Attribute="sourceDestCheck",
        )
        # The overlay IP is not the instance's own address: with the check on, EC2 drops it.
        if attr["SourceDestCheck"]["Value"] and self.change(
            f"instance/{node.name}", "update", f"{node.name}: disable the source/destination check of {iid}"
        ):
            call(
                f"disable {node.name}'s source/destination check",
                self.c.ec2.modify_instance_attribute,
                InstanceId=iid,
                SourceDestCheck={"Value": False},
            )

    def _fix_profile(self, node: NodeSpec, inst: dict[str, Any], profile_arn: str) -> None:
        iid = inst["InstanceId"]
        profile = (inst.get("IamInstanceProfile") or {}).get("Arn")
        if profile is None:
            assoc = self._associations(iid, f"read {node.name}'s instance profile", associated=True)
            profile = assoc[0]["IamInstanceProfile"]["Arn"] if assoc else None
        if profile is None:
            if self.change(
                f"instance/{node.name}",
                "attach",
                f"{node.name}: attach instance profile {profile_arn.rsplit('/', 1)[-1]}",
            ):
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
                code="HAC666",
            )

    def _associations(self, iid: str, doing: str, associated: bool = False) -> list[dict[str, Any]]:
        filters = [{"Name": "instance-id", "Values": [iid]}]
        if associated:
            filters.append({"Name": "state", "Values": ["associated"]})
        return list(
            call(doing, self.c.ec2.describe_iam_instance_profile_associations, Filters=filters)[
                "IamInstanceProfileAssociations"
            ]
        )

    # ------------------------------------------------------------------ teardown

    def teardown_instances(self) -> None:
        """Terminate the tagged instances; take hacloud's group, profile and link address off the
        ones the spec names by id (kept)."""
        res = call(
            "find the instances",
            self.c.ec2.describe_instances,
            Filters=[
                {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ],
        )["Reservations"]
        self.doomed = ids = sorted(i["InstanceId"] for r in res for i in r["Instances"])
        self.group = self.find_group("")  # deleted in the network phase, once no instance holds it
        if self.group is not None:
            for node in self.spec.nodes:
                if node.id and node.id not in ids:
                    self._release_instance(node.id, self.group["GroupId"])
        if ids and self.change("instance/" + ",".join(ids), "delete", f"terminate {', '.join(ids)}"):
            call("terminate the instances", self.c.ec2.terminate_instances, InstanceIds=ids)
            for iid in ids:
                self._wait_terminated(iid)

    def _release_instance(self, instance_id: str, sg: str) -> None:
        self.release_link(instance_id)
        eni = primary_eni(self.describe(instance_id))
        groups = [g["GroupId"] for g in eni.get("Groups", [])]
        if (
            sg in groups
            and len(groups) > 1
            and self.change(
                f"instance/{instance_id}", "update", f"remove security group {sg} from {instance_id}"
            )
        ):
            call(
                "remove the security group",
                self.c.ec2.modify_network_interface_attribute,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                Groups=[g for g in groups if g != sg],
            )
        for a in self._associations(instance_id, "read instance profiles"):
            if a["IamInstanceProfile"]["Arn"].endswith(f"/{iam.role_name(self.cluster)}") and self.change(
                f"instance/{instance_id}", "detach", f"detach instance profile from {instance_id}"
            ):
                call(
                    "detach the instance profile",
                    self.c.ec2.disassociate_iam_instance_profile,
                    AssociationId=a["AssociationId"],
                )

    def _wait_terminated(self, instance_id: str) -> None:
        def probe() -> bool | None:
            return True if self.describe(instance_id)["State"]["Name"] == "terminated" else None

        wait_for(f"{instance_id} to terminate", probe, timeout=600, sleep=self.sleep)
