"""The AWS box's instance metadata service (issue 18, WP3), contract tests with the real clients.

Each "instance" is a namespace made here (``boxtools.instance_netns``): ``ens5`` with the ENI's
MAC and IPs, routed to the box's namespace (only ``lo`` and those veths), where the API
endpoint and IMDS listen. The clients are the stock ones, unmodified: curl, Debian's botocore
1.29 (``/usr/bin/python3``), the venv's boto3, ``/usr/bin/aws`` 2.9, ``/usr/sbin/fence_aws``,
and the resource agents ``aws-vpc-move-ip`` and ``awseip``. Expected values come from EC2's
own answers (DescribeInstances through the admin key), from the kernel (``/sys/class/net``) or
from the box's key file: never from IMDS itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from boxtools import (
    AWS_CLI,
    FENCE_AWS,
    IMDS_ADDRESS,
    REGION,
    Box,
    endpoint_netns,
    in_netns,
    instance_netns,
    running_box,
)
from hacloud_aws.box import layout

ROLE = "hacloud-imds-test"
OVERLAY = "198.51.100.10"
BASE = f"http://{IMDS_ADDRESS}/latest"
MOVE_IP = "/usr/lib/ocf/resource.d/heartbeat/aws-vpc-move-ip"
AWSEIP = "/usr/lib/ocf/resource.d/heartbeat/awseip"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    with endpoint_netns("imd") as name:
        yield name


@pytest.fixture(scope="module")
def box(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    with running_box(tmp_path_factory.mktemp("box") / layout.BOX_DIRNAME, netns=netns) as running:
        _instance_profile(running)
        yield running


def _instance_profile(box: Box) -> None:
    """The role the agents need, as an instance profile (Resource "*": this package tests IMDS,
    not the scoping of the policy, which is WP2's)."""
    iam = box.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "ec2:DescribeInstances", "ec2:DescribeRouteTables", "ec2:DescribeAddresses",
        "ec2:StopInstances", "ec2:StartInstances", "ec2:ReplaceRoute", "ec2:AssociateAddress",
        "ec2:DisassociateAddress", "sts:GetCallerIdentity"]}]}  # fmt: skip
    iam.put_role_policy(RoleName=ROLE, PolicyName="agents", PolicyDocument=json.dumps(allow))
    iam.create_instance_profile(InstanceProfileName=ROLE)
    iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)


def _launch(box: Box, subnet: str) -> str:
    fixed = box.info["layout"]
    res = box.client("ec2").run_instances(
        ImageId=fixed["ami"],
        MinCount=1,
        MaxCount=1,
        SubnetId=fixed["subnets"][subnet],
        InstanceType="t3.micro",
        KeyName=fixed["key_name"],
        IamInstanceProfile={"Name": ROLE},
        MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
    )
    return str(res["Instances"][0]["InstanceId"])


@pytest.fixture(scope="module")
def pair(box: Box, netns: str) -> Iterator[dict[str, str]]:
    """Two instances in two zones, each with its namespace: {"a": id, "b": id, "na": ns, "nb": ns}."""
    a, b = _launch(box, "a"), _launch(box, "b")
    with instance_netns(box, netns, a, "a") as na, instance_netns(box, netns, b, "b") as nb:
        yield {"a": a, "b": b, "na": na, "nb": nb}


