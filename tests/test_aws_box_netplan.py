"""The AWS box router's plan without a kernel: routes and rules from a hand-made ``CloudState``
(what EC2 does with each kind of route), and the nft ruleset, kept as a golden file that the
real ``nft -c`` (check: the kernel parses and validates it, commits nothing) must accept in a
throwaway namespace."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from boxtools import REGION, need_root
from hacloud_aws.box.netplan import RULE_PREF, TABLE_BASE, RouteSpec, RuleSpec, plan
from hacloud_aws.box.netstate import NetworkState, Rule, SecurityGroup, layout_subnets
from hacloud_aws.box.state import CloudState, ElasticIp, Instance, Interface, Route, RouteTable

GOLDEN = Path(__file__).parent / "golden" / "aws-box-net" / "ruleset.nft"
SUBNET_IDS = {"a": "subnet-a", "b": "subnet-b", "c": "subnet-c"}
VIP = "198.51.100.10/32"


def _instance(iid: str, subnet: str, ip: str, mac: str, check: bool, ec2_state: str = "running") -> Instance:
    eni = Interface(f"eni-{iid[2:]}", subnet, (ip, ip[:-1] + "9"), mac, check, ("sg-pair",), None)
    return Instance(iid, ec2_state, f"{REGION}a", subnet, (eni,), None, "required", "enabled", 1)


def _state(
    check: bool = False, ec2_state: str = "running", faults: frozenset[str] = frozenset()
) -> NetworkState:
    node1 = _instance("i-1", "subnet-a", "192.0.2.4", "02:00:00:00:00:01", check, ec2_state)
    node2 = _instance("i-2", "subnet-b", "192.0.2.68", "02:00:00:00:00:02", False)
    local = Route("192.0.2.0/24", None, None, "local", True)
    igw = Route("0.0.0.0/0", None, None, "igw-1", False)
    vip = Route(VIP, "eni-1", None, None, False)
    tables = (
        RouteTable("rtb-a", ("subnet-a",), (igw, local, vip)),
        RouteTable("rtb-b", ("subnet-b",), (igw, local, vip)),
        RouteTable(
            "rtb-c", ("subnet-c",), (local, vip, Route("198.51.100.20/32", "eni-gone", None, None, False))
        ),
    )
    groups = (
        SecurityGroup(
            "sg-pair",
            (
                Rule("udp", 5405, 5406, None, "sg-pair"),
                Rule("tcp", 22, 22, "192.0.2.128/26", None),
                Rule("tcp", 80, 80, "0.0.0.0/0", None),
            ),
            (Rule("-1", None, None, "0.0.0.0/0", None),),
        ),
    )
    cloud = CloudState(
        REGION, (node1, node2), tables, (ElasticIp("eipalloc-1", "198.51.100.200", "eni-2"),), ()
    )
    return NetworkState(cloud, layout_subnets(SUBNET_IDS, REGION), groups, faults)


def test_routes_follow_each_table_and_blackhole_what_ec2_would_drop() -> None:
    p = plan(_state())
    a, c = TABLE_BASE, TABLE_BASE + 2
    assert RouteSpec(a, VIP, "br-a", "192.0.2.4") in p.routes  # overlay via the ENI's primary address
    assert RouteSpec(a, "0.0.0.0/0", "br-inet") in p.routes  # the internet gateway
    assert not [r for r in p.routes if r.table == c and r.destination == "0.0.0.0/0"]  # rtb-c has none
    assert RouteSpec(c, "198.51.100.20/32", blackhole=True) in p.routes  # its interface is gone
    assert (
        RuleSpec(RULE_PREF + 2, "br-c", c) in p.rules and RuleSpec(RULE_PREF + 1002, "br-c", None) in p.rules
    )
    checked = plan(_state(check=True))  # source/dest check on: EC2 drops what is not for the ENI
    assert RouteSpec(a, VIP, blackhole=True) in checked.routes
    stopped = plan(_state(ec2_state="stopped"))
    assert RouteSpec(a, VIP, blackhole=True) in stopped.routes
    stopping = plan(_state(ec2_state="stopping"))  # a stop begins with the OS shutting down: it serves
    assert RouteSpec(a, VIP, "br-a", "192.0.2.4") in stopping.routes
    assert "jump in_eni_1" in stopping.ruleset and "jump in_eni_1" not in stopped.ruleset


def test_the_ruleset_matches_its_golden_file(request: pytest.FixtureRequest) -> None:
    text = plan(_state(check=True, faults=frozenset({"partition", f"api_cut:{REGION}b"}))).ruleset
    if request.config.getoption("--update-golden"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "ruleset changed; review, then --update-golden"


@pytest.mark.skipif(
    not os.path.exists("/usr/sbin/nft") and not os.environ.get("HACLOUD_REQUIRE_TOOLS"),
    reason="nftables (nft) missing",
)
def test_nft_accepts_every_ruleset() -> None:
    need_root()
    name = f"hacnetc{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for text in (GOLDEN.read_text(), plan(_state()).ruleset, plan(_state(ec2_state="stopped")).ruleset):
            check = subprocess.run(
                ["ip", "netns", "exec", name, "nft", "-c", "-f", "-"],
                input=text,
                capture_output=True,
                text=True,
            )
            assert check.returncode == 0, check.stderr
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
