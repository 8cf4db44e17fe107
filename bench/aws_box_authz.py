"""Benchmark: the AWS box's IAM judge (issue 18, WP2): what judging per resource ARN costs.
In-process: one ``judge()`` of StopInstances against hacloud's scoped policy. Over TLS: the same
call as an assumed-role session (``DryRun``, so nothing stops) allowed and refused, next to the
admin's DescribeInstances. Prints numbers, asserts nothing. Talks to 127.0.0.1 only.

Run: .venv/bin/python bench/aws_box_authz.py [CALLS]
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from botocore.exceptions import ClientError  # noqa: E402
from boxtools import REGION, Box  # noqa: E402
from hacloud_aws.box import authz, daemon, layout  # noqa: E402

ROLE = "bench-judge"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with contextlib.suppress(ClientError):  # DryRunOperation / UnauthorizedOperation: the answers timed
            call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def policy(instances: list[str], actions: list[str]) -> dict[str, Any]:
    arns = [f"arn:aws:ec2:{REGION}:{layout.ACCOUNT_ID}:instance/{i}" for i in instances]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"},
            {"Effect": "Allow", "Action": actions, "Resource": arns},
        ],
    }


def in_process(calls: int) -> None:
    req = authz.Request(
        "ec2", "StopInstances", REGION, layout.ACCOUNT_ID, "arn:aws:sts::x", {"InstanceId.1": ["i-a"]}
    )
    docs = [("p", policy(["i-a", "i-b"], ["ec2:StartInstances", "ec2:StopInstances"]))]
    start = time.perf_counter()
    for _ in range(calls * 10):
        authz.judge(req, docs)
    each = (time.perf_counter() - start) / (calls * 10) * 1e6
    print(f"judge() in-process, StopInstances vs hacloud's scoped policy: {each:.0f} us per request")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    in_process(calls)
    with tempfile.TemporaryDirectory() as tmp:
        box = Box(daemon.launch(daemon.BoxConfig(Path(tmp) / "judge", REGION)))
        try:
            iam, ec2 = box.client("iam"), box.client("ec2")
            nodes = [box.run_instance("a"), box.run_instance("b")]
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": box.admin["arn"]}, "Action": "sts:AssumeRole"}
                ],
            }
            arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
            creds = box.client("sts").assume_role(RoleArn=arn, RoleSessionName=nodes[0])["Credentials"]
            session = box.client(
                "ec2", key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["SessionToken"]
            )
            admin = timed(lambda: ec2.describe_instances(InstanceIds=nodes), calls)
            p50, p99 = pct(admin, 0.5), pct(admin, 0.99)
            print(f"admin DescribeInstances over TLS ({calls}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            for label, actions in (("allowed", ["ec2:StopInstances"]), ("refused", ["ec2:StartInstances"])):
                iam.put_role_policy(
                    RoleName=ROLE, PolicyName="p", PolicyDocument=json.dumps(policy(nodes, actions))
                )
                stop = timed(lambda: session.stop_instances(InstanceIds=[nodes[1]], DryRun=True), calls)
                print(f"session StopInstances DryRun {label} ({calls}): "
                      f"p50 {pct(stop, 0.5):.1f} ms, p99 {pct(stop, 0.99):.1f} ms")  # fmt: skip
        finally:
            daemon.stop(box.process)


if __name__ == "__main__":
    main()
