"""The Azure provider: two VMs in two zones (or an availability set) with system-assigned
managed identities, a managed data disk per VM at LUN N, a network security group, a Standard
internal load balancer for the VIP (azure-lb probe, HA ports, floating IP) and a custom role
that lets each identity read, power off and start the cluster's VMs (fence_azure_arm, msi).

The Azure SDK is imported only when an operation needs Azure (`pip install 'hacloud[azure]'`).
hacloud names each VM after its node and attaches volume N at LUN N, so the planned inventory
needs placeholders only for addresses. The work is in :mod:`hacloud_azure.infra`.
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
from hacloud.spec.model import AzureFencing, AzureOptions, Spec
from hacloud.spec.workspace import Workspace
from hacloud.verify.invariants import Finding


def options_of(spec: Spec) -> AzureOptions:
    options = getattr(spec.provider, "options", None)
    if not isinstance(options, AzureOptions):
        raise HacloudError(
            "the spec does not use the azure provider", "set provider.kind: azure", code="HAC675"
        )
    return options


class AzureProvider(BaseProvider):
    name = "azure"
    capabilities = Capabilities(
        create_nodes=True,
        power_control=True,
        missing={"partition": "cutting the network between two VMs would need NSG changes; not done"},
        faults=("fence", "power", "crash"),
        roles=frozenset({Role.TERRAFORM, Role.ACCOUNT}),
    )
    tracking = "issue #7 (Azure provider)"

    def default_device(self, spec: Spec, index: int) -> str | None:
        # hacloud attaches volume N at LUN N; the azure udev rules publish this path.
        return f"/dev/disk/azure/scsi1/lun{index}"

    def _infra(self, ws: Workspace, apply: bool = True):  # type: ignore[no-untyped-def]
        from hacloud_azure.api import clients
        from hacloud_azure.infra import Infra

        return Infra(ws, clients(options_of(ws.spec)), apply=apply)

    def planned_inventory(self, spec: Spec) -> Inventory:
        """The spec's nodes; where the spec names no links, two placeholder links, as `up` makes
        them (the NIC's primary ip configuration, and hacloud-link1 for corosync link 1)."""
        return with_placeholder_links(super().planned_inventory(spec), spec)

    def check_environment(self) -> None:
        from hacloud_azure.api import require_sdk

        require_sdk()

    def discover(self, ws: Workspace) -> Inventory | None:
        inventory: Inventory | None = self._infra(ws, apply=False).discover()
        return inventory

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        inventory: Inventory = self._infra(ws).ensure()
        return inventory

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        return inventory  # made and attached by ensure_nodes (a zonal disk needs its VM's zone)

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str]:
        import json

        from hacloud_azure.infra import FENCE_ACTIONS

        infra = self._infra(ws, apply=False)
        infra.ensure()
        role = {"actions": list(FENCE_ACTIONS), "notActions": [], "assignableScopes": ["<the two VMs>"]}
        return infra.changes, json.dumps(role, indent=2)

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        self._infra(ws).teardown(delete_volumes)

    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]:
        from hacloud_azure.tfstate import terraform_nodes

        return terraform_nodes(resources)

    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[Change]:
        """The fence role and its assignments where no role Terraform (or anyone) assigned
        covers them; nothing else: the VMs, identities, disks and load balancer are
        Terraform's (check --live says what is missing)."""
        infra = self._infra(ws, apply=apply)
        infra.adopt_role()
        return list(infra.changes)

    def release(self, ws: Workspace, inventory: Inventory) -> list[Change]:
        infra = self._infra(ws)
        infra.release_role()
        return list(infra.changes)

    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]:
        from hacloud_azure.preflight import live_audit

        return live_audit(self._infra(ws, apply=False), inventory)

    def ssh_wait_seconds(self, spec: Spec) -> float:
        return 300.0

    # -------------------------------------------------------------- power (fence-test)

    def power(self, ws: Workspace, node: str) -> PowerState:
        from hacloud_azure.api import call

        infra = self._infra(ws, apply=False)
        name = infra.vm_name(ws.spec.node(node))
        view = call(f"read {node}'s power", infra.c.compute.virtual_machines.instance_view, infra.rg, name)
        codes = [s.code for s in (view.statuses or []) if s.code and s.code.startswith("PowerState/")]
        state = codes[0].split("/", 1)[1] if codes else ""
        return "on" if state == "running" else "off" if state in ("stopped", "deallocated") else "unknown"

    def power_off(self, ws: Workspace, node: str) -> None:
        infra = self._infra(ws)
        name = infra.vm_name(ws.spec.node(node))
        # skip_shutdown: no OS shutdown, as fence_azure_arm powers off
        infra.c.wait(
            f"power off {node}",
            infra.c.compute.virtual_machines.begin_power_off,
            infra.rg,
            name,
            skip_shutdown=True,
        )

    def power_on(self, ws: Workspace, node: str) -> None:
        infra = self._infra(ws)
        name = infra.vm_name(ws.spec.node(node))
        infra.c.wait(f"start {node}", infra.c.compute.virtual_machines.begin_start, infra.rg, name)

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        return azure_node_needs(spec)


