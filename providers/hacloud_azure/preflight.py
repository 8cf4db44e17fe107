"""Live, read-only checks of what fence_azure_arm and azure-lb rely on (`hacloud check --live`).

Contract: :func:`live_checks` reads the subscription and returns one Finding per rule and
subject: the fence role assigned to both identities on both VMs with exactly the needed
actions, and the load balancer rule as Microsoft's HA guides require it (HA ports, floating
IP, probe on the azure-lb port).
"""

from __future__ import annotations

from hacloud.checks import Finding
from hacloud.model import Inventory
from hacloud.spec import AzureLbVip
from hacloud_azure.infra import FENCE_ACTIONS, Infra

SOURCE = "best-practices.md §3.2 (MS-SLES, MS-RHEL)"


def _f(code: str, ok: bool, message: str, remedy: str) -> Finding:
    return Finding(code, "ok" if ok else "error", message, "" if ok else remedy, SOURCE)


def live_checks(infra: Infra, inventory: Inventory) -> list[Finding]:
    out: list[Finding] = []
    auth = infra.c.authorization
    vms = {n.name: infra._vm(infra.spec.node(n.name)) for n in inventory.nodes}
    role = infra._get(
        "read the fence role", auth.role_definitions.get, infra.rg_id(), infra.role_definition_name()
    )
    actions = sorted(role.get("permissions", [{}])[0].get("actions", [])) if role else []
    out.append(
        _f(
            "azure.fence_role",
            actions == sorted(FENCE_ACTIONS),
            f"fence role actions: {', '.join(actions) or 'no role'}",
            "run `hacloud up`: the role must allow exactly read, powerOff and start",
        )
    )
    for name, vm in vms.items():
        principal = ((vm or {}).get("identity") or {}).get("principalId")
        if not principal:
            out.append(
                _f(
                    "azure.identity",
                    False,
                    f"{name}: no system-assigned identity",
                    "run `hacloud up` (it enables the VM's identity)",
                )
            )
            continue
        for other in vms.values():
            if other is None:
                continue
            got = infra._get(
                "read a role assignment",
                auth.role_assignments.get,
                other["id"],
                infra.assignment_name(other["id"], principal),
            )
            ok = (
                got is not None
                and str(got.get("role_definition_id", "")).lower() == infra.role_definition_id().lower()
            )
            out.append(
                _f(
                    "azure.role_assignment",
                    ok,
                    f"{name}'s identity {'may' if ok else 'may not'} fence {other['name']}",
                    "run `hacloud up`; new assignments can take a few minutes to become effective",
                )
            )
    vip = infra.spec.vip
    if isinstance(vip, AzureLbVip):
        lb = infra._get(
            "read the load balancer", infra.c.network.load_balancers.get, infra.rg, f"{infra.cluster}-lb"
        )
        if lb is None:
            out.append(_f("azure.lb", False, "no load balancer", "run `hacloud up`"))
            return out
        props = lb["properties"]
        rules = props.get("loadBalancingRules", [])
        rule = rules[0]["properties"] if rules else {}
        out.append(
            _f(
                "azure.lb_rule",
                rule.get("enableFloatingIP") is True
                and rule.get("protocol") == "All"
                and rule.get("frontendPort") == 0
                and rule.get("backendPort") == 0,
                f"load balancing rule: protocol {rule.get('protocol')}, ports {rule.get('frontendPort')}/"
                f"{rule.get('backendPort')}, floating IP {rule.get('enableFloatingIP')}",
                "the rule must be HA ports (protocol All, port 0) with floating IP on: run `hacloud up`",
            )
        )
        probes = props.get("probes", [])
        port = probes[0]["properties"].get("port") if probes else None
        out.append(
            _f(
                "azure.lb_probe",
                port == vip.probe_port,
                f"health probe port {port}, azure-lb listens on {vip.probe_port}",
                "the probe must ask the port azure-lb listens on (vip.probe_port): run `hacloud up`",
            )
        )
    return out
