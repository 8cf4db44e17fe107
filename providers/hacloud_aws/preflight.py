"""Live, read-only checks of what the AWS agents rely on (`hacloud check --live`); the checks
run on the nodes themselves before fencing is enabled are :func:`hacloud_aws.aws_node_needs`.

Contract: :func:`live_audit` reads the account and returns one Finding per rule and subject;
it changes nothing. The policy check evaluates the policies attached to each node's role
against every (action, resource) the agents will call — the same list the generated policy is
built from, so a hand-made profile is held to the same bar.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsEipVip, AwsFencing, AwsMoveIpVip
from hacloud.verify.invariants import Finding, Severity
from hacloud_aws import iam
from hacloud_aws.api import call, error_code
from hacloud_aws.infra import Infra, primary_eni

SOURCE = "best-practices.md §3.1"


def _f(code: str, ok: bool, message: str, remedy: str, warn: bool = False) -> Finding:
    severity: Severity = "ok" if ok else "warning" if warn else "error"
    return Finding(code, severity, message, "" if ok else remedy, SOURCE)


def needed_calls(infra: Infra, account: str, ids: list[str]) -> list[tuple[str, str]]:
    """(action, resource ARN) pairs the agents call, from the generated policy's statements."""
    policy = iam.agent_policy(infra.spec, infra.c.region, account, ids)
    out = []
    for st in policy["Statement"]:
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in st["Action"]:
            out += [(action, r.replace("/*", "/eni-0")) for r in resources]
    return out


def _policies_of(infra: Infra, profile_arn: str) -> list[dict[str, Any]]:
    client = infra.c.iam
    name = profile_arn.rsplit("/", 1)[-1]
    profile = call("read the instance profile", client.get_instance_profile, InstanceProfileName=name)
    docs: list[dict[str, Any]] = []
    for role in profile["InstanceProfile"].get("Roles", []):
        rname = role["RoleName"]
        for pname in call("list role policies", client.list_role_policies, RoleName=rname)["PolicyNames"]:
            doc = call("read a role policy", client.get_role_policy, RoleName=rname, PolicyName=pname)[
                "PolicyDocument"
            ]
            docs.append(_doc(doc))
        attached = call("list attached policies", client.list_attached_role_policies, RoleName=rname)
        for ap in attached["AttachedPolicies"]:
            pol = call("read a policy", client.get_policy, PolicyArn=ap["PolicyArn"])["Policy"]
            ver = call(
                "read a policy version",
                client.get_policy_version,
                PolicyArn=ap["PolicyArn"],
                VersionId=pol["DefaultVersionId"],
            )["PolicyVersion"]["Document"]
            docs.append(_doc(ver))
    return docs


def _doc(doc: Any) -> dict[str, Any]:
    if isinstance(doc, str):
        doc = json.loads(urllib.parse.unquote(doc))
    statements = doc.get("Statement", [])
    return {**doc, "Statement": statements if isinstance(statements, list) else [statements]}


def live_audit(infra: Infra, inventory: Inventory) -> list[Finding]:
    """Every rule below, read-only, one Finding per rule and subject."""
    spec = infra.spec
    account = call("read the caller identity", infra.c.sts.get_caller_identity)["Account"]
    instances = {node.name: infra.describe(node.id, f"read {node.name}") for node in inventory.nodes}
    out = [_zones(instances), *_links(inventory, instances)]
    if isinstance(spec.vip, AwsMoveIpVip):
        out += _routes(infra, inventory, instances) + _source_dest(infra, instances)
    if isinstance(spec.vip, AwsEipVip):
        out.append(_eip(infra, spec.vip.allocation_id))
    needed = needed_calls(infra, account, [n.id for n in inventory.nodes])
    out += [_profile(infra, name, inst, needed) for name, inst in instances.items()]
    if not any(isinstance(m, AwsFencing) for m in spec.fencing):
        out.append(_f("aws.fencing", False, "no fence_aws device", "add a fence_aws method", warn=True))
    return out


def _zones(instances: dict[str, dict[str, Any]]) -> Finding:
    zones = {i["Placement"]["AvailabilityZone"] for i in instances.values()}
    return _f(
        "aws.zones",
        len(zones) == 2,
        f"the nodes are in {len(zones)} availability zone(s): {', '.join(sorted(zones))}",
        "place the nodes in two availability zones so one zone outage leaves a node",
    )


