"""`hacloud plan --json` lists infrastructure and node changes in one list, and what it lists
is what `up` then does: checked against what the emulator (moto for AWS, the fake ARM for
Azure) shows was created, read back without hacloud's code; a plan after `up` lists nothing.

The CLI's `plan --json` runs in-process on a spec whose nodes do not exist yet (so no node is
contacted); `up`'s infrastructure stage is the provider's ``ensure_nodes``, as `up` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from awstools import REGION, Account, aws_spec_doc, byo_vpc
from azuretools import azure_doc
from azuretools import workspace as azure_workspace
from fakearm import FakeArm
from typer.testing import CliRunner

from hacloud.cli import app
from hacloud.provision.changes import Change
from hacloud.provision.provider import get_provider
from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace


def plan_json(spec: Path) -> dict[str, Any]:
    res = CliRunner().invoke(app, ["plan", "--json", "--spec", str(spec)])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def write_spec(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def creates(changes: list[dict[str, Any]]) -> set[str]:
    return {c["target"] for c in changes if c["step"] == "create"}


def check_one_list(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The shape `plan --json` prints: one ``changes`` list, every entry typed the same."""
    assert set(result) == {"changes", "policy", "nodes_exist"}
    assert result["changes"] and result["nodes_exist"] is False
    for entry in result["changes"]:
        assert set(entry) == {"stage", "target", "step", "detail", "text"}
        assert entry["stage"] == "infrastructure" and entry["text"] == entry["detail"]
    changes: list[dict[str, Any]] = result["changes"]
    return changes


def check_up_did_what_plan_said(planned: list[dict[str, Any]], made: list[Change]) -> None:
    """Everything `up` created the plan listed, and `up` touched nothing the plan did not name."""
    done = [c.as_json() for c in made]
    assert creates(done) == creates(planned)
    assert {c["target"] for c in done} <= {c["target"] for c in planned}


# ---------------------------------------------------------------------- AWS, on moto


@pytest.fixture
def account(aws: tuple[Any, Any]) -> Account:
    return byo_vpc(aws[0])


def aws_created(ec2: Any, iam: Any, cluster: str) -> set[str]:
    """What moto holds for the cluster, named as plan names it, read with boto3 alone."""
    tagged = [{"Name": "tag:hacloud:cluster", "Values": [cluster]}]
    out: set[str] = set()
    for r in ec2.describe_instances(Filters=tagged)["Reservations"]:
        for inst in r["Instances"]:
            node = {t["Key"]: t["Value"] for t in inst["Tags"]}["hacloud:node"]
            out.add(f"instance/{node}")
            eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
            ips = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
            out |= {f"secondary-ip/{node}" for a in ips["PrivateIpAddresses"] if not a["Primary"]}
    for vol in ec2.describe_volumes(Filters=tagged)["Volumes"]:
        tags = {t["Key"]: t["Value"] for t in vol["Tags"]}
        out.add(f"volume/{tags['hacloud:node']}/{tags['hacloud:volume']}")
    out |= {
        f"security-group/{g['GroupName']}"
        for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]
    }
    for role in iam.list_roles()["Roles"]:
        out.add(f"iam-role/{role['RoleName']}")
        for policy in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            out.add(f"iam-policy/{role['RoleName']}/{policy}")
    out |= {
        f"instance-profile/{p['InstanceProfileName']}"
        for p in iam.list_instance_profiles()["InstanceProfiles"]
    }
    for table in ec2.describe_route_tables()["RouteTables"]:
        for route in table["Routes"]:
            if route.get("NetworkInterfaceId"):
                out.add(f"route/{table['RouteTableId']}/{route['DestinationCidrBlock']}")
    return out


def test_aws_plan_json_is_one_list_and_is_what_up_creates(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, iam = aws
    spec = write_spec(tmp_path, aws_spec_doc(account))
    planned = check_one_list(plan_json(spec))
    assert aws_created(ec2, iam, "prod-db") == set()  # the plan made nothing

    provider = get_provider("aws")
    ws = Workspace(load_spec(spec), spec, lambda _m: None)
    infra = provider._infra(ws)  # type: ignore[attr-defined]
    infra.ensure()  # what `up` runs first (provider.ensure_nodes)
    check_up_did_what_plan_said(planned, infra.changes)
    assert aws_created(ec2, iam, "prod-db") == creates(planned)
    assert (
        len(creates(planned)) == 12
    )  # 2 instances, 2 link IPs, 2 volumes, group, role, profile, policy, 2 routes

    again, _policy = provider.plan_infrastructure(ws)  # type: ignore[attr-defined]
    assert again == []
    provider.teardown(ws, delete_volumes=True)
    assert REGION  # (moto's region, where everything above was made)


# ---------------------------------------------------------------------- Azure, on the fake ARM

KINDS = {
    "microsoft.network/networksecuritygroups": "network-security-group",
    "microsoft.network/loadbalancers": "load-balancer",
    "microsoft.network/networkinterfaces": "network-interface",
    "microsoft.compute/disks": "disk",
    "microsoft.compute/virtualmachines": "virtual-machine",
    "microsoft.compute/availabilitysets": "availability-set",
}


def azure_created(fake: FakeArm) -> set[str]:
    """What the fake ARM holds for the cluster, named as plan names it (the fake's own store)."""
    out: set[str] = set()
    names: dict[str, str] = {}  # principal id -> VM name
    for res in fake.store.values():
        kind = str(res.get("type", "")).lower()
        if kind in KINDS and (res.get("tags") or {}).get("hacloud:cluster") == "prod-db":
            out.add(f"{KINDS[kind]}/{res['name']}")
            principal = (res.get("identity") or {}).get("principalId")
            if principal:
                names[principal] = res["name"]
    for key, res in fake.store.items():
        if "/roledefinitions/" in key:
            out.add(f"role-definition/{res['properties']['roleName']}")
        elif "/roleassignments/" in key:
            source = names[res["properties"]["principalId"]]
            out.add(f"role-assignment/{source}/{res['properties']['scope'].rsplit('/', 1)[-1]}")
    return out


def test_azure_plan_json_is_one_list_and_is_what_up_creates(fake: FakeArm, tmp_path: Path) -> None:
    ws = azure_workspace(tmp_path, azure_doc(fake))  # (writes the admin's key file too)
    planned = check_one_list(plan_json(ws.spec_path))
    assert azure_created(fake) == set()

    provider = get_provider("azure")
    infra = provider._infra(ws)  # type: ignore[attr-defined]
    infra.ensure()
    check_up_did_what_plan_said(planned, infra.changes)
    assert azure_created(fake) == creates(planned)
    # NSG, LB, 2 NICs, 2 disks, 2 VMs, the role and its 4 assignments
    assert len(creates(planned)) == 13

    again, _role = provider.plan_infrastructure(ws)  # type: ignore[attr-defined]
    assert again == []
    provider.teardown(ws, delete_volumes=True)
