"""What the AWS agents need on the nodes, and the read-only probes `up` runs on each node before
fencing is enabled (and fence-test's preflight before any fault, for those ``before_faults``).

Contract: every probe is read-only on real AWS and in the emulated one. The permission probes
ask EC2 itself with a dry run (``--dry-run``: "If you have the required permissions, the error
response is DryRunOperation. Otherwise, it is UnauthorizedOperation", EC2 API reference), from
the node, with the node's own instance-profile credentials, for exactly the calls the agents
make: so a policy that names the wrong ARN, or lacks an action, fails here and not in a fence.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.provider import NodeNeeds, NodeProbe
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsEipVip, AwsFencing, AwsMoveIpVip, AwsOptions, Spec

# The AWS CLI (for the CLI agents) and boto3 (for fence_aws), per package manager.
AWS_PACKAGES = {
    "apt-get": "awscli python3-boto3 python3-requests",
    "dnf": "fence-agents-aws awscli2",
    "zypper": "aws-cli python3-boto3",
}


def region_of(spec: Spec) -> str:
    options = getattr(spec.provider, "options", None)
    if isinstance(options, AwsOptions):
        return options.region
    for method in spec.fencing:
        if isinstance(method, AwsFencing) and method.region:
            return method.region
    raise HacloudError("no AWS region in the spec", "set provider.options.region", code="HAC650")


def aws_node_needs(spec: Spec, inventory: Inventory) -> NodeNeeds:
    """Packages the AWS agents need and the probes run on each node before fencing is enabled.

    fence_aws stops the peer only after asking IMDS which instance it runs on, and silently
    does nothing when IMDS cannot be reached (testbed.md §3): so the first check is IMDS."""
    region = region_of(spec)
    ids = [n.id for n in inventory.nodes]
    q = shlex.quote
    probes = [_imds_check(ids)]
    if any(isinstance(m, AwsFencing) for m in spec.fencing):
        # Ids are validated on import, and quoted here as well (this line runs as root); the
        # first field of each `id,name,state` line is compared as a fixed string, not a regex.
        listed = " && ".join(f"printf '%s\\n' \"$out\" | cut -d, -f1 | grep -qxF -- {q(i)}" for i in ids)
        probes.append(
            NodeProbe(
                "aws.fence_list",
                "fence_aws -o list reaches the EC2 API and sees both instances",
                f"out=$(fence_aws -o list --region {q(region)}) && {listed}",
                "give the instance profile ec2:DescribeInstances (see `hacloud plan`), and let the node "
                "reach the EC2 API (NAT gateway or an ec2 VPC interface endpoint)",
            )
        )
    vip_check = _vip_check(spec, region)
    dry = permission_probe(spec, region, ids)
    if dry is not None:
        probes.append(dry)
    return NodeNeeds(
        commands=("aws",) if vip_check else (),
        packages=AWS_PACKAGES,
        probes=(*probes, *([vip_check] if vip_check else [])),
        name_hosts=True,  # EC2 names hosts ip-10-0-1-4; the instances are the cluster's
    )


def _imds_check(ids: list[str]) -> NodeProbe:
    """IMDSv2 answers with one of the cluster's instance ids."""
    q = shlex.quote
    imds = (
        "t=$(curl -sf -m 3 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
        "http://169.254.169.254/latest/api/token) && "
        'i=$(curl -sf -m 3 -H "X-aws-ec2-metadata-token: $t" '
        "http://169.254.169.254/latest/meta-data/instance-id) && "
        f'case "$i" in {"|".join(q(i) for i in ids)}) exit 0;; esac; echo "IMDS says $i"; exit 1'
    )
    return NodeProbe(
        "aws.imds",
        "instance metadata (IMDSv2) names this node's instance",
        imds,
        "fence_aws does nothing without IMDS: enable the metadata endpoint "
        "(aws ec2 modify-instance-metadata-options --http-endpoint enabled) and keep "
        "169.254.169.254 out of any proxy or firewall rule on the node",
    )