def _env(**extra: str) -> dict[str, str]:
    """No key, no config: what the agents find is what IMDS hands out."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "AWS_PAGER": "",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **extra}  # fmt: skip


def _cli_env(box: Box, **extra: str) -> dict[str, str]:
    """The CLI's environment on a node: the box CA, and a ``default`` profile that holds no key
    (the agents run ``aws --profile default``; hacloud writes such a file on the nodes)."""
    config = box.paths.root.parent / "aws-config"
    if not config.exists():
        config.write_text("[default]\noutput = text\n")
    return _env(AWS_CA_BUNDLE=str(box.paths.ca_pem), AWS_CONFIG_FILE=str(config), **extra)


def curl(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl in ``ns``; stdout is the body, then a line with the HTTP status."""
    return in_netns(ns, ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", *args], _env())


def token(ns: str, ttl: str = "21600") -> str:
    res = curl(ns, "-X", "PUT", f"{BASE}/api/token", "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}")
    body, status = res.stdout.rsplit("\n", 1)
    assert status == "200", res
    return body


def get(ns: str, path: str, tok: str | None) -> tuple[str, str]:
    """(status, body) of GET /latest/<path>, with the token when given."""
    headers = ["-H", f"X-aws-ec2-metadata-token: {tok}"] if tok else []
    res = curl(ns, *headers, f"{BASE}/{path}")
    body, status = res.stdout.rsplit("\n", 1)
    return status, body


def described(box: Box, iid: str) -> dict[str, Any]:
    res = box.client("ec2").describe_instances(InstanceIds=[iid])
    inst: dict[str, Any] = res["Reservations"][0]["Instances"][0]
    return inst


# -- curl: the v2 token flow, v1, refusals ----------------------------------------------------


def test_curl_v2_answers_each_instance_its_own_facts(box: Box, pair: dict[str, str]) -> None:
    for side in ("a", "b"):
        ns, ec2 = pair[f"n{side}"], described(box, pair[side])
        eni = ec2["NetworkInterfaces"][0]
        kernel_mac = in_netns(ns, ["cat", "/sys/class/net/ens5/address"], _env()).stdout.strip()
        tok = token(ns)
        expected = {
            "meta-data/instance-id": ec2["InstanceId"],
            "meta-data/local-ipv4": ec2["PrivateIpAddress"],
            "meta-data/mac": kernel_mac,
            "meta-data/placement/availability-zone": ec2["Placement"]["AvailabilityZone"],
            "meta-data/placement/region": REGION,
            "meta-data/ami-id": ec2["ImageId"],
            "meta-data/instance-type": "t3.micro",
            f"meta-data/network/interfaces/macs/{kernel_mac}/interface-id": eni["NetworkInterfaceId"],
            f"meta-data/network/interfaces/macs/{kernel_mac}/subnet-id": ec2["SubnetId"],
            f"meta-data/network/interfaces/macs/{kernel_mac}/vpc-id": ec2["VpcId"],
            f"meta-data/network/interfaces/macs/{kernel_mac}/local-ipv4s": ec2["PrivateIpAddress"],
            "meta-data/iam/security-credentials/": ROLE,
            "meta-data/public-keys/0/openssh-key": box.paths.ssh_key.with_name(
                box.paths.ssh_key.name + ".pub"
            )
            .read_text()
            .strip(),
        }
        for path, value in expected.items():
            assert get(ns, path, tok) == ("200", value), path
        assert get(ns, "meta-data/network/interfaces/macs/", tok) == ("200", f"{kernel_mac}/")
        assert get(ns, "meta-data/public-keys/", tok) == ("200", f"0={box.info['layout']['key_name']}")
        doc = json.loads(get(ns, "dynamic/instance-identity/document", tok)[1])
        seen = (doc["instanceId"], doc["region"], doc["availabilityZone"], doc["privateIp"])
        zone = ec2["Placement"]["AvailabilityZone"]
        assert seen == (ec2["InstanceId"], REGION, zone, ec2["PrivateIpAddress"])
        info = json.loads(get(ns, "meta-data/iam/info", tok)[1])
        profile = box.client("iam").get_instance_profile(InstanceProfileName=ROLE)["InstanceProfile"]
        assert (info["Code"], info["InstanceProfileArn"]) == ("Success", profile["Arn"])
        assert get(ns, "meta-data/no-such-thing", tok)[0] == "404"


def test_tokens_ttl_proxy_and_other_instances(box: Box, pair: dict[str, str]) -> None:
    na, nb = pair["na"], pair["nb"]
    put = ["-X", "PUT", f"{BASE}/api/token"]
    for bad in ("0", "21601", "x"):
        res = curl(na, *put, "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {bad}")
        assert res.stdout.endswith("\n400"), bad
    assert curl(na, *put).stdout.endswith("\n400")  # no TTL at all
    proxied = curl(
        na, *put, "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", "-H", "X-Forwarded-For: 1.2.3.4"
    )
    assert proxied.stdout.endswith("\n403")
    # HttpTokens=required: no token, a made-up token, or instance b's token: 401 on a
    assert get(na, "meta-data/instance-id", None)[0] == "401"
    assert get(na, "meta-data/instance-id", "made-up")[0] == "401"
    assert get(na, "meta-data/instance-id", token(nb))[0] == "401"
    short = token(na, "1")
    assert get(na, "meta-data/instance-id", short) == ("200", pair["a"])
    subprocess.run(["sleep", "1.2"], check=True)
    assert get(na, "meta-data/instance-id", short)[0] == "401"  # expired
    # the request log: who asked what and what they got, never a token
    text = (box.paths.root / "imds.jsonl").read_text()
    assert short not in text and "made-up" not in text
    seen = [json.loads(line) for line in text.splitlines()]
    mine = [(e["instance"], e["method"], e["path"], e["status"]) for e in seen[-3:]]
    assert mine == [(pair["a"], "PUT", "/latest/api/token", 200),
                    (pair["a"], "GET", "/latest/meta-data/instance-id", 200),
                    (pair["a"], "GET", "/latest/meta-data/instance-id", 401)]  # fmt: skip
    assert all(e["source"] == described(box, pair["a"])["PrivateIpAddress"] for e in seen[-3:])


def test_v1_and_a_disabled_endpoint_follow_the_metadata_options(box: Box, pair: dict[str, str]) -> None:
    ec2, na, iid = box.client("ec2"), pair["na"], pair["a"]
    try:
        ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="optional")
        assert get(na, "meta-data/instance-id", None) == ("200", iid)  # IMDSv1
        assert get(na, "meta-data/instance-id", "made-up")[0] == "401"  # a bad v2 token still is
        ec2.modify_instance_metadata_options(InstanceId=iid, HttpEndpoint="disabled")
        res = curl(na, f"{BASE}/meta-data/instance-id")
        assert res.returncode in (52, 56) and res.stdout.endswith("\n000"), res  # reset, no answer
    finally:
        ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required", HttpEndpoint="enabled")
    assert get(na, "meta-data/instance-id", None)[0] == "401"


