"""AWS volumes: one encrypted gp3 volume per node and spec volume, in the node's zone, attached
and named on the node by its id; never resized, never moved between zones; deleted by
teardown only with ``--delete-volumes``."""

from __future__ import annotations

from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.cloud import TAG_CLUSTER
from hacloud.spec.model import NodeSpec, VolumeSpec
from hacloud_aws.api import call, wait_for
from hacloud_aws.base import TAG_NODE, TAG_VOLUME, AwsBase, Site, attach_device, tags_of
from hacloud_aws.tfstate import ebs_device_path


def placeholder_device(node: str, volume: str) -> str:
    return f"/dev/disk/by-id/hacloud-placeholder-{node}-{volume}"


class Volumes(AwsBase):
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
                code="HAC667",
            )
        return dict(vols[0]) if vols else None

    def ensure_volumes(self, site: Site) -> None:
        """``site.volumes``: node -> volume name -> device path on the node (a placeholder for a
        volume a plan would create); planned nodes go in their subnet's zone."""
        zones = {
            n.name: site.subnet_az.get(s, "?")
            for n, s in zip(self.spec.nodes, self.opts.subnets, strict=False)
        }
        for node in self.spec.nodes:
            inst = site.instances.get(node.name)
            az = inst["Placement"]["AvailabilityZone"] if inst else zones.get(node.name, "?")
            site.volumes[node.name] = {}
            for index, vol in enumerate(self.spec.volumes):
                site.volumes[node.name][vol.name] = self._ensure_volume(node, index, vol, az, inst)

    def _ensure_volume(
        self, node: NodeSpec, index: int, vol: VolumeSpec, az: str, inst: dict[str, Any] | None
    ) -> str:
        if vol.name in node.volumes or vol.device:
            return node.volumes.get(vol.name) or vol.device or ""
        found = self.find_volume(node.name, vol.name)
        if found is None:
            if not self.change(
                f"volume/{node.name}/{vol.name}",
                "create",
                f"{node.name}: create gp3 volume {vol.name} of {vol.size_gib} GiB in {az}",
            ):
                return placeholder_device(node.name, vol.name)
            found = self._create_volume(node, vol, az)
        elif found["AvailabilityZone"] != az:
            raise HacloudError(
                f"{node.name}: volume {found['VolumeId']} ({vol.name}) is in "
                f"{found['AvailabilityZone']}, the instance in {az}; EBS volumes attach only "
                "within their zone",
                "snapshot it and restore into the node's zone, then move the hacloud tags to the copy",
                code="HAC668",
            )
        elif found["Size"] < vol.size_gib:
            self.ws.progress(
                f"{node.name}: volume {found['VolumeId']} has {found['Size']} GiB, the spec asks "
                f"{vol.size_gib}; hacloud never resizes data volumes (grow it with modify-volume)"
            )
        if inst is not None:
            self._attach(node.name, inst["InstanceId"], found, index, vol.name)
        return ebs_device_path(found["VolumeId"])

    def _create_volume(self, node: NodeSpec, vol: VolumeSpec, az: str) -> dict[str, Any]:
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
        return self._wait_volume(found["VolumeId"], "available")

    def _wait_volume(self, volume_id: str, state: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            vol = call("read a volume", self.c.ec2.describe_volumes, VolumeIds=[volume_id])["Volumes"][0]
            return dict(vol) if vol["State"] == state else None

        return wait_for(f"volume {volume_id} to be {state}", probe, timeout=300, sleep=self.sleep)

    def _attach(self, node: str, instance_id: str, vol: dict[str, Any], index: int, name: str) -> None:
        attached = [a for a in vol.get("Attachments", []) if a["State"] in ("attaching", "attached")]
        if any(a["InstanceId"] == instance_id for a in attached):
            return
        if attached:
            raise HacloudError(
                f"{node}: volume {vol['VolumeId']} is attached to {attached[0]['InstanceId']}, "
                f"not to {instance_id}",
                "detach it from that instance (it holds this node's data), then run `hacloud up` again",
                code="HAC669",
            )
        device = attach_device(index)
        if self.change(
            f"volume/{node}/{name}",
            "attach",
            f"{node}: attach {vol['VolumeId']} to {instance_id} as {device}",
        ):
            call(
                f"attach {node}'s volume",
                self.c.ec2.attach_volume,
                VolumeId=vol["VolumeId"],
                InstanceId=instance_id,
                Device=device,
            )
            self._wait_volume(vol["VolumeId"], "in-use")

    def discover_volumes(self) -> dict[str, dict[str, str]]:
        """Read-only: node -> volume name -> device path (placeholders for volumes not made)."""
        volumes: dict[str, dict[str, str]] = {}
        for node in self.spec.nodes:
            volumes[node.name] = {}
            for vol in self.spec.volumes:
                if vol.name in node.volumes or vol.device:
                    volumes[node.name][vol.name] = node.volumes.get(vol.name) or vol.device or ""
                    continue
                found = self.find_volume(node.name, vol.name)
                volumes[node.name][vol.name] = (
                    ebs_device_path(found["VolumeId"]) if found else placeholder_device(node.name, vol.name)
                )
        return volumes

    def teardown_volumes(self, delete_volumes: bool) -> None:
        """The tagged volumes, only with ``delete_volumes`` (detached first from a kept instance)."""
        tagged = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        for vol in call("find the volumes", self.c.ec2.describe_volumes, Filters=tagged)["Volumes"]:
            node = tags_of(vol.get("Tags")).get(TAG_NODE)
            if self.keeps(delete_volumes, f"volume {vol['VolumeId']} ({node} data)"):
                continue
            if self.change(f"volume/{vol['VolumeId']}", "delete", f"delete volume {vol['VolumeId']}"):
                # Still attached only to an instance hacloud did not make (and so kept).
                for a in vol.get("Attachments", []):
                    if a["State"] in ("attaching", "attached") and a["InstanceId"] not in self.doomed:
                        call(
                            "detach a volume",
                            self.c.ec2.detach_volume,
                            VolumeId=vol["VolumeId"],
                            InstanceId=a["InstanceId"],
                        )
                if vol["State"] != "available":
                    self._wait_volume(vol["VolumeId"], "available")
                call("delete a volume", self.c.ec2.delete_volume, VolumeId=vol["VolumeId"])
