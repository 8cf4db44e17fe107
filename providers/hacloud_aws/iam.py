"""The nodes' IAM identity: one role + instance profile with a least-privilege inline policy.

Contract: :func:`agent_policy` is pure and returns exactly the actions the cluster's agents
call (recorded against moto in tests/test_aws_agents.py), scoped to the two instances and the
listed route tables where EC2 allows resource-level permissions; ``Describe*`` actions cannot
be scoped and get ``"*"``. No static keys are ever made: the nodes use the instance profile.

Left out on purpose, with the reason:
- ``ec2:RebootInstances``: fence_aws reboots as stop + start, it never calls RebootInstances.
- ``ec2:DescribeTags``: in AWS's sample STONITH policy, but fence_aws filters
  DescribeInstances by instance id and never calls it.
- ``aws:SourceIp`` conditions: they made fence_aws time out (fence-agents #344).
"""

from __future__ import annotations

import json
from typing import Any

from hacloud.spec.model import AwsEipVip, AwsFencing, AwsMoveIpVip, Spec

POLICY_NAME = "hacloud-agents"
ASSUME_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def instance_arn(region: str, account: str, instance_id: str) -> str:
    return f"arn:{partition(region)}:ec2:{region}:{account}:instance/{instance_id}"


def route_table_arn(region: str, account: str, rtb: str) -> str:
    return f"arn:{partition(region)}:ec2:{region}:{account}:route-table/{rtb}"


def role_name(cluster: str) -> str:
    return f"hacloud-{cluster}"


def agent_policy(spec: Spec, region: str, account: str, instance_ids: list[str]) -> dict[str, Any]:
    """The inline policy for the agents ``spec`` uses (pure).

    ``instance_ids`` are the two nodes' ids (placeholders before they exist: `hacloud plan`)."""
    instances = [instance_arn(region, account, i) for i in instance_ids]
    statements: list[dict[str, Any]] = []
    describe: set[str] = set()
    if any(isinstance(m, AwsFencing) for m in spec.fencing):
        describe.add("ec2:DescribeInstances")
        statements.append(
            {
                "Sid": "FenceAwsPowerOnlyTheClusterNodes",
                "Effect": "Allow",
                "Action": ["ec2:StartInstances", "ec2:StopInstances"],
                "Resource": instances,
            }
        )
    vip = spec.vip
    if isinstance(vip, AwsMoveIpVip):
        describe.add("ec2:DescribeRouteTables")
        statements.append(
            {
                "Sid": "MoveIpOnlyTheListedRouteTables",
                "Effect": "Allow",
                "Action": ["ec2:ReplaceRoute"],
                "Resource": [route_table_arn(region, account, r) for r in vip.route_tables],
            }
        )
    if isinstance(vip, AwsEipVip):
        # heartbeat/awseip header: DescribeInstances, AssociateAddress, DescribeAddresses,
        # DisassociateAddress. Association is scoped to this EIP and the two instances;
        # the interface cannot be known before the instance exists.
        describe |= {"ec2:DescribeInstances", "ec2:DescribeAddresses"}
        p = partition(region)
        statements.append(
            {
                "Sid": "EipOnlyThisAddress",
                "Effect": "Allow",
                "Action": ["ec2:AssociateAddress", "ec2:DisassociateAddress"],
                "Resource": [
                    f"arn:{p}:ec2:{region}:{account}:elastic-ip/{vip.allocation_id}",
                    *instances,
                    f"arn:{p}:ec2:{region}:{account}:network-interface/*",
                ],
            }
        )
    if describe:
        statements.insert(
            0,
            {
                "Sid": "DescribeCannotBeScoped",
                "Effect": "Allow",
                "Action": sorted(describe),
                "Resource": "*",
            },
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2, sort_keys=True)


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether ``policy`` allows ``action`` on ``resource`` (Allow statements, exact or ``*``
    wildcards; the subset of IAM evaluation the generated policies use)."""
    from fnmatch import fnmatchcase

    for st in policy["Statement"]:
        if st.get("Effect") != "Allow":
            continue
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if any(fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatchcase(resource, r) for r in resources
        ):
            return True
    return False
