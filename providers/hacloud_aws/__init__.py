"""The AWS provider: two EC2 instances in two zones, gp3 data volumes, a security group, an
instance profile for the agents, the overlay-IP route, and fence_aws.

boto3 is imported only when an operation needs AWS (install with `pip install 'hacloud[aws]'`);
planning and rendering work without it. The work is in :mod:`hacloud_aws.infra`; this module
maps the provider Protocol onto it.
"""

from __future__ import annotations

from dataclasses import replace

from hacloud.provision.changes import Change
from hacloud.provision.endpoint import Endpoint
from hacloud.provision.provider import (
    BaseProvider,
    Capabilities,
    NodeNeeds,
    PowerState,
    Role,
    with_placeholder_links,
)
from hacloud.provision.terraform import Candidate, TfResource
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import AwsOptions, Spec
from hacloud.spec.workspace import Workspace
from hacloud.verify.invariants import Finding
from hacloud_aws.probes import AWS_PACKAGES, aws_node_needs, region_of
from hacloud_aws.site import AWS_FAULTS, BOX_FAULTS, NO_PARTITION, site_of

__all__ = ["AWS_PACKAGES", "AwsProvider", "aws_node_needs", "provider", "region_of"]


class AwsProvider(BaseProvider):
    name = "aws"
    capabilities = Capabilities(
        create_nodes=True,
        power_control=True,
        missing={"partition": NO_PARTITION},
        faults=AWS_FAULTS,
        roles=frozenset({Role.TERRAFORM, Role.ACCOUNT}),
    )
    tracking = "issue #6 (AWS provider)"
    id_is_name = False

    def capabilities_for(self, spec: Spec) -> Capabilities:
        """An emulated AWS can also cut the path between the zones (fence-test --method partition)."""
        options = getattr(spec.provider, "options", None)
        if isinstance(options, AwsOptions) and options.emulated is not None:
            missing = {k: v for k, v in self.capabilities.missing.items() if k != "partition"}
            return replace(self.capabilities, faults=BOX_FAULTS, missing=missing)
        return self.capabilities

    def _infra(self, ws: Workspace, apply: bool = True, start: bool = False):  # type: ignore[no-untyped-def]
        """The infrastructure phases on ``ws``'s site; ``start``: make the site reachable first
        (an emulated AWS is started by the first command that changes or plans something)."""
        from hacloud_aws.api import clients
        from hacloud_aws.infra import Infra

        site = site_of(ws)
        if start:
            site.ensure(ws.progress)
        return Infra(ws, clients(region_of(ws.spec), site.api()), apply=apply)

    def planned_inventory(self, spec: Spec) -> Inventory:
        """The spec's nodes; where the spec names no links, two placeholder links, as `up` makes
        them (the private IP, and a secondary IP on the primary ENI for corosync link 1)."""
        return with_placeholder_links(super().planned_inventory(spec), spec)

    def check_environment(self) -> None:
        from hacloud_aws.api import require_boto3

        require_boto3()

    def discover(self, ws: Workspace) -> Inventory | None:
        if not site_of(ws).running():
            return None  # an emulated AWS that is not running holds no instance
        inventory: Inventory | None = self._infra(ws, apply=False).discover()
        return inventory

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        """Instances, identity, security group, policy, volumes and routes in one pass (the
        volumes need the instances' zones, the policy their ids)."""
        inventory: Inventory = self._infra(ws, start=True).ensure()
        return inventory

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        return inventory  # made and attached by ensure_nodes

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str]:
        """(what `up` would create or change, the agents' IAM policy), changing nothing."""
        from hacloud_aws.iam import policy_json

        infra = self._infra(ws, apply=False, start=True)
        infra.ensure()
        assert infra.policy is not None
        return infra.changes, policy_json(infra.policy)

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        site = site_of(ws)
        if site.running():
            self._infra(ws).teardown(delete_volumes)
        site.teardown(delete_volumes, ws.progress)

    # -------------------------------------------------------------- where things run

    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint:
        """The spec's nodes[].ssh settings, started in the site's namespace (the box's admin
        namespace in an emulated AWS; this machine's own on AWS)."""
        return replace(super().endpoint(ws, node), namespace=site_of(ws).ssh_namespace())

    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]:
        return site_of(ws).client_argv(argv)

    def freeze(self, ws: Workspace, node: str) -> bool:
        site = site_of(ws)
        if not site.can_freeze:  # real AWS: fence-test crashes the kernel instead; EC2 not asked
            return False
        inst = self._infra(ws, apply=False).find_instance(ws.spec.node(node))
        return site.freeze(inst["InstanceId"]) if inst is not None else False

    def partition(self, ws: Workspace, cut: bool) -> None:
        site_of(ws).partition(cut)

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
            # pull the plug: no OS shutdown at all (SkipOsShutdown); Force as fence_aws sends it
            call(
                f"stop {node}",
                infra.c.ec2.stop_instances,
                InstanceIds=[inst["InstanceId"]],
                Force=True,
                SkipOsShutdown=True,
            )

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


provider = AwsProvider()
