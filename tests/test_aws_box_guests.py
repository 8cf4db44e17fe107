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
from boxtools import REGION, Box
from hacloud_aws.box import guests
from hacloud_aws.tfstate import ebs_device_path

pytestmark = pytest.mark.lab


GIB = str(1024**3)


def _events(box: Box, since: float) -> list[str]:
    return [e["event"] for e in box.control(op="events", since=since)["events"]]


def _boot(box: Box, router: str, group: str) -> tuple[str, str]:
    """RunInstances boots a guest with moto's address and MAC; IMDS and the CA work inside."""
    inst = launch(box, group)
    iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
    mac = inst["NetworkInterfaces"][0]["MacAddress"]
    assert inst["State"]["Name"] == "pending"
    wait("running", lambda: box.state(iid) == "running", 60)
    assert box.control(op="guests")["guests"][iid]["power"] == "on"
    wait_ssh(box, router, ip)
    out = ssh(box, router, ip, "ip -br link show ens5; ip -br addr show ens5; hostname").stdout
    assert mac in out and f"{ip}/26" in out and f"ip-{ip.replace('.', '-')}" in out
    # the root disk is the COW layer; moto's root EBS volume is not a second disk
    assert ssh(box, router, ip, "ls /sys/block | grep ubd").stdout.split() == ["ubda"]
    imds = (
        "T=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
        'http://169.254.169.254/latest/api/token) && curl -sf -H "X-aws-ec2-metadata-token: $T" '
        "http://169.254.169.254/latest/meta-data/instance-id"
    )
    assert ssh(box, router, ip, imds).stdout.strip() == iid
    code = f"curl -s -o /dev/null -w '%{{http_code}}' https://ec2.{REGION}.amazonaws.com/"
    tls = ssh(box, router, ip, code)  # curl fails (exit 60, code 000) on an untrusted certificate
    assert tls.returncode == 0 and tls.stdout.strip() not in ("", "000"), tls
    return iid, ip


def _volume(box: Box, router: str, iid: str, ip: str) -> str:
    """Attach → the Nitro by-id name with the size; a detach of a disk in use is refused by the
    guest's kernel (said in the events) and done once the disk is free. Returns the size probe."""
    ec2 = box.client("ec2")
    vol = ec2.create_volume(Size=1, AvailabilityZone=REGION + "a")["VolumeId"]
    path = ebs_device_path(vol)
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    size = f"blockdev --getsize64 {path}"
    wait("by-id symlink", lambda: ssh(box, router, ip, size).stdout.strip() == GIB, 60, 0.5)
    since = time.time()
    assert (
        ssh(box, router, ip, f"mkfs.ext4 -q {path} && mkdir -p /mnt/v && mount {path} /mnt/v").returncode == 0
    )
    ec2.detach_volume(VolumeId=vol, InstanceId=iid)  # moto 5.2.5 fails (500) without InstanceId
    wait("detach refused", lambda: any("refused" in e for e in _events(box, since)), 30)
    assert ssh(box, router, ip, f"test -b {path}").returncode == 0
    assert ssh(box, router, ip, "umount /mnt/v").returncode == 0
    wait("detached", lambda: ssh(box, router, ip, f"test -e {path}").returncode == 1, 30, 0.5)
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    wait("attached again", lambda: ssh(box, router, ip, size).stdout.strip() == GIB, 60, 0.5)
    return size


def _stop_start(box: Box, router: str, iid: str, ip: str, size: str) -> None:
    """A default stop: ``stopping`` while the OS shuts down cleanly, then ``stopped`` and the
    process gone; start boots again with the attached volume."""
    ec2 = box.client("ec2")
    since = time.time()
    ec2.stop_instances(InstanceIds=[iid])
    assert box.state(iid) == "stopping"
    wait("stopped", lambda: box.state(iid) == "stopped", 120, 0.5)
    events = _events(box, since)
    assert "power button (cad)" in events and "guest off" in events
    assert not [e for e in events if e.startswith("killed")], events  # a clean shutdown
    off = box.control(op="guests")["guests"][iid]
    assert off["power"] == "off" and off["pid"] is None
    ec2.start_instances(InstanceIds=[iid])
    wait("running again", lambda: box.state(iid) == "running", 60)
    wait_ssh(box, router, ip)
    assert ssh(box, router, ip, size).stdout.strip() == GIB  # the volume, at boot


def _kill_and_terminate(box: Box, iid: str) -> None:
    """A frozen guest stopped with SkipOsShutdown is killed; terminate removes guest and COW."""
    ec2 = box.client("ec2")
    since = time.time()
    box.control(op="freeze", instance=iid)
    assert box.control(op="guests")["guests"][iid]["power"] == "frozen"
    ec2.stop_instances(InstanceIds=[iid], Force=True, SkipOsShutdown=True)
    wait("stopped (killed)", lambda: box.state(iid) == "stopped", 30, 0.2)
    events = _events(box, since)
    assert "killed" in events and "power button (cad)" not in events
    ec2.terminate_instances(InstanceIds=[iid])
    wait("terminated", lambda: box.state(iid) == "terminated", 30, 0.2)
    assert not guests.guest_dir(box.paths.root, iid).exists()


def test_instances_are_guests_from_run_to_terminate(tmp_path: Path) -> None:
    with guest_box(tmp_path / "aws-box") as (box, router):
        group = ssh_group(box)
        iid, ip = _boot(box, router, group)
        size = _volume(box, router, iid, ip)
        _stop_start(box, router, iid, ip, size)
        _kill_and_terminate(box, iid)
        other = launch(box, group)["InstanceId"]
        wait("second instance running", lambda: box.state(other) == "running", 60)
        pid = box.control(op="guests")["guests"][other]["pid"]
    # the box stopped: its guests with it (moto's state died with the daemon)
    assert pid is not None and not Path(f"/proc/{pid}").exists()
