"""Live, read-only checks of what fence_azure_arm and azure-lb rely on (`hacloud check --live`).

Contract: :func:`live_audit` reads the subscription and returns one Finding per rule and
subject: each VM's system-assigned identity, for every (identity, VM) pair a role that allows
what fence_azure_arm needs (hacloud's, or in drop-in mode Terraform's; a warning when it
allows more), hacloud's own role with exactly the needed actions where it exists, and the
load balancer at the VIP (hacloud's or Terraform's) as Microsoft's HA guides require it (HA
ports, floating IP, probe on the azure-lb port).
"""

from __future__ import annotations

from typing import Any

from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AzureLbVip
from hacloud.verify.invariants import Finding
from hacloud_azure.infra import FENCE_ACTIONS, LINK_CONFIG, Infra, system_principal

SOURCE = "best-practices.md §3.2 (MS-SLES, MS-RHEL)"


def _f(code: str, ok: bool, message: str, remedy: str) -> Finding:
    return Finding(code, "ok" if ok else "error", message, "" if ok else remedy, SOURCE)


def live_audit(infra: Infra, inventory: Inventory) -> list[Finding]:
    """Every rule below, read-only, one Finding per rule and subject."""
    out: list[Finding] = []
    vms = {n.name: infra._vm(infra.spec.node(n.name)) for n in inventory.nodes}
    role = infra._get(
        "read the fence role",
        infra.c.authorization.role_definitions.get,
        infra.rg_id(),
        infra.role_definition_name(),
    )
    if role is not None:  # hacloud's own role (in drop-in mode only where Terraform's is missing)
        actions = sorted(role.get("permissions", [{}])[0].get("actions", []))
        out.append(
            _f(
                "azure.fence_role",
                actions == sorted(FENCE_ACTIONS),
                f"fence role actions: {', '.join(actions)}",
                "run `hacloud up`: the role must allow exactly read, powerOff and start",
            )
        )
    for name, vm in vms.items():
        if not system_principal(vm):
            out.append(
                _f(
                    "azure.identity",
                    False,
                    f"{name}: no system-assigned identity",
                    "run `hacloud up` (it enables the VM's identity); on Terraform's VMs add "
                    '`identity { type = "SystemAssigned" }` to the VM and apply',
                )
            )
    out += _assignments(infra, {name: vm for name, vm in vms.items() if vm is not None})
    out += _links(infra, inventory)
    vip = infra.spec.vip
    if isinstance(vip, AzureLbVip):
        out += _load_balancer(infra, vip)
    return out


def _assignments(infra: Infra, present: dict[str, dict[str, Any]]) -> list[Finding]:
    """For every (identity, VM) pair, a role that lets the identity fence the VM."""
    from hacloud_azure.access import grants

    out: list[Finding] = []
    for (source, target), grant in grants(infra, present).items():
        if grant is None:
            if system_principal(present[source]):  # (no identity: reported above)
                out.append(
                    _f(
                        "azure.role_assignment",
                        False,
                        f"{source}'s identity may not fence {target} (no role allows "
                        "read, powerOff and start)",
                        "run `hacloud up`; new assignments can take a few minutes to become effective",
                    )
                )
            continue
        how = "hacloud's role" if grant.hacloud else f"role {grant.role!r}, not hacloud's"
        out.append(_f("azure.role_assignment", True, f"{source}'s identity may fence {target} ({how})", ""))
        if grant.extra:
            out.append(
                Finding(
                    "azure.least_privilege",
                    "warning",
                    f"{source}'s role {grant.role!r} on {target} also allows {', '.join(grant.extra)}",
                    "a fencing identity needs only read, powerOff and start: assign a role with "
                    "just those (terraform/modules/azure-ha-pair's azurerm_role_definition.fence)",
                    SOURCE,
                )
            )
    return out


def _load_balancer(infra: Infra, vip: AzureLbVip) -> list[Finding]:
    """The load balancer at the VIP: HA ports with floating IP, the probe on azure-lb's port."""
    lb = vip_load_balancer(infra, str(vip.address))
    if lb is None:
        return [
            _f(
                "azure.lb",
                False,
                f"no load balancer in {infra.rg} has the frontend address {vip.address}",
                "run `hacloud up`; on Terraform's network give the VIP an internal Standard load "
                "balancer as terraform/modules/azure-ha-pair does",
            )
        ]
    props = lb["properties"]
    rules = props.get("loadBalancingRules", [])
    rule = rules[0]["properties"] if rules else {}
    probes = props.get("probes", [])
    port = probes[0]["properties"].get("port") if probes else None
    return [
        _f(
            "azure.lb_rule",
            rule.get("enableFloatingIP") is True
            and rule.get("protocol") == "All"
            and rule.get("frontendPort") == 0
            and rule.get("backendPort") == 0,
            f"load balancing rule: protocol {rule.get('protocol')}, ports {rule.get('frontendPort')}/"
            f"{rule.get('backendPort')}, floating IP {rule.get('enableFloatingIP')}",
            "the rule must be HA ports (protocol All, port 0) with floating IP on: run `hacloud up`",
        ),
        _f(
            "azure.lb_probe",
            port == vip.probe_port,
            f"health probe port {port}, azure-lb listens on {vip.probe_port}",
            "the probe must ask the port azure-lb listens on (vip.probe_port): run `hacloud up`",
        ),
    ]


def vip_load_balancer(infra: Infra, address: str) -> dict[str, Any] | None:
    """hacloud's load balancer, else the one in the resource group (Terraform's, in drop-in
    mode) with a frontend at the VIP ``address``."""
    from azure.core.exceptions import AzureError

    from hacloud_azure.api import azure_error, wire

    lbs = infra.c.network.load_balancers
    lb = infra._get("read the load balancer", lbs.get, infra.rg, f"{infra.cluster}-lb")
    if lb is not None:
        return lb
    try:
        listed = [wire(x) for x in lbs.list(infra.rg)]
    except AzureError as exc:
        raise azure_error(exc, f"list the load balancers of {infra.rg}") from None
    for item in sorted(listed, key=lambda x: str(x.get("id"))):
        for fe in item.get("properties", {}).get("frontendIPConfigurations", []):
            if fe.get("properties", {}).get("privateIPAddress") == address:
                return item
    return None


def _links(infra: Infra, inventory: Inventory) -> list[Finding]:
    """Every corosync link address of a node is still an address of its NIC (link 1 is the
    ``hacloud-link1`` ip configuration hacloud added)."""
    out = []
    for node in inventory.nodes:
        nic = infra._node_nic(infra.spec.node(node.name))
        held = {
            c["properties"].get("privateIPAddress")
            for c in ((nic or {}).get("properties") or {}).get("ipConfigurations", [])
        }
        lost = [a for a in node.links if a not in held]
        out.append(
            _f(
                "azure.links",
                not lost,
                f"{node.name}: corosync link address(es) {', '.join(node.links)} on its network interface"
                if not lost
                else f"{node.name}: corosync link address(es) {', '.join(lost)} no longer on its network "
                "interface",
                f"run `hacloud up` (it adds the ip configuration {LINK_CONFIG} again, then deploys the "
                "new address), or correct nodes[].links",
            )
        )
    return out