def _links(inventory: Inventory, instances: dict[str, dict[str, Any]]) -> list[Finding]:
    """Every corosync link address of a node is still an address of one of its interfaces."""
    out = []
    for node in inventory.nodes:
        held = {
            a["PrivateIpAddress"]
            for e in instances[node.name].get("NetworkInterfaces", [])
            for a in e.get("PrivateIpAddresses", [])
        }
        lost = [a for a in node.links if a not in held]
        out.append(
            _f(
                "aws.links",
                not lost,
                f"{node.name}: corosync link address(es) {', '.join(node.links)} on its interfaces"
                if not lost
                else f"{node.name}: corosync link address(es) {', '.join(lost)} no longer on any of its "
                "interfaces",
                "run `hacloud up` (it assigns link 1's secondary IP again under the same address), or "
                "correct nodes[].links",
            )
        )
    return out


def _routes(infra: Infra, inventory: Inventory, instances: dict[str, dict[str, Any]]) -> list[Finding]:
    """The overlay route in every listed table points at a node of the cluster."""
    vip = infra.spec.vip
    assert isinstance(vip, AwsMoveIpVip)
    enis = {primary_eni(i)["NetworkInterfaceId"] for i in instances.values()}
    cidr = f"{vip.address}/32"
    out = []
    for rtb in vip.route_tables:
        try:
            table = infra.c.ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
        except Exception as exc:
            out.append(_f("aws.route", False, f"{rtb}: {error_code(exc)}", "correct vip.route_tables"))
            continue
        route = next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == cidr), None)
        target = (route or {}).get("NetworkInterfaceId") or (route or {}).get("InstanceId")
        ok = route is not None and (target in enis or target in {n.id for n in inventory.nodes})
        out.append(
            _f(
                "aws.route",
                ok,
                f"{rtb}: {cidr} -> {target or 'no route'}",
                "aws-vpc-move-ip only replaces an existing route: run `hacloud up` to create it "
                "pointing at a cluster node",
            )
        )
    return out


def _source_dest(infra: Infra, instances: dict[str, dict[str, Any]]) -> list[Finding]:
    out = []
    for name, inst in instances.items():
        attr = call(
            f"read {name}'s source/destination check",
            infra.c.ec2.describe_instance_attribute,
            InstanceId=inst["InstanceId"],
            Attribute="sourceDestCheck",
        )
        on = attr["SourceDestCheck"]["Value"]
        out.append(
            _f(
                "aws.source_dest_check",
                not on,
                f"{name}: source/destination check {'on' if on else 'off'}",
                "EC2 drops overlay-IP traffic with the check on: run `hacloud up`, or "
                f"aws ec2 modify-instance-attribute --instance-id {inst['InstanceId']} "
                "--no-source-dest-check",
            )
        )
    return out


def _eip(infra: Infra, allocation_id: str) -> Finding:
    try:
        infra.c.ec2.describe_addresses(AllocationIds=[allocation_id])
    except Exception as exc:
        return _f("aws.eip", False, f"{allocation_id}: {error_code(exc)}", "correct vip.allocation_id")
    return _f("aws.eip", True, f"Elastic IP {allocation_id} exists", "")


def _profile(infra: Infra, name: str, inst: dict[str, Any], needed: list[tuple[str, str]]) -> Finding:
    """The node's instance profile allows every (action, resource) the agents call."""
    assoc = call(
        f"read {name}'s instance profile",
        infra.c.ec2.describe_iam_instance_profile_associations,
        Filters=[
            {"Name": "instance-id", "Values": [inst["InstanceId"]]},
            {"Name": "state", "Values": ["associated"]},
        ],
    )["IamInstanceProfileAssociations"]
    if not assoc:
        return _f(
            "aws.instance_profile",
            False,
            f"{name}: no instance profile attached",
            "the agents get their credentials from the instance profile: run `hacloud up`",
        )
    docs = _policies_of(infra, assoc[0]["IamInstanceProfile"]["Arn"])
    missing = sorted({a for a, r in needed if not any(iam.allows(d, a, r) for d in docs)})
    return _f(
        "aws.instance_profile",
        not missing,
        f"{name}: instance profile allows every agent call"
        if not missing
        else f"{name}: instance profile does not allow {', '.join(missing)}",
        "add the policy `hacloud plan` prints to the role of the instance profile",
    )
