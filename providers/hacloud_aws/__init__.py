"""The AWS provider: two EC2 instances in two zones, gp3 data volumes, a security group, an
instance profile for the agents, the overlay-IP route, and fence_aws.

boto3 is imported only when an operation needs AWS (install with `pip install 'hacloud[aws]'`);
planning and rendering work without it. The work is in :mod:`hacloud_aws.infra`; this module
maps the provider Protocol onto it.
"""

from __future__ import annotations

import shlex

from hacloud.errors import HacloudError
from hacloud.provision.changes import Change
from hacloud.provision.provider import (
    BaseProvider,
    Capabilities,
    NodeNeeds,
    NodeProbe,
    PowerState,
    Role,
    with_placeholder_links,
)
from hacloud.provision.terraform import Candidate, TfResource
from hacloud.spec.inventory import Inventory, NetworkInfo
from hacloud.spec.model import AwsEipVip, AwsFencing, AwsMoveIpVip, AwsOptions, Spec
from hacloud.spec.workspace import Workspace
from hacloud.verify.invariants import Finding

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


class AwsProvider(BaseProvider):
    name = "aws"
    capabilities = Capabilities(
        create_nodes=True,
        power_control=True,
        missing={"partition": "cutting the network between two instances would need NACL changes; not done"},
        faults=("fence", "power", "crash"),
        roles=frozenset({Role.TERRAFORM, Role.ACCOUNT}),
    )
    tracking = "issue #6 (AWS provider)"
    id_is_name = False

    def _infra(self, ws: Workspace, apply: bool = True):  # type: ignore[no-untyped-def]
        from hacloud_aws.api import clients
        from hacloud_aws.infra import Infra

        return Infra(ws, clients(region_of(ws.spec)), apply=apply)

    def planned_inventory(self, spec: Spec) -> Inventory:
        """The spec's nodes; where the spec names no links, two placeholder links, as `up` makes
        them (the private IP, and a secondary IP on the primary ENI for corosync link 1)."""
        return with_placeholder_links(super().planned_inventory(spec), spec)

    def check_environment(self) -> None:
        from hacloud_aws.api import require_boto3

        require_boto3()

    def discover(self, ws: Workspace) -> Inventory | None:
        inventory: Inventory | None = self._infra(ws, apply=False).discover()
        return inventory

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        """Instances, identity, security group, policy, volumes and routes in one pass (the
        volumes need the instances' zones, the policy their ids)."""
        inventory: Inventory = self._infra(ws).ensure()
        return inventory

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        return inventory  # made and attached by ensure_nodes

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str]:
        """(what `up` would create or change, the agents' IAM policy), changing nothing."""
        from hacloud_aws.iam import policy_json

        infra = self._infra(ws, apply=False)
        infra.ensure()
        assert infra.policy is not None
        return infra.changes, policy_json(infra.policy)

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        self._infra(ws).teardown(delete_volumes)

    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]:
        from hacloud_aws.tfstate import terraform_nodes

        return terraform_nodes(resources)

    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None:
        from hacloud_aws.tfstate import ebs_device_path

        if value is not None and value.startswith("vol-"):
            return ebs_device_path(value)
        return super().terraform_device(spec, node, volume, value)

    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[Change]:
        """The overlay routes (aws-vpc-move-ip) where Terraform made none; nothing else: the
        instance profile, security group and attributes are Terraform's (check --live says
        what is missing)."""
        infra = self._infra(ws, apply=apply)
        infra.adopt_routes(inventory)
        return list(infra.changes)

    def release(self, ws: Workspace, inventory: Inventory) -> list[Change]:
        infra = self._infra(ws)
        infra.release_routes()
        return list(infra.changes)

    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]:
        from hacloud_aws.preflight import live_audit

        return live_audit(self._infra(ws, apply=False), inventory)

    # -------------------------------------------------------------- power (fence-test)

    def power(self, ws: Workspace, node: str) -> PowerState:
        from hacloud_aws.api import call

        infra = self._infra(ws, apply=False)
        inst = infra.find_instance(ws.spec.node(node))
        if inst is None:
            return "unknown"
        state = call(f"read {node}", infra.c.ec2.describe_instances, InstanceIds=[inst["InstanceId"]])
        name = state["Reservations"][0]["Instances"][0]["State"]["Name"]
        return "on" if name == "running" else "off" if name == "stopped" else "unknown"

    def power_off(self, ws: Workspace, node: str) -> None:
        from hacloud_aws.api import call

        infra = self._infra(ws)
        inst = infra.find_instance(ws.spec.node(node))
        if inst is not None:
            # Force: no OS shutdown, as a fence would do it (fence_aws stops with Force=True).
            call(f"stop {node}", infra.c.ec2.stop_instances, InstanceIds=[inst["InstanceId"]], Force=True)

    def power_on(self, ws: Workspace, node: str) -> None:
        from hacloud_aws.api import call

        infra = self._infra(ws)
        inst = infra.find_instance(ws.spec.node(node))
        if inst is not None:
            call(f"start {node}", infra.c.ec2.start_instances, InstanceIds=[inst["InstanceId"]])

    def ssh_wait_seconds(self, spec: Spec) -> float:
        options = getattr(spec.provider, "options", None)
        return float(options.ssh_wait_seconds) if isinstance(options, AwsOptions) else 300.0

    # -------------------------------------------------------------- what the nodes need

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        return aws_node_needs(spec, inventory)


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
    return NodeNeeds(
        commands=("aws",) if vip_check else (),
        packages=AWS_PACKAGES,
        probes=(*probes, *([vip_check] if vip_check else [])),
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


provider = AwsProvider()
