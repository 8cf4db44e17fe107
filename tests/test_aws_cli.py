"""`hacloud plan | up --provider aws | down` as a user runs them, against moto.

Everything runs inside a network namespace made here (only `lo`): moto listens on its
loopback, and the instances' 192.0.2.x addresses have no route, so the SSH step fails at once
without a packet leaving (moto's instances do not boot: `up` must say which step failed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from awstools import aws_env, free_port, moto_server

HERE = Path(__file__).resolve().parent
HACLOUD = [sys.executable, "-m", "hacloud"]

SETUP = """
import json, sys, boto3, yaml
sys.path.insert(0, {here!r})
from awstools import REGION, aws_spec_doc, byo_vpc
acct = byo_vpc(boto3.client("ec2", region_name=REGION))
doc = aws_spec_doc(acct, ssh_wait_seconds=2)
open({spec!r}, "w").write(yaml.safe_dump(doc))
"""

CENSUS = """
import json, sys, boto3
sys.path.insert(0, {here!r})
from awstools import REGION, census
print(json.dumps(census(boto3.client("ec2", region_name=REGION), boto3.client("iam", region_name=REGION))))
"""


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    if os.geteuid() != 0:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS"):
            pytest.fail("needs root for a network namespace")
        pytest.skip("needs root for a network namespace")
    work = tmp_path_factory.mktemp("awscli")
    name = f"hactest-awscli{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    try:
        with moto_server(work / "moto.log", netns=name, port=free_port()) as url:
            env = {**os.environ, **aws_env(url)}
            yield name, env, work
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def inns(ns: tuple[str, dict[str, str], Path], *argv: str) -> subprocess.CompletedProcess[str]:
    name, env, work = ns
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, env=env, cwd=work, timeout=600
    )


def account_census(ns: tuple[str, dict[str, str], Path]) -> dict[str, Any]:
    res = inns(ns, sys.executable, "-c", CENSUS.format(here=str(HERE)))
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_plan_up_down_as_a_user_runs_them(ns: tuple[str, dict[str, str], Path]) -> None:
    work = ns[2]
    spec = str(work / "hacloud.yaml")
    res = inns(ns, sys.executable, "-c", SETUP.format(here=str(HERE), spec=spec))
    assert res.returncode == 0, res.stderr
    before = account_census(ns)

    plan = inns(ns, *HACLOUD, "plan", "--spec", spec)
    assert plan.returncode == 0, plan.stderr
    assert "infrastructure: node1: create instance" in plan.stdout
    assert "instance profile's policy" in plan.stdout
    policy = json.loads(plan.stdout[plan.stdout.index("{") : plan.stdout.rindex("}") + 1])
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert actions >= {"ec2:StopInstances", "ec2:ReplaceRoute"}
    assert "<node1 instance id>" in json.dumps(policy)
    assert account_census(ns) == before  # plan changed nothing

    wrong = inns(ns, *HACLOUD, "up", "-y", "--provider", "azure", "--spec", spec)
    assert wrong.returncode == 2 and "--provider azure" in wrong.stderr
    assert account_census(ns) == before

    up = inns(ns, *HACLOUD, "up", "-y", "--provider", "aws", "--spec", spec)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "infrastructure is in place" in up.stderr
    assert "step 'reach the nodes over SSH' failed: node1" in up.stderr
    assert "ssh.jump" in up.stderr  # says what to do next
    made = account_census(ns)
    assert len(made["instances"]) == 2 and len(made["volumes"]) == 2 and made["roles"] == ["hacloud-prod-db"]

    again = inns(ns, *HACLOUD, "up", "-y", "--provider", "aws", "--spec", spec)
    assert again.returncode == 1
    assert account_census(ns) == made  # a re-run reuses everything
    assert "create instance" not in again.stderr

    live = inns(ns, *HACLOUD, "check", "--live", "--json", "--spec", spec)
    assert live.returncode == 0, live.stdout + live.stderr
    codes = {f["code"] for f in json.loads(live.stdout) if f["severity"] == "ok"}
    assert {"aws.route", "aws.source_dest_check", "aws.instance_profile", "aws.zones"} <= codes

    down = inns(ns, *HACLOUD, "down", "-y", "--spec", spec)
    assert down.returncode == 0, down.stderr
    assert "data disks kept" in down.stdout
    gone = account_census(ns)
    assert gone["instances"] == [] and gone["roles"] == [] and gone["profiles"] == []
    assert gone["volumes"] == made["volumes"]
