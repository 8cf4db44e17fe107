"""Drop-in on Azure: VMs a team's Terraform made (here: made in the fake ARM, their names
published through outputs the real Terraform binary wrote), `up`'s provider phase through
`DropIn`.

What must hold: nothing Terraform owns is created, changed or deleted (every resource ARM
holds is compared, whole, before and after); where no role lets an identity fence a VM,
hacloud adds its own role and only the assignments that are missing, and `down` removes
exactly those; where Terraform's roles already cover fencing, hacloud adds nothing.
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import tftools
import yaml
from azuretools import AUTH_API, BASE, NETWORK_API, azure_doc, put_resource, someone_elses_vm, workspace
from fakearm import SUBSCRIPTION, FakeArm
from hacloud_azure.access import allows, broader, missing

from hacloud.errors import HacloudError
from hacloud.provision.dropin import RECORD, provider_for
from hacloud.provision.provider import get_provider
from hacloud.provision.terraform import TerraformSource
from hacloud.spec.workspace import Workspace

DATA = Path(__file__).resolve().parent / "data" / "terraform"
FENCE = [
    "Microsoft.Compute/*/read",
    "Microsoft.Compute/virtualMachines/powerOff/action",
    "Microsoft.Compute/virtualMachines/start/action",
]
needs_terraform = pytest.mark.skipif(
    tftools.terraform() is None, reason="no terraform binary (.ci/run installs it)"
)


# ------------------------------------------------------------------ ARM's permission rules


@pytest.mark.parametrize(
    "actions,not_actions,action,allowed",
    [
        # Azure built-in roles (learn.microsoft.com, "Azure built-in roles"): Reader is */read
        (["*/read"], [], "Microsoft.Compute/virtualMachines/read", True),
        (["*/read"], [], "Microsoft.Compute/virtualMachines/powerOff/action", False),
        # Virtual Machine Contributor grants Microsoft.Compute/virtualMachines/*
        (["Microsoft.Compute/virtualMachines/*"], [], "Microsoft.Compute/virtualMachines/start/action", True),
        # Contributor: * minus Microsoft.Authorization/*/Write (and a few others)
        (["*"], ["Microsoft.Authorization/*/Write"], "Microsoft.Authorization/roleAssignments/write", False),
        (
            ["*"],
            ["Microsoft.Authorization/*/Write"],
            "Microsoft.Compute/virtualMachines/powerOff/action",
            True,
        ),
        # operation names compare case-insensitively
        (["microsoft.compute/VIRTUALMACHINES/poweroff/ACTION"], [], FENCE[1], True),
        # a wildcard does not cross into another provider
        (["Microsoft.Network/*"], [], "Microsoft.Compute/virtualMachines/read", False),
    ],
)
def test_role_permissions_follow_arms_wildcard_rules(
    actions: list[str], not_actions: list[str], action: str, allowed: bool
) -> None:
    assert allows([{"actions": actions, "not_actions": not_actions}], action) is allowed


def test_not_actions_subtract_only_from_their_own_permission() -> None:
    no_power = {"actions": ["Microsoft.Compute/*"], "not_actions": [FENCE[1]]}
    assert missing([no_power]) == [FENCE[1]]
    assert missing([no_power, {"actions": [FENCE[1]], "not_actions": []}]) == []
    assert missing([{"actions": FENCE, "not_actions": []}]) == [] and broader([{"actions": FENCE}]) == []
    assert "Microsoft.Compute/virtualMachines/delete" in broader([{"actions": ["Microsoft.Compute/*"]}])


# ------------------------------------------------------------------ drop-in on the fake ARM


def terraform_outputs(fake: FakeArm, tmp: Path, names: list[str]) -> tuple[Path, Path]:
    """(outputs.json the real Terraform wrote about the VMs ``names``, a --tf-map for it)."""
    vms = []
    for name in names:
        vm = fake.store[f"{BASE}/Microsoft.Compute/virtualMachines/{name}".lower()]
        nic = fake.store[vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"].lower()]
        ip = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        vms.append({"name": name, "ip": ip, "zone": vm["zones"][0]})
    config = tmp / "tf"
    shutil.copytree(DATA / "azure-outputs", config)
    outputs, _ = tftools.apply(tftools.setup_mirror(tmp / "tfroot"), config, {"vms": vms})
    tf_map = tmp / "tfmap.yaml"
    tf_map.write_text(
        yaml.safe_dump(
            {
                "nodes": {
                    f"node{i + 1}": {
                        "id": f"db_vm_names[{i}]",
                        "address": f"db_vm_ips.{name}",
                        "zone": f"db_vm_zones[{i}]",
                    }
                    for i, name in enumerate(names)
                }
            }
        )
    )
    return outputs, tf_map


def dropin_ws(fake: FakeArm, tmp: Path, log: list[str]) -> Workspace:
    outputs, tf_map = terraform_outputs(fake, tmp, ["db1", "db2"])
    return workspace(tmp, azure_doc(fake), log, terraform=TerraformSource(outputs, tf_map))


def terraform_lb(fake: FakeArm, ws: Workspace, floating_ip: bool = True) -> None:
    """The VIP's load balancer as terraform/modules/azure-ha-pair names it, untagged."""
    body = get_provider("azure")._infra(ws).lb_body()  # type: ignore[attr-defined]
    body.pop("tags")
    text = json.dumps(body).replace(
        f"/loadBalancers/{ws.spec.cluster.name}-lb/", "/loadBalancers/hacloud-db/"
    )
    body = json.loads(text)
    body["properties"]["loadBalancingRules"][0]["properties"]["enableFloatingIP"] = floating_ip
    put_resource(fake, f"{BASE}/Microsoft.Network/loadBalancers/hacloud-db", body, NETWORK_API)