def _vip_check(spec: Spec, region: str) -> NodeProbe | None:
    """The AWS CLI, as the VIP agent calls it, reads what the agent moves (None: no CLI agent)."""
    q = shlex.quote
    if isinstance(spec.vip, AwsMoveIpVip):
        tables = " ".join(q(r) for r in spec.vip.route_tables)
        return NodeProbe(
            "aws.route_read",
            "the AWS CLI (as aws-vpc-move-ip calls it) reads the route tables",
            f"aws --profile default --region {q(region)} --output text ec2 describe-route-tables "
            f"--route-table-ids {tables} >/dev/null",
            "give the instance profile ec2:DescribeRouteTables, make sure /root/.aws/config has a "
            "[default] profile (hacloud installs it), and let the node reach the EC2 API",
        )
    if isinstance(spec.vip, AwsEipVip):
        return NodeProbe(
            "aws.eip_read",
            "the AWS CLI (as awseip calls it) reads the Elastic IP",
            f"aws --profile default --region {q(region)} --output text ec2 describe-addresses "
            f"--allocation-ids {q(spec.vip.allocation_id)} >/dev/null",
            "give the instance profile ec2:DescribeAddresses, make sure /root/.aws/config has a "
            "[default] profile (hacloud installs it), and let the node reach the EC2 API",
        )
    return None


IMDS_GET = 'curl -sf -m 3 -H "X-aws-ec2-metadata-token: $t" http://169.254.169.254/latest/meta-data/'
# The node's identity from IMDS (as the agents find it), exported for the dry run below.
IMDS_IDENTITY = (
    "t=$(curl -sf -m 3 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
    "http://169.254.169.254/latest/api/token) && "
    f"I=$({IMDS_GET}instance-id) && M=$({IMDS_GET}mac) && "
    f"E=$({IMDS_GET}network/interfaces/macs/$M/interface-id) && export I E && "
)
# One Python process asks EC2 every dry run with the instance-profile credentials botocore finds
# (fence_aws's own chain); "@instance"/"@eni" stand for this node's, from IMDS.
DRY_RUN = """
import json, os, sys
import boto3
from botocore.exceptions import ClientError
ec2 = boto3.client("ec2", region_name=sys.argv[1])
mine = {"@instance": os.environ["I"], "@eni": os.environ["E"]}
failed = []
for op, args in json.loads(sys.argv[2]):
    swap = lambda v: [mine.get(x, x) for x in v] if isinstance(v, list) else mine.get(v, v)
    args = {k: swap(v) for k, v in args.items()}
    try:
        getattr(ec2, op)(DryRun=True, **args)
        failed.append(op + ": the dry run was carried out")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") != "DryRunOperation":
            failed.append("%s: %s %s" % (op, error.get("Code"), error.get("Message", "")[:200]))
print("; ".join(failed))
sys.exit(1 if failed else 0)
"""


def _dry_runs(spec: Spec, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The calls the cluster's agents make, as (boto3 operation, arguments)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    if any(isinstance(m, AwsFencing) for m in spec.fencing):
        calls += [
            ("stop_instances", {"InstanceIds": ids, "Force": True}),
            ("start_instances", {"InstanceIds": ids}),
        ]
    if isinstance(spec.vip, AwsMoveIpVip):
        destination = f"{spec.vip.address}/32"
        calls += [
            (
                "replace_route",
                {"RouteTableId": r, "DestinationCidrBlock": destination, "NetworkInterfaceId": "@eni"},
            )
            for r in spec.vip.route_tables
        ]
    if isinstance(spec.vip, AwsEipVip):
        calls.append(
            ("associate_address", {"AllocationId": spec.vip.allocation_id, "InstanceId": "@instance"})
        )
    return calls


def permission_probe(spec: Spec, region: str, ids: list[str]) -> NodeProbe | None:
    """EC2 itself says, by dry runs from the node with its own role, that the agents may act."""
    calls = _dry_runs(spec, ids)
    if not calls or any(not i or not i.startswith("i-") for i in ids):
        return None  # nothing to ask, or the instances do not exist yet (a plan)
    q = shlex.quote
    return NodeProbe(
        "aws.permissions",
        "EC2 dry runs of the agents' calls (" + ", ".join(sorted({op for op, _ in calls})) + ") with the "
        "node's instance profile",
        IMDS_IDENTITY + f"python3 -c {q(DRY_RUN)} {q(region)} {q(json.dumps(calls))}",
        "give the instance profile what `hacloud plan` prints (`hacloud up` writes it: run it again), "
        "with the instance and route-table ARNs of this cluster",
        before_faults=True,
    )
