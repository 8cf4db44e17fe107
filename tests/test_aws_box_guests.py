"""The AWS box's instances as real UML guests (lab tier: root, UML, the lab image). One box, one
instance, sequential steps: RunInstances boots a guest with moto's IP and MAC; IMDS and the
box CA work from inside it; an EBS attach shows under the Nitro by-id name; a default stop is a
clean shutdown with ``stopping`` in between; start boots again; a frozen guest stopped with
SkipOsShutdown is killed; terminate removes the guest and its root disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from boxguests import guest_box, launch, ssh, ssh_group, wait, wait_ssh
from boxtools import REGION
from hacloud_aws.box import guests
from hacloud_aws.tfstate import ebs_device_path

pytestmark = pytest.mark.lab


def test_instances_are_guests_from_run_to_terminate(tmp_path: Path) -> None:
    with guest_box(tmp_path / "aws-box") as (box, router):
        ec2 = box.client("ec2")
        inst = launch(box, ssh_group(box))
        iid, ip, mac = (
            inst["InstanceId"],
            inst["PrivateIpAddress"],
            inst["NetworkInterfaces"][0]["MacAddress"],
        )
        assert inst["State"]["Name"] == "pending"
        wait("running", lambda: box.state(iid) == "running", 60)
        assert box.control(op="guests")["guests"][iid]["power"] == "on"
        wait_ssh(box, router, ip)
        out = ssh(box, router, ip, "ip -br link show ens5; ip -br addr show ens5; hostname").stdout
        assert mac in out and f"{ip}/26" in out and f"ip-{ip.replace('.', '-')}" in out

        imds = (
            "T=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
            'http://169.254.169.254/latest/api/token) && curl -sf -H "X-aws-ec2-metadata-token: $T" '
            "http://169.254.169.254/latest/meta-data/instance-id"
        )
        assert ssh(box, router, ip, imds).stdout.strip() == iid
        tls = ssh(
            box, router, ip, f"curl -s -o /dev/null -w '%{{http_code}}' https://ec2.{REGION}.amazonaws.com/"
        )
        assert tls.returncode == 0 and tls.stdout.strip() not in ("", "000"), (
            tls
        )  # an HTTP answer, TLS verified

        vol = ec2.create_volume(Size=1, AvailabilityZone=REGION + "a")["VolumeId"]
        ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
        size = f"blockdev --getsize64 {ebs_device_path(vol)}"
        wait("by-id symlink", lambda: ssh(box, router, ip, size).stdout.strip() == str(1024**3), 60, 0.5)

        since = time.time()
        ec2.stop_instances(InstanceIds=[iid])
        assert box.state(iid) == "stopping"
        wait("stopped", lambda: box.state(iid) == "stopped", 120, 0.5)
        events = [e["event"] for e in box.control(op="events", since=since)["events"]]
        assert "power button (cad)" in events and "guest off" in events
        assert not [e for e in events if e.startswith("killed")], events  # a clean shutdown
        off = box.control(op="guests")["guests"][iid]
        assert off["power"] == "off" and off["pid"] is None

        ec2.start_instances(InstanceIds=[iid])
        wait("running again", lambda: box.state(iid) == "running", 60)
        wait_ssh(box, router, ip)
        assert ssh(box, router, ip, size).stdout.strip() == str(1024**3)  # the volume, at boot

        since = time.time()
        box.control(op="freeze", instance=iid)
        assert box.control(op="guests")["guests"][iid]["power"] == "frozen"
        ec2.stop_instances(InstanceIds=[iid], Force=True, SkipOsShutdown=True)
        wait("stopped (killed)", lambda: box.state(iid) == "stopped", 30, 0.2)
        events = [e["event"] for e in box.control(op="events", since=since)["events"]]
        assert "killed" in events and "power button (cad)" not in events

        ec2.terminate_instances(InstanceIds=[iid])
        wait("terminated", lambda: box.state(iid) == "terminated", 30, 0.2)
        assert not guests.guest_dir(box.paths.root, iid).exists()
