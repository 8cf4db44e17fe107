"""Drop-in on AWS: instances a team's Terraform made (here: made in moto, their ids published
through outputs the real Terraform binary wrote), `up`'s provider phase through `DropIn`.

What must hold: nothing Terraform owns is created, changed or deleted (an independent census
of the account before and after); the overlay route hacloud adds where Terraform made none is
recorded and is all `down` removes; a route Terraform made is left alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tftools
import yaml
from awstools import Account, aws_spec_doc, byo_vpc, census, tagged

from hacloud.provision.dropin import RECORD, provider_for
from hacloud.provision.terraform import TerraformSource
from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace

pytestmark = pytest.mark.skipif(
    tftools.terraform() is None, reason="no terraform binary (.ci/run installs it)"
)
DATA = Path(__file__).resolve().parent / "data" / "terraform"


def terraform_pair(ec2: Any, account: Account, tmp: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Two instances + volumes "Terraform made", and (outputs.json, tf-map) describing them."""
    from hacloud_aws.tfstate import ebs_device_path

    nodes = []
    instances = []
    for i, subnet in enumerate(account.subnets):
        inst = ec2.run_instances(ImageId=account.ami, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
        zone = inst["Placement"]["AvailabilityZone"]
        vol = ec2.create_volume(AvailabilityZone=zone, Size=10)["VolumeId"]
        ec2.attach_volume(VolumeId=vol, InstanceId=inst["InstanceId"], Device="/dev/sdf")
        instances.append(inst)
        nodes.append(
            {
                "name": f"node{i + 1}",
                "id": inst["InstanceId"],
                "ssh_address": inst["PrivateIpAddress"],
                "zone": zone,
                "volumes": {"r0": ebs_device_path(vol)},
            }
        )
    config = tmp / "tf"
    shutil.copytree(DATA / "outputs", config)
    env = tftools.setup_mirror(tmp / "tfroot")
    outputs, _ = tftools.apply(env, config, {"inventory": {"nodes": nodes}, "variant": "plain"})
    tf_map = tmp / "tfmap.yaml"
    tf_map.write_text(
        yaml.safe_dump(
            {
                "nodes": {
                    f"node{i + 1}": {
                        "id": f"db_ids[{i}]",
                        "address": f"db_private_ips[{i}]",
                        "zone": f"db_zones.node{i + 1}",
                        "volumes": {"r0": f"db_volume_ids[{i}]"},
                    }
                    for i in range(2)
                }
            }
        )
    )
    return outputs, tf_map, instances


def dropin_ws(tmp: Path, account: Account, outputs: Path, tf_map: Path, log: list[str]) -> Workspace:
    doc = aws_spec_doc(account)
    doc["provider"]["options"].pop("subnets")  # Terraform's business in drop-in mode
    doc["provider"]["options"].pop("ami")
    path = tmp / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Workspace(load_spec(path), path, log.append, terraform=TerraformSource(outputs, tf_map))


def instance_facts(ec2: Any) -> list[tuple[Any, ...]]:
    """What hacloud's own provider would change on an instance it adopts (census does not show it)."""
    out = []
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            check = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="sourceDestCheck")
            out.append(
                (
                    i["InstanceId"],
                    i["State"]["Name"],
                    sorted(g["GroupId"] for g in i["SecurityGroups"]),
                    i.get("IamInstanceProfile"),
                    check["SourceDestCheck"]["Value"],
                    i.get("Tags", []),
                )
            )
    return sorted(out, key=str)


def routes(ec2: Any, cidr: str) -> dict[str, str | None]:
    out = {}
    for t in ec2.describe_route_tables()["RouteTables"]:
        for r in t["Routes"]:
            if r.get("DestinationCidrBlock") == cidr:
                out[t["RouteTableId"]] = r.get("NetworkInterfaceId")
    return out


def test_dropin_adds_only_the_missing_route_and_down_removes_only_that(
    aws: tuple[Any, Any], tmp_path: Path
) -> None:
    ec2, iam = aws
    account = byo_vpc(ec2)
    outputs, tf_map, instances = terraform_pair(ec2, account, tmp_path)
    eni = instances[0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    log: list[str] = []
    ws = dropin_ws(tmp_path, account, outputs, tf_map, log)
    cidr = f"{ws.spec.vip.address}/32"  # type: ignore[union-attr]
    # Terraform made the route in the first table itself
    ec2.create_route(RouteTableId=account.route_tables[0], DestinationCidrBlock=cidr, NetworkInterfaceId=eni)
    before = census(ec2, iam)
    facts = instance_facts(ec2)

    provider = provider_for(ws)
    changes, permissions = provider.plan_infrastructure(ws) or ([], "x")
    assert permissions == "" and len(changes) == 1 and account.route_tables[1] in str(changes[0])
    assert census(ec2, iam) == before  # plan changes nothing

    inv = provider.ensure_nodes(ws)
    assert [n.id for n in inv.nodes] == [i["InstanceId"] for i in instances]
    assert any(line.startswith("terraform: node1 <- outputs db_ids[0]") for line in log)
    assert routes(ec2, cidr) == {account.route_tables[0]: eni, account.route_tables[1]: eni}
    after = census(ec2, iam)
    # the instances, volumes, groups and roles are exactly as Terraform left them; nothing tagged
    assert {k: v for k, v in after.items() if k != "routes"} == {
        k: v for k, v in before.items() if k != "routes"
    }
    assert tagged(ec2, iam, ws.spec.cluster.name) == {
        "instances": [],
        "volumes": [],
        "groups": [],
        "roles": [],
        "link_tags": [],  # no link address added to Terraform's instances
    }
    assert instance_facts(ec2) == facts
    assert json.loads((ws.state_dir / RECORD).read_text())["path"] == str(outputs)

    # a second run changes nothing
    log.clear()
    provider_for(ws).ensure_nodes(ws)
    assert not [line for line in log if not line.startswith("terraform:")]

    # power and live checks act on Terraform's instances (ids pinned from the outputs)
    assert provider.power(ws, "node2") == "on"
    findings = {f.code: f for f in provider.live_audit(ws, inv)}
    assert findings["aws.zones"].severity == "ok"
    assert findings["aws.instance_profile"].severity == "error"  # Terraform gave these instances no profile

    # down: hacloud's route goes, Terraform's stays, nothing else is touched
    with pytest.raises(Exception, match="belong to Terraform"):
        provider.teardown(ws, delete_volumes=True)
    provider.teardown(ws)
    assert routes(ec2, cidr) == {account.route_tables[0]: eni}
    final = census(ec2, iam)
    assert {k: v for k, v in final.items() if k != "routes"} == {
        k: v for k, v in before.items() if k != "routes"
    }
    assert instance_facts(ec2) == facts
    assert not (ws.state_dir / RECORD).exists()