def test_a_stopped_instance_has_no_metadata_service(box: Box, pair: dict[str, str]) -> None:
    ec2 = box.client("ec2")
    ec2.stop_instances(InstanceIds=[pair["b"]])
    try:
        res = curl(
            pair["nb"], "-X", "PUT", f"{BASE}/api/token", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"
        )
        assert res.returncode in (52, 56), res
    finally:
        ec2.start_instances(InstanceIds=[pair["b"]])
    assert token(pair["nb"])


def test_secondary_and_overlay_sources_are_the_instance(box: Box, netns: str, pair: dict[str, str]) -> None:
    ec2, na, iid = box.client("ec2"), pair["na"], pair["a"]
    eni = described(box, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    secondary = "192.0.2.40"
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, PrivateIpAddresses=[secondary])
    peer = f"ra{__import__('os').getpid()}"[:15]
    for ip in (secondary, OVERLAY):
        subprocess.run(["ip", "-n", na, "addr", "add", f"{ip}/32", "dev", "ens5"], check=True)
        subprocess.run(["ip", "-n", netns, "route", "add", f"{ip}/32", "dev", peer], check=True)
    tok_args = ["-X", "PUT", f"{BASE}/api/token", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"]
    res = curl(na, "--interface", secondary, *tok_args)
    assert res.stdout.endswith("\n200"), res
    # the overlay IP is the instance's only while a route table sends it there
    assert curl(na, "--interface", OVERLAY, *tok_args).returncode in (52, 56)
    rtb = box.info["layout"]["route_tables"]["a"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=f"{OVERLAY}/32", NetworkInterfaceId=eni)
    try:
        res = curl(na, "--interface", OVERLAY, *tok_args)
        assert res.stdout.endswith("\n200"), res
        tok = res.stdout.rsplit("\n", 1)[0]
        assert get(na, "meta-data/instance-id", tok) == ("200", iid)
    finally:
        ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock=f"{OVERLAY}/32")
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni, PrivateIpAddresses=[secondary])
        for ip in (secondary, OVERLAY):
            subprocess.run(["ip", "-n", na, "addr", "del", f"{ip}/32", "dev", "ens5"], check=False)
            subprocess.run(["ip", "-n", netns, "route", "del", f"{ip}/32"], check=False)