# fence-agents 4.12 calls virtual_machines.get() positionally the way azure-mgmt-compute
# < 33 allowed; newer SDKs reject it ("get() takes 3 positional arguments", testbed.md §4).
SDK_CHECK = r"""
import re, subprocess, sys
try:
    import azure.mgmt.compute as c
except ImportError:
    print("azure-mgmt-compute is not installed"); sys.exit(1)
sdk = tuple(int(x) for x in re.findall(r"\d+", c.__version__)[:2])
out = subprocess.run(["fence_azure_arm", "-V"], capture_output=True, text=True).stdout
m = re.search(r"(\d+)\.(\d+)", out)
agents = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
if agents < (4, 13) and sdk >= (33, 0):
    print(f"fence-agents {agents[0]}.{agents[1]} with azure-mgmt-compute {c.__version__}"); sys.exit(1)
"""


def azure_node_needs(spec: Spec) -> NodeNeeds:
    """The commands the Azure agents need and the probes run on each node before fencing."""
    arm = options_of(spec).arm_endpoint.rstrip("/")
    q = shlex.quote
    probes = [
        NodeProbe(
            "azure.arm_reachable",
            f"the node reaches Azure Resource Manager ({arm})",
            # any HTTP answer proves the path; an internal Standard LB gives none by default
            f"code=$(curl -s -o /dev/null -m 10 -w '%{{http_code}}' {q(arm + '/')}); "
            "[ \"$code\" != 000 ] || { echo 'no answer'; exit 1; }",
            "an internal Standard load balancer gives the VMs no outbound path: add a NAT gateway or "
            "a public load balancer for outbound (Microsoft: 'Public endpoint connectivity for VMs "
            "using Azure Standard Load Balancer'), or a firewall route to management.azure.com",
        ),
        NodeProbe(
            "azure.msi_token",
            "the VM's managed identity gets a token from IMDS",
            "curl -sf -m 10 -H Metadata:true "
            + q(
                f"http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource={arm}/"
            )
            + " | grep -q access_token",
            "enable the VM's system-assigned identity (`hacloud up` does) and keep 169.254.169.254 out "
            "of any proxy on the node",
        ),
    ]
    if any(isinstance(m, AzureFencing) for m in spec.fencing):
        probes.append(
            NodeProbe(
                "azure.fence_sdk",
                "the node's fence-agents work with its Azure SDK",
                f"python3 -c {q(SDK_CHECK)}",
                "fence-agents 4.12 breaks with azure-mgmt-compute >= 33: install fence-agents >= 4.13, or "
                "pin the SDK the agent imports (pip install 'azure-mgmt-compute<33' in its Python)",
            )
        )
    return NodeNeeds(
        commands=("nc",),
        packages={
            "apt-get": "netcat-openbsd python3-azure",
            "dnf": "nmap-ncat fence-agents-azure-arm",
            "zypper": "netcat-openbsd python3-azure-mgmt-compute",
        },
        probes=tuple(probes),
    )


provider = AzureProvider()
