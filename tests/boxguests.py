"""Harness for the AWS box with guests (lab tier, bench): a box with ``--router --guests`` and
SSH into a guest from the router's admin namespace, as hacloud does.

Network rule: SSH and API calls go to 127.0.0.1 or into the namespaces the box built."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from boxtools import REGION, Box, need_root
from hacloud_aws.box import daemon, guests

ADMIN_CIDR = "192.0.2.128/26"  # subnet C: the admin namespace's (net.ADMIN_ADDRESS)


@contextlib.contextmanager
def guest_box(root: Path, graceful_timeout_s: float = 90.0) -> Iterator[tuple[Box, str]]:
    """A box whose instances are guests; yields it and its router's name."""
    need_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    guests.ensure_image(root, lambda _m: None)
    router = f"hacg{os.getpid() % 100000}"
    config = daemon.BoxConfig(
        root, REGION, router=router, guests=True, graceful_timeout_s=graceful_timeout_s, memory_mib=512
    )
    proc = daemon.launch(config)
    try:
        yield Box(proc), router
    finally:
        daemon.stop(proc, timeout=60)


def ssh_group(box: Box) -> str:
    """A security group of the layout's VPC that lets the admin subnet in on SSH."""
    ec2 = box.client("ec2")
    vpc = box.info["layout"]["vpc"]
    group = ec2.create_security_group(GroupName="admin-ssh", Description="admin ssh", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN_CIDR}]}
        ],
    )
    return str(group)


def launch(box: Box, group: str, subnet: str = "a") -> dict[str, Any]:
    fixed = box.info["layout"]
    res = box.client("ec2").run_instances(
        ImageId=fixed["ami"],
        MinCount=1,
        MaxCount=1,
        SubnetId=fixed["subnets"][subnet],
        InstanceType="t3.micro",
        KeyName=fixed["key_name"],
        SecurityGroupIds=[group],
    )
    instance: dict[str, Any] = res["Instances"][0]
    return instance


def ssh(
    box: Box, router: str, address: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", f"{router}-admin", "ssh", "-i", str(box.paths.ssh_key)]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    argv += ["-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR", f"root@{address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> float:
    """Seconds until ``check()`` is truthy; AssertionError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def wait_ssh(box: Box, router: str, address: str, timeout: float = 180) -> float:
    return wait(f"SSH to {address}", lambda: ssh(box, router, address, "true").returncode == 0, timeout, 1.0)