def terraform_role(fake: FakeArm, actions: list[str], scopes: list[str], name: str) -> str:
    """A custom role as azurerm_role_definition makes it; returns the id assignments name."""
    role_id = (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}"
    )
    body = {
        "properties": {
            "roleName": name,
            "type": "CustomRole",
            "permissions": [{"actions": actions, "notActions": []}],
            "assignableScopes": scopes,
        }
    }
    put_resource(fake, role_id, body, AUTH_API)
    return role_id


def terraform_assignment(fake: FakeArm, scope: str, role_id: str, principal: str) -> None:
    body = {
        "properties": {
            "roleDefinitionId": role_id,
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    put_resource(fake, path, body, AUTH_API)


def vm(fake: FakeArm, name: str) -> dict[str, Any]:
    return fake.store[f"{BASE}/Microsoft.Compute/virtualMachines/{name}".lower()]


def writes(fake: FakeArm) -> int:
    return sum(r.method in ("PUT", "PATCH", "POST", "DELETE") for r in fake.requests)


def hacloud_assignments(fake: FakeArm, before: dict[str, Any]) -> list[tuple[str, str]]:
    """(principal's VM, scope's VM) of every assignment ARM holds now and did not before."""
    by_principal = {
        v["identity"]["principalId"]: v["name"] for v in fake.of_type("Microsoft.Compute/virtualMachines")
    }
    return sorted(
        (by_principal[r["properties"]["principalId"]], r["properties"]["scope"].rsplit("/", 1)[-1])
        for k, r in fake.store.items()
        if k not in before and r["type"] == "Microsoft.Authorization/roleAssignments"
    )


@needs_terraform
def test_dropin_assigns_a_fence_role_where_terraform_gave_none_and_down_removes_only_that(
    fake: FakeArm, tmp_path: Path
) -> None:
    for name, zone in (("db1", "1"), ("db2", "2")):
        someone_elses_vm(fake, name, zone, identity=True)
    log: list[str] = []
    ws = dropin_ws(fake, tmp_path, log)
    terraform_lb(fake, ws)
    fake.requests.clear()
    before = copy.deepcopy(fake.store)

    provider = provider_for(ws)
    changes, permissions = provider.plan_infrastructure(ws) or ([], "x")
    assert permissions == "" and len(changes) == 5, changes  # the role + 4 assignments
    assert writes(fake) == 0 and fake.store == before  # plan changes nothing

    inv = provider.ensure_nodes(ws)
    assert [n.id for n in inv.nodes] == ["db1", "db2"]
    assert any(line.startswith("terraform: node1 <- outputs db_vm_names[0]") for line in log)
    # everything Terraform made is exactly as it was; what is new is one role and 4 assignments
    assert {k: fake.store[k] for k in before} == before
    new = sorted(fake.store[k]["type"] for k in fake.store if k not in before)
    assert new == ["Microsoft.Authorization/roleAssignments"] * 4 + [
        "Microsoft.Authorization/roleDefinitions"
    ]
    assert hacloud_assignments(fake, before) == [
        ("db1", "db1"),
        ("db1", "db2"),
        ("db2", "db1"),
        ("db2", "db2"),
    ]
    assert json.loads((ws.state_dir / RECORD).read_text())["tf_map"] == str(tmp_path / "tfmap.yaml")

    # a second run writes nothing
    count = writes(fake)
    log.clear()
    provider_for(ws).ensure_nodes(ws)
    assert writes(fake) == count and not [line for line in log if not line.startswith("terraform:")]

    # live checks judge Terraform's load balancer (found by the VIP) and the new assignments
    findings = provider.live_audit(ws, inv)
    assert [f for f in findings if f.severity != "ok"] == []
    assert {f.code for f in findings} >= {"azure.role_assignment", "azure.fence_role", "azure.lb_rule"}

    # down: hacloud's role goes, everything Terraform made stays as it was
    with pytest.raises(HacloudError, match="belong to Terraform"):
        provider.teardown(ws, delete_volumes=True)
    provider.teardown(ws)
    assert fake.store == before
    assert not (ws.state_dir / RECORD).exists()


@needs_terraform
def test_dropin_uses_the_roles_terraform_assigned_and_adds_only_what_they_miss(
    fake: FakeArm, tmp_path: Path
) -> None:
    for name, zone in (("db1", "1"), ("db2", "2")):
        someone_elses_vm(fake, name, zone, identity=True)
    ids = [vm(fake, n)["id"] for n in ("db1", "db2")]
    principals = [vm(fake, n)["identity"]["principalId"] for n in ("db1", "db2")]
    group = BASE.rsplit("/providers", 1)[0]
    # db1's identity: a least-privilege role, but assigned on db1 only (db2 was forgotten) ...
    fence = terraform_role(fake, FENCE, ids, "team-fence")
    terraform_assignment(fake, ids[0], fence, principals[0])
    # ... db2's: a broad role on the resource group (above both VMs); db1's on db2: read only
    ops = terraform_role(fake, ["Microsoft.Compute/virtualMachines/*"], [group], "team-ops")
    terraform_assignment(fake, group, ops, principals[1])
    reader = terraform_role(fake, ["*/read"], [group], "team-reader")
    terraform_assignment(fake, ids[1], reader, principals[0])
    log: list[str] = []
    ws = dropin_ws(fake, tmp_path, log)
    terraform_lb(fake, ws, floating_ip=False)
    before = copy.deepcopy(fake.store)

    provider = provider_for(ws)
    inv = provider.ensure_nodes(ws)
    assert {k: fake.store[k] for k in before} == before
    assert hacloud_assignments(fake, before) == [("db1", "db2")]  # only the forgotten one
    findings = provider.live_audit(ws, inv)
    granted = sorted(f.message for f in findings if f.code == "azure.role_assignment")
    assert granted == [
        "node1's identity may fence node1 (role 'team-fence', not hacloud's)",
        "node1's identity may fence node2 (hacloud's role)",
        "node2's identity may fence node1 (role 'team-ops', not hacloud's)",
        "node2's identity may fence node2 (role 'team-ops', not hacloud's)",
    ]
    broad = [f for f in findings if f.code == "azure.least_privilege"]
    assert len(broad) == 2 and all(f.severity == "warning" for f in broad)
    assert "Microsoft.Compute/virtualMachines/delete" in broad[0].message
    # Terraform's rule lacks floating IP: azure-lb would answer, the VIP would not
    assert {f.code for f in findings if f.severity == "error"} == {"azure.lb_rule"}

    # down removes hacloud's role and assignments and leaves Terraform's
    provider.teardown(ws)
    assert fake.store == before


@needs_terraform
def test_dropin_refuses_vms_without_identity_before_writing_anything(fake: FakeArm, tmp_path: Path) -> None:
    someone_elses_vm(fake, "db1", "1", identity=True)
    someone_elses_vm(fake, "db2", "2", identity=False)
    ws = dropin_ws(fake, tmp_path, [])
    fake.requests.clear()
    provider = provider_for(ws)
    with pytest.raises(HacloudError) as err:
        provider.ensure_nodes(ws)
    assert "node2: VM db2 has no system-assigned identity" in str(err.value)
    assert 'identity { type = "SystemAssigned" }' in str(err.value) and "node1" not in str(err.value)
    assert writes(fake) == 0
    findings = {f.code: f for f in provider.live_audit(ws, provider.discover(ws))}  # type: ignore[arg-type]
    assert findings["azure.identity"].severity == "error"
