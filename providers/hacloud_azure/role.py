"""Azure fencing role (phase access, once both VMs exist): a custom role with exactly read,
powerOff and start, assignable only on the two VMs, assigned to each VM's system-assigned
identity on both VMs (``fence_azure_arm msi=true``, MS-SLES). Role definitions and
assignments take no tags: their names are derived from the cluster (uuid5), so they are found
and removed exactly (teardown removes them first: an assignment's scope is the VM). In drop-in
mode, only where no role (Terraform's or anyone's) lets an identity fence a VM yet.
"""

from __future__ import annotations

from typing import Any

from hacloud.errors import HacloudError
from hacloud_azure.api import call
from hacloud_azure.base import FENCE_ACTIONS, AzureBase, Site, system_principal


class Role(AzureBase):
    def ensure_access(self, site: Site) -> None:
        self.ensure_role(site.vms)

    def ensure_role(self, vms: dict[str, dict[str, Any]], pairs: set[tuple[str, str]] | None = None) -> None:
        """A custom role with exactly read, powerOff and start, assignable only on the two VMs,
        assigned to each VM's managed identity on every cluster VM (MS-SLES); with ``pairs``
        (source node, target node) only on those."""
        scopes = sorted(v["id"] for v in vms.values())
        if len(scopes) < 2:
            self._plan_role()
            return
        self._ensure_definition(scopes)
        for source, vm in vms.items():
            principal = (vm.get("identity") or {}).get("principalId")
            if not principal:
                continue
            for target, other in vms.items():
                if pairs is None or (source, target) in pairs:
                    self._ensure_assignment(vm, other, principal)

    def _plan_role(self) -> None:
        """A plan before the VMs exist: the role, then each identity's assignment on each VM,
        as `up` will record them once the VMs (and their identities) are there."""
        self.change(
            f"role-definition/hacloud-{self.cluster}-fence",
            "create",
            "fencing: create the fence role and assign it once both VMs exist",
        )
        names = [self.vm_name(n) for n in self.spec.nodes]
        for source in names:
            for target in names:
                self.change(
                    f"role-assignment/{source}/{target}",
                    "create",
                    f"fencing: let {source}'s identity fence {target}",
                )

    def _ensure_definition(self, scopes: list[str]) -> None:
        from azure.mgmt.authorization.v2022_04_01.models import Permission, RoleDefinition

        auth = self.c.authorization
        have = self._get(
            "read the fence role", auth.role_definitions.get, self.rg_id(), self.role_definition_name()
        )
        want_actions = sorted(FENCE_ACTIONS)
        stale = (
            have is None
            or sorted(have.get("permissions", [{}])[0].get("actions", [])) != want_actions
            or sorted(have.get("assignable_scopes", [])) != scopes
        )
        name = f"hacloud-{self.cluster}-fence"
        verb = "create" if have is None else "update"
        if stale and self.change(f"role-definition/{name}", verb, f"fencing: {verb} custom role {name}"):
            role = RoleDefinition(
                role_name=name,
                description=f"hacloud cluster {self.cluster}: fence_azure_arm reads, powers off and "
                "starts the nodes",
                role_type="CustomRole",
                permissions=[Permission(actions=want_actions, not_actions=[])],
                assignable_scopes=scopes,
            )
            call(
                "write the fence role",
                auth.role_definitions.create_or_update,
                self.rg_id(),
                self.role_definition_name(),
                role,
            )

    def _ensure_assignment(self, vm: dict[str, Any], other: dict[str, Any], principal: str) -> None:
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        auth = self.c.authorization
        scope = other["id"]
        name = self.assignment_name(scope, principal)
        got = self._get("read a role assignment", auth.role_assignments.get, scope, name)
        target = scope.rsplit("/", 1)[-1]
        if got is None and self.change(
            f"role-assignment/{vm['name']}/{target}",
            "create",
            f"fencing: let {vm['name']}'s identity fence {target}",
        ):
            params = RoleAssignmentCreateParameters(
                role_definition_id=self.role_definition_id(),
                principal_id=principal,
                principal_type="ServicePrincipal",
            )
            call("assign the fence role", auth.role_assignments.create, scope, name, params)

    # ------------------------------------------------------------------ drop-in (Terraform's VMs)

    def terraform_vms(self) -> dict[str, dict[str, Any]]:
        """The two VMs Terraform made, read (never changed); raises one error naming every VM
        that is missing or has no system-assigned identity, with the fix in Terraform."""
        problems: list[str] = []
        vms: dict[str, dict[str, Any]] = {}
        for node in self.spec.nodes:
            vm = self._vm(node)
            if vm is None:
                problems.append(
                    f"{node.name}: VM {self.vm_name(node)} is not in resource group {self.rg}: set "
                    "provider.options.resource_group to the group Terraform made it in"
                )
            elif not system_principal(vm):
                problems.append(
                    f"{node.name}: VM {vm['name']} has no system-assigned identity (fence_azure_arm "
                    'signs in with it): add `identity { type = "SystemAssigned" }` to the VM in '
                    "Terraform and apply (hacloud does not change Terraform's VMs)"
                )
            else:
                vms[node.name] = vm
        if problems:
            raise HacloudError(
                "; ".join(problems), "fix the Terraform configuration, then run `hacloud up`", code="HAC678"
            )
        return vms

    def adopt_role(self) -> None:
        """Let each identity fence both VMs where no role (Terraform's or anyone's) does yet:
        hacloud's own custom role and assignments, named from the cluster so `release_role`
        removes exactly them."""
        from hacloud_azure.access import grants

        vms = self.terraform_vms()
        have = grants(self, vms)
        missing = {pair for pair, grant in have.items() if grant is None}
        # hacloud's role is checked (and repaired) whenever one of its assignments is in use;
        # an assignment `grants` found is not read again
        if missing or any(grant is not None and grant.hacloud for grant in have.values()):
            self.ensure_role(vms, missing)

    def release_role(self) -> None:
        """Remove what `adopt_role` added; Terraform's roles and assignments stay."""
        self._remove_role({n.name: self._vm(n) for n in self.spec.nodes})

    def teardown_access(self) -> None:
        self._remove_role({n.name: self._vm(n) for n in self.spec.nodes})

    def _remove_role(self, vms: dict[str, dict[str, Any] | None]) -> None:
        c = self.c
        # assignments first: a role definition with assignments cannot be deleted
        for vm in vms.values():
            principal = ((vm or {}).get("identity") or {}).get("principalId")
            for other in vms.values():
                if vm is None or other is None or not principal:
                    continue
                name = self.assignment_name(other["id"], principal)
                found = self._get(
                    "read a role assignment", c.authorization.role_assignments.get, other["id"], name
                )
                if found is not None and self.change(
                    f"role-assignment/{vm['name']}/{other['name']}",
                    "delete",
                    f"fencing: remove the fence role of {vm['name']} on {other['name']}",
                ):
                    call(
                        "remove a role assignment",
                        c.authorization.role_assignments.delete,
                        other["id"],
                        name,
                    )
        role = self._get(
            "read the fence role",
            c.authorization.role_definitions.get,
            self.rg_id(),
            self.role_definition_name(),
        )
        if role is not None and self.change(
            f"role-definition/hacloud-{self.cluster}-fence",
            "delete",
            f"fencing: delete custom role hacloud-{self.cluster}-fence",
        ):
            call(
                "delete the fence role",
                c.authorization.role_definitions.delete,
                self.rg_id(),
                self.role_definition_name(),
            )
