"""AWS corosync link 1: a secondary private IP on each node's primary ENI, recorded in the
instance tag ``hacloud:link1``, and given back on a kept instance."""

from __future__ import annotations

from typing import Any

from hacloud.errors import HacloudError
from hacloud.spec.model import NodeSpec
from hacloud_aws.api import call
from hacloud_aws.base import TAG_LINK, AwsBase, link_address, primary_eni, tags_of


class Links(AwsBase):
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
            if tags_of(inst.get("Tags")).get(TAG_LINK) and not node.links:  # corosync.links set to 1
                self.release_link(inst["InstanceId"])
            return inst
        eni = primary_eni(inst)
        if link_address(inst):
            return inst
        recorded = tags_of(inst.get("Tags")).get(TAG_LINK)
        eni_id = eni["NetworkInterfaceId"]
        if not self.change(
            f"secondary-ip/{node.name}",
            "create",
            f"{node.name}: add a secondary private IP to {eni_id} (corosync link 1)",
        ):
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
                code="HAC664",
            )
        if new[0] != recorded:
            call(
                f"record {node.name}'s link address",
                self.c.ec2.create_tags,
                Resources=[inst["InstanceId"]],
                Tags=[{"Key": TAG_LINK, "Value": new[0]}],
            )
        return with_link(inst, new[0])

    def release_link(self, instance_id: str) -> None:
        """Give back the secondary IP hacloud added to a kept instance, and its tag."""
        inst = self.describe(instance_id)
        recorded = tags_of(inst.get("Tags")).get(TAG_LINK)
        if not recorded:
            return
        eni = primary_eni(inst)
        if link_address(inst) and self.change(
            f"secondary-ip/{instance_id}",
            "delete",
            f"remove secondary private IP {recorded} from {eni['NetworkInterfaceId']}",
        ):
            call(
                "remove the link address",
                self.c.ec2.unassign_private_ip_addresses,
                NetworkInterfaceId=eni["NetworkInterfaceId"],
                PrivateIpAddresses=[recorded],
            )
        if self.change(f"instance/{instance_id}", "untag", f"remove tag {TAG_LINK} from {instance_id}"):
            call(
                "remove the link tag",
                self.c.ec2.delete_tags,
                Resources=[instance_id],
                Tags=[{"Key": TAG_LINK}],
            )


def with_link(inst: dict[str, Any], address: str) -> dict[str, Any]:
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
