"""Benchmark: the AWS box's instances as UML guests (issue 18, WP5). One box with its router and
guests, one instance: RunInstances → ``running`` → SSH answers; AttachVolume → the Nitro by-id
name in the guest; StopInstances (default: graceful) → ``stopped``; StartInstances → SSH;
StopInstances with SkipOsShutdown → ``stopped``. Prints seconds, asserts nothing beyond the
steps succeeding. Needs root and the lab lock (one lab on the machine at a time); everything runs
in namespaces the box makes and on 127.0.0.1.

Run: flock /tmp/hacloud-lab.lock .venv/bin/python bench/aws_box_guests.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from boxguests import guest_box, launch, ssh, ssh_group, wait, wait_ssh  # noqa: E402
from boxtools import REGION  # noqa: E402
from hacloud_aws.tfstate import ebs_device_path  # noqa: E402


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="hacloud-bench-") as tmp,
        guest_box(Path(tmp) / "aws-box") as (box, router),
    ):
        ec2 = box.client("ec2")
        group = ssh_group(box)
        t0 = time.monotonic()
        inst = launch(box, group)
        iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
        running = wait("running", lambda: box.state(iid) == "running", 60, 0.05)
        sshable = wait_ssh(box, router, ip)
        print(
            f"RunInstances → running: {running:.2f} s; → SSH: {time.monotonic() - t0:.1f} s (+{sshable:.1f})"
        )
        vol = ec2.create_volume(Size=1, AvailabilityZone=REGION + "a")["VolumeId"]
        t0 = time.monotonic()
        ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
        probe = f"test -b {ebs_device_path(vol)}"
        wait("by-id", lambda: ssh(box, router, ip, probe).returncode == 0, 60, 0.2)
        print(f"AttachVolume → by-id symlink in the guest: {time.monotonic() - t0:.2f} s (SSH poll included)")
        t0 = time.monotonic()
        ec2.stop_instances(InstanceIds=[iid])
        stopped = wait("stopped", lambda: box.state(iid) == "stopped", 150, 0.1)
        print(f"StopInstances (graceful: power button → poweroff) → stopped: {stopped:.1f} s")
        t0 = time.monotonic()
        ec2.start_instances(InstanceIds=[iid])
        wait_ssh(box, router, ip)
        print(f"StartInstances → SSH: {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        ec2.stop_instances(InstanceIds=[iid], SkipOsShutdown=True)
        killed = wait("stopped", lambda: box.state(iid) == "stopped", 60, 0.05)
        print(f"StopInstances SkipOsShutdown (hypervisor delay 0) → stopped: {killed:.2f} s")


if __name__ == "__main__":
    main()
