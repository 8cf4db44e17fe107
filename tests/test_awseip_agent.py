"""Debian's awseip agent, run for real against moto with the /root/.aws/config and the parameters
hacloud renders (tests/awseip_driver.py, inside a network namespace made here): the Elastic IP
moves between the two instances; without the config file the same agent cannot start (the bug
issue 15 item 4 fixed); the IAM policy allows every call it made."""

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
AGENT = Path("/usr/lib/ocf/resource.d/heartbeat/awseip")
MOTO_ACCOUNT = "123456789012"  # moto's default account id

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = [t for t in ("aws", "ip", "curl") if shutil.which(t) is None]
    missing += [] if AGENT.exists() else ["awseip (resource-agents)"]
    problem = ", ".join(missing) if missing else ("not root" if os.geteuid() != 0 else "")
    if problem:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS"):
            pytest.fail(f"missing: {problem} (bash .ci/setup installs them)")
        pytest.skip(f"missing: {problem}")
    work = tmp_path_factory.mktemp("awseip")
    return run_driver_in_netns(HERE / "awseip_driver.py", work, "eip")


def test_rendered_config_gives_awseip_its_profile_and_region(run: dict[str, Any]) -> None:
    for node in ("node1", "node2"):
        (config,) = run["configs"][node]
        lines = [line.strip() for line in config.splitlines() if not line.startswith("#")]
        assert lines[0] == "[default]" and f"region = {REGION}" in lines


def test_awseip_moves_the_address_between_the_nodes(run: dict[str, Any]) -> None:
    """Each run's exit code, and which instance moto says holds the Elastic IP afterwards."""
    node1, node2 = (n["id"] for n in run["inventory"]["nodes"])
    steps = [(s["node"], s["action"], s["rc"], s["holder"]) for s in run["eip"]]
    assert steps == [
        ("node1", "monitor", 7, None),
        ("node1", "start", 0, node1),
        ("node1", "monitor", 0, node1),
        ("node1", "stop", 0, None),
        ("node2", "monitor", 7, None),
        ("node2", "start", 0, node2),
        ("node2", "monitor", 0, node2),
        ("node2", "stop", 0, None),
    ], run["eip"]


def test_without_the_config_the_agent_cannot_start(run: dict[str, Any]) -> None:
    (start,) = run["without_config"]
    assert start["rc"] != 0 and start["holder"] is None
    assert "The config profile (default) could not be found" in start["stderr"]


def test_a_config_without_region_works_with_aws_cli_v2(run: dict[str, Any]) -> None:
    """What hacloud writes when the spec names no region (HAC111 warns): CLI v2 asks IMDS."""
    node1 = run["inventory"]["nodes"][0]["id"]
    assert [(s["action"], s["rc"], s["holder"]) for s in run["no_region"]] == [
        ("start", 0, node1),
        ("stop", 0, None),
    ]


def test_node_check_reads_the_address_and_fails_without_the_config(run: dict[str, Any]) -> None:
    assert run["checks"]["aws.eip_read"]["rc"] == 0, run["checks"]
    assert run["checks"]["aws.eip_read without config"]["rc"] != 0


def test_iam_policy_allows_every_awseip_call(run: dict[str, Any]) -> None:
    spec = spec_of(run["spec"])
    ids = [n["id"] for n in run["inventory"]["nodes"]]
    policy = iam.agent_policy(spec, REGION, MOTO_ACCOUNT, ids)
    eip = f"arn:aws:ec2:{REGION}:{MOTO_ACCOUNT}:elastic-ip/{run['allocation_id']}"
    calls = {a for a, _ in run["calls"]}
    assert calls == {"AssociateAddress", "DisassociateAddress", "DescribeAddresses", "DescribeInstances"}
    for action, params in run["calls"]:
        resources = ["*"]
        if action == "AssociateAddress":
            resources = [eip, iam.instance_arn(REGION, MOTO_ACCOUNT, params["InstanceId"])]
        elif action == "DisassociateAddress":
            resources = [eip]
        for resource in resources:
            assert iam.allows(policy, f"ec2:{action}", resource), (action, resource)
    other = f"arn:aws:ec2:{REGION}:{MOTO_ACCOUNT}:elastic-ip/eipalloc-0fffffffffffffff0"
    assert not iam.allows(policy, "ec2:AssociateAddress", other)
