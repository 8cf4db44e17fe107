"""Harness of the AWS box's API tier: a running box daemon, clients signed with its admin key,
and a throwaway network namespace (only ``lo``) where the real endpoint names resolve to the
box, as they will in the guests.

Network rule: everything here talks to 127.0.0.1 or to addresses inside a namespace the test
created; the namespace has no route out, so anything else fails with ENETUNREACH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hacloud_aws.box import control, daemon, layout, pki

REGION = "eu-central-1"
AWS_CLI = "/usr/bin/aws"
FENCE_AWS = "/usr/sbin/fence_aws"


@dataclass
class Box:
    """A running box (``daemon.launch``) and what a client needs to use it."""

    process: daemon.BoxProcess

    @property
    def paths(self) -> layout.BoxPaths:
        return self.process.paths

    @property
    def info(self) -> dict[str, Any]:
        return self.process.info

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.info['port']}"

    @property
    def admin(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.paths.admin_json.read_text())
        return data

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for the host listener, over TLS verified with the box CA."""
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            verify=kwargs.pop("verify", str(self.paths.ca_pem)),
            aws_access_key_id=kwargs.pop("key", self.admin["access_key_id"]),
            aws_secret_access_key=kwargs.pop("secret", self.admin["secret_access_key"]),
            aws_session_token=kwargs.pop("token", None),
            **kwargs,
        )

    def control(self, **request: Any) -> dict[str, Any]:
        return control.call(self.paths.sock, request)

    def actions(self, since: int = 0) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.control(op="actions", since=since)["entries"]
        return entries

    def next_seq(self) -> int:
        return len(self.actions())

    def cli_env(self) -> dict[str, str]:
        """Environment for the stock AWS CLI and fence_aws: the admin key, the box CA, no
        config files and no instance metadata (nothing else to fall back to)."""
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.paths.root.parent),
            "AWS_ACCESS_KEY_ID": self.admin["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.admin["secret_access_key"],
            "AWS_CA_BUNDLE": str(self.paths.ca_pem),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }

    def run_instance(self, subnet: str = "a") -> str:
        ec2 = self.client("ec2")
        fixed = self.info["layout"]
        res = ec2.run_instances(
            ImageId=fixed["ami"],
            MinCount=1,
            MaxCount=1,
            SubnetId=fixed["subnets"][subnet],
            InstanceType="t3.micro",
        )
        return str(res["Instances"][0]["InstanceId"])

    def state(self, instance: str) -> str:
        res = self.client("ec2").describe_instances(InstanceIds=[instance])
        return str(res["Reservations"][0]["Instances"][0]["State"]["Name"])


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS"):
            pytest.fail("needs root for a network namespace")
        pytest.skip("needs root for a network namespace")


@contextlib.contextmanager
def endpoint_netns(tag: str) -> Iterator[str]:
    """A namespace with only ``lo`` holding the box's endpoint address, where ``ip netns exec``
    resolves the real endpoint names to it (``/etc/netns/<ns>/hosts``, bind-mounted over
    ``/etc/hosts`` by iproute2, ip-netns(8))."""
    need_root()
    name = f"hactest-{tag}{os.getpid()}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "-n", name, "addr", "add", f"{layout.ENDPOINT_ADDRESS}/32", "dev", "lo"], check=True
        )
        # where the box's IMDS listens (imds.py), as on the router of a VPC
        subprocess.run(["ip", "-n", name, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo"], check=True)
        etc.mkdir(parents=True)
        hosts = " ".join(pki.endpoint_names(REGION))
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{layout.ENDPOINT_ADDRESS} {hosts}\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


@contextlib.contextmanager
def running_box(root: Path, netns: str | None = None, router: str | None = None) -> Iterator[Box]:
    """Launch a box on ``root`` (inside ``netns`` too, at the endpoint address, port 443; with
    ``router``, building that router namespace and listening there) and stop it afterwards."""
    proc = daemon.launch(daemon.BoxConfig(root, REGION, netns=netns, router=router))
    try:
        yield Box(proc)
    finally:
        daemon.stop(proc)


def in_netns(
    netns: str, argv: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


IMDS_ADDRESS = "169.254.169.254"


@contextlib.contextmanager
def instance_netns(box: Box, router: str, instance_id: str, tag: str = "i") -> Iterator[str]:
    """A namespace standing in for ``instance_id``'s OS: ``ens5`` with the ENI's MAC and private
    IPs, a default route to the subnet's router address (.1, as in a VPC) on a veth into
    ``router`` (the box's namespace, where the API endpoint and IMDS listen), and the real
    endpoint names in its hosts file. The box's IMDS knows it by its source IP."""
    import ipaddress

    cloud = box.control(op="state")["state"]
    inst = next(i for i in cloud["instances"] if i["id"] == instance_id)
    eni = inst["interfaces"][0]
    ids = box.info["layout"]["subnets"]
    cidr = next(c for n, c, _ in layout.SUBNETS if ids[n] == eni["subnet"])
    net = ipaddress.IPv4Network(cidr)
    gateway = str(net.network_address + 1)
    name = f"hactest-{tag}{os.getpid()}"
    peer = f"r{tag}{os.getpid()}"[:15]
    etc = Path("/etc/netns") / name
    run = lambda *argv: subprocess.run(list(argv), check=True)  # noqa: E731
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "link", "add", "ens5", "type", "veth", "peer", "name", peer, "netns", router)
        run("ip", "-n", name, "link", "set", "ens5", "address", eni["mac"], "up")
        for ip in eni["private_ips"]:
            run("ip", "-n", name, "addr", "add", f"{ip}/{net.prefixlen}", "dev", "ens5")
        run("ip", "-n", name, "route", "add", "default", "via", gateway)
        run("ip", "-n", router, "addr", "add", f"{gateway}/32", "dev", peer)
        run("ip", "-n", router, "link", "set", peer, "up")
        for ip in eni["private_ips"]:
            run("ip", "-n", router, "route", "add", f"{ip}/32", "dev", peer)
        etc.mkdir(parents=True)
        hosts = " ".join(pki.endpoint_names(REGION))
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{layout.ENDPOINT_ADDRESS} {hosts}\n")
        # no DNS server in the box (names come from hosts): without this, the host's resolver
        # would be asked through the router, which drops it, and each lookup waits 10 s
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def fence_aws(
    box: Box, netns: str, action: str, plug: str, power_timeout: int = 5
) -> subprocess.CompletedProcess[str]:
    """Debian's stock fence_aws in ``netns``, with the admin key on stdin (as Pacemaker passes
    parameters: never on a command line other users can read)."""
    env = box.cli_env()
    stdin = (
        f"action={action}\nregion={REGION}\nplug={plug}\npower_timeout={power_timeout}\n"
        f"access_key={env['AWS_ACCESS_KEY_ID']}\nsecret_key={env['AWS_SECRET_ACCESS_KEY']}\n"
    )
    return in_netns(netns, [FENCE_AWS], env, stdin=stdin)