def test_hop_limit_keeps_the_token_from_a_container_behind_the_instance(
    box: Box, pair: dict[str, str]
) -> None:
    """A "container" one more hop away, NATed by the instance (as Docker does): with EC2's
    default hop limit 1 its token never arrives; with 2 it does (EC2 user guide, "Configure
    the instance metadata options": the PUT response's IP TTL)."""
    na, ctr = pair["na"], f"hactest-ctr{__import__('os').getpid()}"
    run = lambda *argv: subprocess.run(list(argv), check=True)  # noqa: E731
    run("ip", "netns", "add", ctr)
    try:
        run("ip", "-n", ctr, "link", "add", "eth0", "type", "veth", "peer", "name", "docker0", "netns", na)
        run("ip", "-n", ctr, "addr", "add", "172.17.0.2/16", "dev", "eth0")
        run("ip", "-n", ctr, "link", "set", "eth0", "up")
        run("ip", "-n", ctr, "route", "add", "default", "via", "172.17.0.1")
        run("ip", "-n", na, "addr", "add", "172.17.0.1/16", "dev", "docker0")
        run("ip", "-n", na, "link", "set", "docker0", "up")
        run("ip", "netns", "exec", na, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nat = "table ip nat { chain post { type nat hook postrouting priority 100; "
        nat += "oifname ens5 masquerade; }; }"
        subprocess.run(["ip", "netns", "exec", na, "nft", "-f", "-"], input=nat, text=True, check=True)
        put = ["-X", "PUT", f"{BASE}/api/token", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"]
        args = ["curl", "-sS", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}", *put]
        res = in_netns(ctr, args, _env())
        assert res.returncode == 28, res  # timed out: the answer died one hop short
        box.client("ec2").modify_instance_metadata_options(InstanceId=pair["a"], HttpPutResponseHopLimit=2)
        assert in_netns(ctr, args, _env()).stdout == "200"
    finally:
        box.client("ec2").modify_instance_metadata_options(InstanceId=pair["a"], HttpPutResponseHopLimit=1)
        subprocess.run(["ip", "netns", "del", ctr], check=False)
        subprocess.run(["ip", "netns", "exec", na, "nft", "flush", "ruleset"], check=False)


# -- SDKs and the CLI: credentials from IMDS only ---------------------------------------------

FETCH = """
import json, sys
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
creds = InstanceMetadataFetcher(timeout=1, num_attempts=1).retrieve_iam_role_credentials()
region = InstanceMetadataRegionFetcher(timeout=1, num_attempts=1).retrieve_region()
import boto3
sts = boto3.client("sts", region_name=region, endpoint_url="https://sts.%s.amazonaws.com" % region,
                   aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"],
                   aws_session_token=creds["token"])
import botocore
print(json.dumps({"role": creds["role_name"], "key": creds["access_key"], "region": region,
                  "arn": sts.get_caller_identity()["Arn"], "botocore": botocore.__version__}))
"""


@pytest.mark.parametrize("python", [SYSTEM_PYTHON, "venv"])
def test_botocore_fetcher_gets_working_role_keys(box: Box, pair: dict[str, str], python: str) -> None:
    import sys

    exe = sys.executable if python == "venv" else python
    res = in_netns(pair["na"], [exe, "-c", FETCH], _cli_env(box))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["botocore"].startswith("1.29.") == (python == SYSTEM_PYTHON)
    assert (out["role"], out["region"]) == (ROLE, REGION)
    assert out["key"].startswith("ASIA")  # an STS session key, not a user's
    assert out["arn"] == f"arn:aws:sts::{layout.ACCOUNT_ID}:assumed-role/{ROLE}/{pair['a']}"


def test_stock_cli_uses_only_the_instance_role(box: Box, pair: dict[str, str]) -> None:
    argv = [AWS_CLI, "sts", "get-caller-identity", "--output", "json"]
    res = in_netns(pair["nb"], argv, _cli_env(box, AWS_DEFAULT_REGION=REGION))
    assert res.returncode == 0, res.stderr
    arn = json.loads(res.stdout)["Arn"]
    assert arn == f"arn:aws:sts::{layout.ACCOUNT_ID}:assumed-role/{ROLE}/{pair['b']}"


def test_fence_aws_finds_itself_and_fences_the_peer(box: Box, pair: dict[str, str]) -> None:
    """Debian's fence_aws with no key: its own id from IMDS, the role's keys from IMDS."""

    def fence(action: str, plug: str = "") -> subprocess.CompletedProcess[str]:
        stdin = f"action={action}\nregion={REGION}\npower_timeout=10\n" + (f"plug={plug}\n" if plug else "")
        return in_netns(pair["na"], [FENCE_AWS], _cli_env(box), stdin=stdin)

    listed = fence("list")
    assert listed.returncode == 0, listed.stderr
    assert {pair["a"], pair["b"]} <= {line.split(",")[0] for line in listed.stdout.split()}
    assert fence("status", pair["b"]).returncode == 0
    off = fence("off", pair["b"])
    assert off.returncode == 0 and "Powered OFF" in off.stdout, off.stderr
    assert described(box, pair["b"])["State"]["Name"] == "stopped"  # EC2's own state
    box.client("ec2").start_instances(InstanceIds=[pair["b"]])


def test_aws_vpc_move_ip_maps_its_mac_to_its_eni(box: Box, pair: dict[str, str]) -> None:
    """The agent reads the MAC from /sys/class/net/<interface>/address (aws-vpc-move-ip L340),
    asks IMDS for macs/<MAC>/interface-id (L355) and points the route table at it (L371);
    ``monitor`` with lookup_type NetworkInterfaceId compares the table with that lookup again
    (L258-262). (With the default InstanceId it reads the route's InstanceId, which moto leaves
    empty for a route to an interface: a network quirk, not IMDS's.)"""
    rtb = box.info["layout"]["route_tables"]["c"]
    ec2 = box.client("ec2")
    eni = {s: described(box, pair[s])["NetworkInterfaces"][0]["NetworkInterfaceId"] for s in ("a", "b")}
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=f"{OVERLAY}/32", NetworkInterfaceId=eni["b"])
    env = _cli_env(box, OCF_ROOT="/usr/lib/ocf", OCF_RESKEY_ip=OVERLAY, OCF_RESKEY_routing_table=rtb,
                   OCF_RESKEY_interface="ens5", OCF_RESKEY_region=REGION,
                   OCF_RESKEY_lookup_type="NetworkInterfaceId")  # fmt: skip
    try:
        res = in_netns(pair["na"], [MOVE_IP, "start"], env)
        assert res.returncode == 0, res.stdout + res.stderr
        routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
        target = [
            r.get("NetworkInterfaceId") for r in routes if r.get("DestinationCidrBlock") == f"{OVERLAY}/32"
        ]
        assert target == [eni["a"]]
        assert in_netns(pair["na"], [MOVE_IP, "monitor"], env).returncode == 0
    finally:
        ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock=f"{OVERLAY}/32")
        subprocess.run(["ip", "-n", pair["na"], "addr", "del", f"{OVERLAY}/32", "dev", "ens5"], check=False)


