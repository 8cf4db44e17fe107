"""The on-prem provider: hosts and block devices the user already has, named in the spec.

Nodes, addresses and devices all come from the spec (the spec loader insists on them), so the
planned inventory is the real one. The SSH deploy engine (hacloud.deploy.engine) converges them; the
lab is this provider with nodes hacloud made, so the same engine is proven on the lab.
"""

from __future__ import annotations

from hacloud.errors import HacloudError
from hacloud.provision.provider import BaseProvider, Capabilities, NodeNeeds, PowerState
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsFencing, Spec
from hacloud.spec.workspace import Workspace


class OnpremProvider(BaseProvider):
    name = "onprem"
    capabilities = Capabilities(
        create_nodes=False,
        power_control=True,
        missing={
            "create_nodes": "on-prem nodes are the hosts you list in the spec",
            "power_control": "needs a fence_ipmilan or fence_redfish BMC per node (SBD has no switch)",
            "partition": "cutting the links between servers needs their switches; hacloud drives none",
            "terraform": "on-prem hosts are named in the spec; Terraform-made hosts come through "
            "--tf-map or a hacloud_inventory output",
            "account": "on-prem hosts have no cloud account to read",
        },
        faults=("fence", "power", "crash"),
    )
    tracking = "issue #4 (deploy engine, on-prem provider)"

    def discover(self, ws: Workspace) -> Inventory | None:
        return self.planned_inventory(ws.spec)

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        """The hosts exist already; the deploy engine checks that it can reach them."""
        return self.planned_inventory(ws.spec)

    def power(self, ws: Workspace, node: str) -> PowerState:
        """The BMC's answer, through the same agent the cluster fences with."""
        from hacloud_onprem.power import OFF, ON, run_agent

        rc = run_agent(ws, node, "status")
        return "on" if rc == ON else "off" if rc == OFF else "unknown"

    def power_off(self, ws: Workspace, node: str) -> None:
        from hacloud_onprem.power import run_agent

        run_agent(ws, node, "off")

    def power_on(self, ws: Workspace, node: str) -> None:
        from hacloud_onprem.power import run_agent

        run_agent(ws, node, "on")

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        """EC2 instances brought as on-prem hosts: the AWS CLI where an agent in the CIB calls it
        (``aws`` must exist, or the VIP never starts), and the AWS packages for fence_aws."""
        from hacloud_aws import AWS_PACKAGES

        from hacloud.render.files import aws_cli_agents
        from hacloud.spec.profiles import load_profile

        profile = load_profile(spec.profile_name).with_overrides(spec.overrides)
        cli = bool(aws_cli_agents(spec, inventory, profile))
        if not cli and not any(isinstance(m, AwsFencing) for m in spec.fencing):
            return NodeNeeds()
        return NodeNeeds(commands=("aws",) if cli else (), packages=AWS_PACKAGES)

    def login_failed(self, ws: Workspace, error: HacloudError) -> HacloudError:
        """The hosts are the user's own, nothing was built: the SSH error itself says what to fix."""
        return error

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        raise HacloudError(
            "hacloud does not take down on-prem hosts it did not create",
            "to stop the cluster run `hacloud ssh NODE -- systemctl stop pacemaker corosync` on each node",
            code="HAC649",
        )


provider = OnpremProvider()
