"""Who may fence whom: the role assignments that let one VM's identity read, power off and
start another VM, whoever made them (hacloud, Terraform, a portal click).

Contract: :func:`allows` and :func:`missing` are pure and follow ARM's rules for a role's
permissions: actions compare case-insensitively, ``*`` matches any run of characters, and a
permission allows an action when one of its ``actions`` matches and none of its ``not_actions``
does (notActions subtract only from the permission that lists them). :func:`grants` reads ARM
(never writes) and returns, for every (identity's VM, target VM) pair, the assignment that
covers everything fence_azure_arm needs, or None. Deny assignments are not read: a deny made
for a VM would still block the agent, which `hacloud fence-test` finds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hacloud_azure.base import AzureBase

#: what fence_azure_arm calls on a target VM (get with instance view, power off, start);
#: best-practices.md §3.2 grants them as Microsoft.Compute/*/read + powerOff + start (MS-SLES)
FENCE_NEEDS = (
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/instanceView/read",
    "Microsoft.Compute/virtualMachines/powerOff/action",
    "Microsoft.Compute/virtualMachines/start/action",
)
#: actions a fencing identity has no use for; a role that allows one is broader than needed
BEYOND_FENCING = (
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/disks/write",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Authorization/roleAssignments/write",
)


def _matches(pattern: str, action: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, action, flags=re.IGNORECASE) is not None


def allows(permissions: list[Mapping[str, Any]], action: str) -> bool:
    """Whether a role with these ``permissions`` (as the SDK reads them: ``actions``,
    ``not_actions``) allows ``action``."""
    for perm in permissions:
        granted = perm.get("actions") or []
        denied = perm.get("not_actions") or []
        if any(_matches(p, action) for p in granted) and not any(_matches(p, action) for p in denied):
            return True
    return False


def missing(permissions: list[Mapping[str, Any]], needs: tuple[str, ...] = FENCE_NEEDS) -> list[str]:
    """The actions of ``needs`` these permissions do not allow, in order."""
    return [a for a in needs if not allows(permissions, a)]


def broader(permissions: list[Mapping[str, Any]]) -> list[str]:
    """The actions of :data:`BEYOND_FENCING` these permissions allow (least privilege: none)."""
    return [a for a in BEYOND_FENCING if allows(permissions, a)]


@dataclass(frozen=True)
class Grant:
    """One role assignment that lets ``source``'s identity fence ``target``."""

    source: str  #: node name whose identity holds it
    target: str  #: node name it may fence
    assignment: str  #: the assignment's resource id
    role: str  #: the role's display name (or id when it has none)
    hacloud: bool  #: hacloud made this assignment (its name is the cluster's uuid5)
    extra: tuple[str, ...]  #: actions beyond fencing the role also allows


def _assignments_of(infra: AzureBase, principal: str) -> list[dict[str, Any]]:
    """Every assignment of ``principal`` at, above or below the resource group, in one request
    (the "principalId eq" filter)."""
    from azure.core.exceptions import AzureError

    from hacloud_azure.api import azure_error, wire

    try:
        listed = infra.c.authorization.role_assignments.list_for_scope(
            infra.rg_id(), filter=f"principalId eq '{principal}'"
        )
        return sorted((wire(a) for a in listed), key=lambda a: str(a.get("id")))
    except AzureError as exc:
        raise azure_error(exc, f"list the role assignments in {infra.rg}") from None


def grants(infra: AzureBase, vms: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Grant | None]:
    """For every (source node, target node) pair of ``vms`` (node name -> VM as ARM returns it),
    the assignment at or above the target VM that covers :data:`FENCE_NEEDS` for the source's
    system-assigned identity; None when none does (or the source has no identity). One listing
    per identity; each role definition is read once."""
    from hacloud_azure.base import system_principal

    roles: dict[str, dict[str, Any] | None] = {}
    out: dict[tuple[str, str], Grant | None] = {}
    for source, vm in vms.items():
        principal = system_principal(vm)
        listed = _assignments_of(infra, principal) if principal else []
        for target, other in vms.items():
            out[(source, target)] = None
            scope = str(other["id"])
            for a in listed:
                at = str(a.get("scope") or "").lower().rstrip("/")
                if str(a.get("principal_id")) != principal or not (
                    scope.lower() == at or scope.lower().startswith(at + "/")
                ):
                    continue  # another principal's, or not at or above this VM
                role_id = str(a.get("role_definition_id") or "")
                if role_id.lower() not in roles:
                    roles[role_id.lower()] = infra._get(
                        "read a role definition", infra.c.authorization.role_definitions.get_by_id, role_id
                    )
                role = roles[role_id.lower()]
                perms = (role or {}).get("permissions") or []
                if role is None or missing(perms):
                    continue
                out[(source, target)] = Grant(
                    source,
                    target,
                    str(a.get("id")),
                    str(role.get("role_name") or role_id),
                    str(a.get("name")) == infra.assignment_name(scope, principal),
                    tuple(broader(perms)),
                )
                break
    return out