def test_awseip_finds_the_eni_holding_its_private_ip(box: Box, pair: dict[str, str]) -> None:
    """awseip with private_ip_address walks macs/, macs/<mac>/local-ipv4s, macs/<mac>/interface-id
    (awseip L152-157) and associates the Elastic IP with that interface."""
    fixed, ec2 = box.info["layout"], box.client("ec2")
    ec2_b = described(box, pair["b"])
    env = _cli_env(box, OCF_ROOT="/usr/lib/ocf", AWS_DEFAULT_REGION=REGION, OCF_RESKEY_api_delay="0",
                   OCF_RESKEY_elastic_ip=fixed["eip_address"],
                   OCF_RESKEY_allocation_id=fixed["eip_allocation"],
                   OCF_RESKEY_private_ip_address=ec2_b["PrivateIpAddress"])  # fmt: skip
    try:
        res = in_netns(pair["nb"], [AWSEIP, "start"], env)
        assert res.returncode == 0, res.stdout + res.stderr
        addr = ec2.describe_addresses(AllocationIds=[fixed["eip_allocation"]])["Addresses"][0]
        assert addr["NetworkInterfaceId"] == ec2_b["NetworkInterfaces"][0]["NetworkInterfaceId"]
        assert addr["PrivateIpAddress"] == ec2_b["PrivateIpAddress"]
    finally:
        addr = ec2.describe_addresses(AllocationIds=[fixed["eip_allocation"]])["Addresses"][0]
        if "AssociationId" in addr:
            ec2.disassociate_address(AssociationId=addr["AssociationId"])
