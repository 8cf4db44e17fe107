"""Debian's fence_aws and aws-vpc-move-ip, run for real against moto with the parameters hacloud
renders (tests/aws_agents_driver.py, inside a network namespace made here), and the generated
IAM policy checked against every call those agents made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from awstools import REGION, run_driver_in_netns
from conftest import spec_of
from hacloud_aws import iam

HERE = Path(__file__).resolve().parent
MOTO_ACCOUNT = "123456789012"  # moto's default account id

pytestmark = pytest.mark.tools


def _need_tools() -> None:
    missing = [t for t in ("fence_aws", "aws", "ip", "curl") if shutil.which(t) is None]
    if not Path("/usr/lib/ocf/resource.d/heartbeat/aws-vpc-move-ip").exists():
        missing.append("aws-vpc-move-ip")
    problem = ", ".join(missing) if missing else ("not root" if os.geteuid() != 0 else "")
    if problem:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS"):
            pytest.fail(f"missing: {problem} (bash .ci/setup installs them)")
        pytest.skip(f"missing: {problem}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _need_tools()
    work = tmp_path_factory.mktemp("agents")
    return run_driver_in_netns(HERE / "aws_agents_driver.py", work, "aws")


def test_fence_aws_lists_reads_and_switches_the_peer(run: dict[str, Any]) -> None:
    node1, node2 = run["inventory"]["nodes"]
    assert run["fence_params"] == {"region": REGION, "power_timeout": "600"}
    fa = run["fence_aws"]
    listed = fa["list"][0]["stdout"].splitlines()
    assert sorted(line.rstrip(",") for line in listed) == sorted([node1["id"], node2["id"]])
    # status/off/status/on/status/monitor, with the instance state read back from moto
    assert [(r["rc"], r["state"]) for r in fa["status"]] == [(0, "running"), (2, "stopped"), (0, "running")]
    assert (fa["off"][0]["rc"], fa["off"][0]["state"]) == (0, "stopped")
    assert (fa["on"][0]["rc"], fa["on"][0]["state"]) == (0, "running")
    assert fa["monitor"][0]["rc"] == 0
    # off asked IMDS (v2: token first) which instance it runs on before stopping the peer
    assert "PUT http://169.254.169.254/latest/api/token" in run["imds_requests_fence"]
    stops = [c for c in run["calls"] if c[0] == "StopInstances"]
    assert [c[1]["InstanceId.1"] for c in stops] == [node2["id"]] and stops[0][1]["Force"] == "true"


def test_aws_vpc_move_ip_moves_the_route_in_every_table(run: dict[str, Any]) -> None:
    node1, node2 = run["inventory"]["nodes"]
    eni1, eni2 = node1["extra"]["eni"], node2["extra"]["eni"]
    tables = run["route_tables"]
    assert run["vip_params"]["routing_table"] == ",".join(tables)
    assert run["vip_params"]["lookup_type"] == "NetworkInterfaceId"
    # the interface read from the nodes (ens5 holds their addresses), not the agent's eth0: with
    # eth0 the agent moved the route and then failed its `ip addr add` (start rc 1)
    assert [n["facts"]["primary_interface"] for n in (node1, node2)] == ["ens5", "ens5"]
    assert run["vip_params"]["interface"] == "ens5"
    steps = [
        (s["node"], s["action"], s["rc"], s["address"], set(s["routes"].values())) for s in run["move_ip"]
    ]
    assert steps == [
        ("node2", "monitor", 7, False, {eni1}),  # hacloud pointed the route at node1
        ("node2", "start", 0, True, {eni2}),
        ("node2", "monitor", 0, True, {eni2}),
        ("node2", "stop", 0, False, {eni2}),  # stop drops the address, the route stays
        ("node2", "monitor", 7, False, {eni2}),
        ("node1", "start", 0, True, {eni1}),
        ("node1", "monitor", 0, True, {eni1}),
    ]
    assert all(set(s["routes"]) == set(tables) for s in run["move_ip"])


def _resource(action: str, params: dict[str, str]) -> list[str]:
    if action in ("StartInstances", "StopInstances", "RebootInstances"):
        ids = [v for k, v in params.items() if k.startswith("InstanceId.")]
        return [iam.instance_arn(REGION, MOTO_ACCOUNT, i) for i in ids]
    if action in ("ReplaceRoute", "CreateRoute", "DeleteRoute"):
        return [iam.route_table_arn(REGION, MOTO_ACCOUNT, params["RouteTableId"])]
    return ["*"]


def test_iam_policy_allows_every_recorded_call_and_nothing_more(run: dict[str, Any]) -> None:
    spec = spec_of(run["spec"])
    ids = [n["id"] for n in run["inventory"]["nodes"]]
    policy = iam.agent_policy(spec, REGION, MOTO_ACCOUNT, ids)
    calls = [(a, p) for a, p in run["calls"]]
    assert calls, "the agents made no AWS call"
    for action, params in calls:
        for resource in _resource(action, params):
            assert iam.allows(policy, f"ec2:{action}", resource), (action, resource)
    granted = {a for st in policy["Statement"] for a in st["Action"]}
    assert granted == {f"ec2:{a}" for a, _ in calls}  # no action the agents did not call
    assert not any("*" in a for a in granted)
    # scoped: power only on the two nodes, routes only in the listed tables
    other = iam.instance_arn(REGION, MOTO_ACCOUNT, "i-0ffffffffffffffff")
    assert not iam.allows(policy, "ec2:StopInstances", other)
    assert not iam.allows(policy, "ec2:ReplaceRoute", iam.route_table_arn(REGION, MOTO_ACCOUNT, "rtb-0fff"))
    for node_id in ids:
        assert iam.allows(policy, "ec2:StopInstances", iam.instance_arn(REGION, MOTO_ACCOUNT, node_id))


def test_node_checks_pass_on_a_node_and_catch_a_missing_imds(run: dict[str, Any]) -> None:
    """The commands `up` runs on each node before enabling fencing, run as node1 with the same
    shims: all pass; without IMDS the IMDS check fails (fence_aws would do nothing)."""
    assert set(run["checks"]) == {"aws.imds", "aws.fence_list", "aws.route_read"}
    assert all(c["rc"] == 0 for c in run["checks"].values()), run["checks"]
    assert run["checks_without_imds"]["aws.imds"] != 0
    assert run["checks_without_imds"]["aws.fence_list"] == 0  # list does not need IMDS: only off does
    foreign = run["check_foreign_instance"]
    assert foreign["rc"] != 0 and "i-0ffffffffffffffff" in foreign["out"]
