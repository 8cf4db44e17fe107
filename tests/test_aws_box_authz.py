"""The AWS box's IAM judge (issue 18, WP2), API tier: the policy hacloud writes for the agents
(``hacloud_aws.iam.agent_policy``, unchanged) given to an assumed role, and the STOCK agents'
own calls judged by the box.

Real components: the box daemon, Debian's unmodified ``/usr/sbin/fence_aws`` (off/on/status of
the peer) and ``/usr/bin/aws`` with exactly the command lines ``aws-vpc-move-ip`` and ``awseip``
run (copied from the installed agents, ``AGENT_CALLS`` below), all inside a namespace made here
that has only ``lo``. The judge's verdicts are checked against EC2's own state (the instance
really stopped or not, the route really replaced or not) and the refusals in the agents' output.
The ARN formats the judge applies come from the AWS Service Authorization Reference (vendored
extract); the policy comes from hacloud's ARN builder: two independent sources.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from awstools import Account, aws_spec_doc
from boxtools import AWS_CLI, FENCE_AWS, REGION, Box, endpoint_netns, in_netns, instance_netns, running_box
from conftest import spec_of
from hacloud_aws import iam
from hacloud_aws.box import layout
from hacloud_aws.probes import permission_probe

from hacloud.spec.model import Spec

OVERLAY = "198.51.100.10"
ROLE = "hacloud-judge"
#: the AWS CLI calls of Debian's resource-agents 4.12 (aws-vpc-move-ip L265/L371, awseip
#: L166/L186/L195), with the agents' own options; {} fields are filled per call
AGENT_CALLS = {
    "describe-route-tables": "--profile default --region {region} --output text ec2 describe-route-tables "
    "--route-table-ids {rtb} "
    "--query RouteTables[*].Routes[?DestinationCidrBlock=='{ip}/32'].NetworkInterfaceId",
    "replace-route": "--profile default --region {region} --output text ec2 replace-route "
    "--route-table-id {rtb} --destination-cidr-block {ip}/32 --network-interface-id {eni}",
    "associate-address": "--profile default ec2 associate-address --instance-id {instance} "
    "--allocation-id {alloc}",
    "describe-addresses": "--profile default --output json ec2 describe-addresses --allocation-id {alloc}",
    "disassociate-address": "--profile default ec2 disassociate-address --association-id {assoc}",
}


@dataclass
class Pair:
    """The emulated account's two nodes and what the agents act on."""

    box: Box
    netns: str
    nodes: tuple[str, str]
    enis: tuple[str, str]
    tables: tuple[str, str]
    alloc: str
    env: dict[str, str]  # the assumed role's session (node1's instance profile, as on EC2)

    def put_policy(self, policy: dict[str, Any]) -> None:
        self.box.client("iam").put_role_policy(
            RoleName=ROLE, PolicyName=iam.POLICY_NAME, PolicyDocument=iam.policy_json(policy)
        )

    def fence(self, action: str, plug: str, power_timeout: int = 2) -> Any:
        """Stock fence_aws as Pacemaker runs it on node1: parameters on stdin, no keys (the
        instance profile's session, here in the environment)."""
        stdin = f"action={action}\nregion={REGION}\nplug={plug}\npower_timeout={power_timeout}\n"
        return in_netns(self.netns, [FENCE_AWS], self.env, stdin=stdin)

    def cli(self, call: str, **fields: str) -> Any:
        argv = AGENT_CALLS[call].format(region=REGION, ip=OVERLAY, **fields).split()
        return in_netns(self.netns, [AWS_CLI, *argv], self.env)

    def state(self, instance: str) -> str:
        return self.box.state(instance)

    def peer_running(self) -> str:
        """The peer, running again if an earlier (failing) test left it stopped: each test
        starts from the same state."""
        peer = self.nodes[1]
        if self.state(peer) != "running":
            self.box.client("ec2").start_instances(InstanceIds=[peer])
        return peer

    def route_target(self, table: str) -> str:
        tables = self.box.client("ec2").describe_route_tables(RouteTableIds=[table])["RouteTables"]
        return next(
            str(r.get("NetworkInterfaceId"))
            for r in tables[0]["Routes"]
            if r.get("DestinationCidrBlock") == f"{OVERLAY}/32"
        )

    def eip_instance(self) -> str | None:
        eip = self.box.client("ec2").describe_addresses(AllocationIds=[self.alloc])["Addresses"][0]
        return eip.get("InstanceId")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with endpoint_netns("iam") as netns:
        work = tmp_path_factory.mktemp("boxiam")
        with running_box(work / layout.BOX_DIRNAME, netns=netns) as box:
            made = _account(box, netns, work)
            # the agents run on node1: its namespace, where the box's IMDS knows it by address
            with instance_netns(box, netns, made.nodes[0], "z") as node1:
                yield dataclasses.replace(made, netns=node1)


def _account(box: Box, netns: str, work: Path) -> Pair:
    """Role + instance profile as hacloud makes them, two instances in two zones, the overlay
    route in two tables pointing at node1, and node1's role session (STS AssumeRole, named after
    the instance as EC2 names it)."""
    admin_iam, ec2, fixed = box.client("iam"), box.client("ec2"), box.info["layout"]
    trust = json.loads(json.dumps(iam.ASSUME_EC2))
    # EC2 itself assumes the role on a real instance; here the test's admin does, so it is
    # trusted too (the session's policies are the role's either way)
    trust["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": box.admin["arn"]}, "Action": "sts:AssumeRole"}
    )
    role = admin_iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    admin_iam.create_instance_profile(InstanceProfileName=ROLE)
    admin_iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)
    nodes, enis = [], []
    for subnet in ("a", "b"):
        inst = ec2.run_instances(
            ImageId=fixed["ami"],
            MinCount=1,
            MaxCount=1,
            SubnetId=fixed["subnets"][subnet],
            InstanceType="t3.micro",
            IamInstanceProfile={"Name": ROLE},
        )["Instances"][0]
        nodes.append(inst["InstanceId"])
        enis.append(inst["NetworkInterfaces"][0]["NetworkInterfaceId"])
    tables = (fixed["route_tables"]["a"], fixed["route_tables"]["b"])
    for table in tables:
        ec2.create_route(RouteTableId=table, DestinationCidrBlock=f"{OVERLAY}/32", NetworkInterfaceId=enis[0])
    creds = box.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName=nodes[0])["Credentials"]
    config = work / "aws-config"
    config.write_text(f"[default]\nregion = {REGION}\n")  # what hacloud renders to /root/.aws/config
    # `--profile default` makes the CLI skip the environment's keys; on EC2 they come from IMDS
    # (WP3), here from the profile's credentials file (0600: it holds the session's secret)
    shared = work / "aws-credentials"
    shared.touch(mode=0o600)
    shared.write_text(
        f"[default]\naws_access_key_id = {creds['AccessKeyId']}\naws_secret_access_key = "
        f"{creds['SecretAccessKey']}\naws_session_token = {creds['SessionToken']}\n"
    )
    env = {
        **box.cli_env(),
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(shared),
        "PYTHONPATH": str(_syslog_to_stderr(work)),
    }
    return Pair(box, netns, (nodes[0], nodes[1]), (enis[0], enis[1]), tables, fixed["eip_allocation"], env)


def _syslog_to_stderr(work: Path) -> Path:
    """fence_aws logs its failures only to syslog (its logger has just a SyslogLibHandler, and
    this host has no /dev/log); on a node they land in the journal. This mirrors each syslog
    line to stderr, as the journal would show it; nothing else of the agent changes."""
    shim = work / "syslog-shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys, syslog\n"
        "def _mirror(*args):\n"
        "    sys.stderr.write('syslog: ' + str(args[-1]) + '\\n')\n"
        "syslog.syslog = _mirror\n"
    )
    return shim


def hacloud_policy(pair: Pair, kind: str) -> dict[str, Any]:
    """What hacloud's provider puts on the instance profile for a spec with this VIP kind."""
    return iam.agent_policy(pair_spec(pair, kind), REGION, layout.ACCOUNT_ID, list(pair.nodes))


def pair_spec(pair: Pair, kind: str) -> Spec:
    """An AWS spec for the pair, with this VIP kind."""
    account = Account(
        vpc=pair.box.info["layout"]["vpc"],
        subnets=(pair.box.info["layout"]["subnets"]["a"], pair.box.info["layout"]["subnets"]["b"]),
        route_tables=pair.tables,
        ami=pair.box.info["layout"]["ami"],
    )
    doc = aws_spec_doc(account)
    if kind == "awseip":
        eip = pair.box.info["layout"]["eip_address"]
        doc["vip"] = {"kind": "awseip", "elastic_ip": eip, "allocation_id": pair.alloc}
    return spec_of(doc)


def refused(res: Any) -> bool:
    """The stock client's own words for an EC2 refusal."""
    text: str = res.stdout + res.stderr
    return "UnauthorizedOperation" in text and "You are not authorized to perform this operation" in text


def fence_round(pair: Pair) -> None:
    """status, off, on of the peer with fence_aws, checked against EC2's own state."""
    peer = pair.peer_running()
    res = pair.fence("status", peer)
    assert res.returncode == 0 and "Status: ON" in res.stdout, res.stderr
    res = pair.fence("off", peer)
    assert res.returncode == 0 and not refused(res), res.stderr
    assert pair.state(peer) == "stopped"
    res = pair.fence("on", peer)
    assert res.returncode == 0 and not refused(res), res.stderr
    assert pair.state(peer) == "running"


def test_hacloud_policy_lets_the_stock_agents_act_for_a_move_ip_pair(pair: Pair) -> None:
    pair.put_policy(hacloud_policy(pair, "aws-vpc-move-ip"))
    fence_round(pair)
    for table in pair.tables:
        res = pair.cli("describe-route-tables", rtb=table)
        assert res.returncode == 0 and res.stdout.split() == [pair.route_target(table)], res.stderr
        for eni in (pair.enis[1], pair.enis[0]):  # to the peer and back
            res = pair.cli("replace-route", rtb=table, eni=eni)
            assert res.returncode == 0, res.stderr
            assert pair.route_target(table) == eni


def test_hacloud_policy_lets_the_stock_agents_act_for_an_elastic_ip_pair(pair: Pair) -> None:
    pair.put_policy(hacloud_policy(pair, "awseip"))
    fence_round(pair)
    for node in (pair.nodes[0], pair.nodes[1]):
        res = pair.cli("associate-address", instance=node, alloc=pair.alloc)
        assert res.returncode == 0, res.stderr
        assert pair.eip_instance() == node
    res = pair.cli("describe-addresses", alloc=pair.alloc)
    assert res.returncode == 0, res.stderr
    assoc = json.loads(res.stdout)["Addresses"][0]["AssociationId"]
    res = pair.cli("disassociate-address", assoc=assoc)
    assert res.returncode == 0, res.stderr
    assert not pair.eip_instance()


def _edit(policy: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    policy = json.loads(json.dumps(policy))
    for st in policy["Statement"]:
        change(st)
    return policy


def _resources(rewrite: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def change(st: dict[str, Any]) -> None:
        if isinstance(st["Resource"], list):
            st["Resource"] = [rewrite(r) for r in st["Resource"]]

    return change


def _drop(action: str) -> Callable[[dict[str, Any]], None]:
    def change(st: dict[str, Any]) -> None:
        st["Action"] = [a for a in st["Action"] if a != action] or ["ec2:DescribeTags"]

    return change


FENCE_BREAKS = {
    "wrong ARN format (instances/)": lambda pair: _resources(
        lambda r: r.replace(":instance/", ":instances/")
    ),
    "the wrong instance": lambda pair: _resources(lambda r: r.replace(pair.nodes[1], pair.nodes[0])),
    "the wrong region": lambda pair: _resources(lambda r: r.replace(f":{REGION}:", ":us-east-1:")),
    "no ec2:StopInstances": lambda pair: _drop("ec2:StopInstances"),
}


@pytest.mark.parametrize("case", sorted(FENCE_BREAKS))
def test_a_broken_fence_policy_is_refused_in_fence_aws_own_output(pair: Pair, case: str) -> None:
    policy = _edit(hacloud_policy(pair, "aws-vpc-move-ip"), FENCE_BREAKS[case](pair))
    pair.put_policy(policy)
    peer = pair.peer_running()
    assert pair.fence("status", peer).returncode == 0  # DescribeInstances on "*" still allowed
    res = pair.fence("off", peer)
    assert res.returncode != 0 and refused(res), res.stderr
    assert (
        f"ec2:StopInstances on resource: arn:aws:ec2:{REGION}:{layout.ACCOUNT_ID}:instance/{peer}"
        in res.stderr
    )
    assert pair.state(peer) == "running"


def test_no_replace_route_is_refused_in_the_cli_output_and_the_route_stays(pair: Pair) -> None:
    policy = hacloud_policy(pair, "aws-vpc-move-ip")
    policy["Statement"] = [st for st in policy["Statement"] if "ec2:ReplaceRoute" not in st["Action"]]
    pair.put_policy(policy)
    table = pair.tables[0]
    before = pair.route_target(table)
    assert pair.cli("describe-route-tables", rtb=table).returncode == 0
    res = pair.cli("replace-route", rtb=table, eni=pair.enis[1])
    assert res.returncode != 0 and refused(res), res.stderr
    assert f"route-table/{table}" in res.stderr
    assert pair.route_target(table) == before


def test_a_replace_route_scoped_to_another_table_is_refused(pair: Pair) -> None:
    policy = _edit(
        hacloud_policy(pair, "aws-vpc-move-ip"),
        _resources(lambda r: r.replace(pair.tables[0], "rtb-0123456789abcdef0")),
    )
    pair.put_policy(policy)
    assert refused(pair.cli("replace-route", rtb=pair.tables[0], eni=pair.enis[1]))
    assert pair.cli("replace-route", rtb=pair.tables[1], eni=pair.enis[0]).returncode == 0


@pytest.mark.parametrize("action", ["ec2:AssociateAddress", "ec2:DisassociateAddress"])
def test_no_associate_or_disassociate_is_refused_in_the_cli_output(pair: Pair, action: str) -> None:
    pair.put_policy(hacloud_policy(pair, "awseip"))
    assert pair.cli("associate-address", instance=pair.nodes[0], alloc=pair.alloc).returncode == 0
    pair.put_policy(_edit(hacloud_policy(pair, "awseip"), _drop(action)))
    if action == "ec2:AssociateAddress":
        res = pair.cli("associate-address", instance=pair.nodes[1], alloc=pair.alloc)
    else:
        desc = pair.cli("describe-addresses", alloc=pair.alloc)
        assoc = json.loads(desc.stdout)["Addresses"][0]["AssociationId"]
        res = pair.cli("disassociate-address", assoc=assoc)
    assert res.returncode != 0 and refused(res), res.stderr
    assert f"elastic-ip/{pair.alloc}" in res.stderr  # judged on the address the call names
    assert pair.eip_instance() == pair.nodes[0]


def test_agents_are_the_stock_packages(pair: Pair) -> None:
    """The calls above are the installed agents' own lines (so a resource-agents update that
    changes them shows here)."""
    move = Path("/usr/lib/ocf/resource.d/heartbeat/aws-vpc-move-ip").read_text()
    eip = Path("/usr/lib/ocf/resource.d/heartbeat/awseip").read_text()
    assert "ec2 replace-route --route-table-id $rtb --destination-cidr-block ${OCF_RESKEY_ip}/32" in move
    assert "ec2 describe-route-tables --route-table-ids $rtb" in move
    assert "ec2 associate-address  \\\n            --instance-id ${INSTANCE_ID} \\\n" in eip
    assert "ec2 disassociate-address \\\n        --association-id ${ASSOCIATION_ID}" in eip
    assert os.access(FENCE_AWS, os.X_OK)


def _raw(client: Any) -> list[dict[str, Any]]:
    """Every raw response ``client`` receives (status and body, before botocore parses them)."""
    seen: list[dict[str, Any]] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        seen.append({"status": response_dict["status_code"], "body": response_dict["body"]})

    client.meta.events.register("before-parse", keep)
    return seen


def _session_client(pair: Pair, service: str) -> Any:
    return pair.box.client(
        service,
        key=pair.env["AWS_ACCESS_KEY_ID"],
        secret=pair.env["AWS_SECRET_ACCESS_KEY"],
        token=pair.env["AWS_SESSION_TOKEN"],
    )


def test_refusals_have_each_service_s_own_shape(pair: Pair) -> None:
    """EC2: HTTP 403, ``<Response><Errors><Error><Code>UnauthorizedOperation`` and a
    ``<RequestID>`` (EC2 API Reference, "Error responses"); IAM and STS: HTTP 403,
    ``<ErrorResponse xmlns=...>`` with ``<Error><Type>Sender</Type><Code>AccessDenied`` and a
    ``<RequestId>`` (the Query API's error shape), each in its service's namespace."""
    import xml.etree.ElementTree as ET

    from botocore.exceptions import ClientError

    pair.put_policy(_edit(hacloud_policy(pair, "aws-vpc-move-ip"), _drop("ec2:StopInstances")))
    calls = [
        ("ec2", lambda c: c.stop_instances(InstanceIds=[pair.nodes[1]], Force=True)),
        ("iam", lambda c: c.get_role(RoleName=ROLE)),
        (
            "sts",
            lambda c: c.assume_role(
                RoleArn=f"arn:aws:iam::{layout.ACCOUNT_ID}:role/{ROLE}", RoleSessionName="other"
            ),
        ),
    ]
    for service, call in calls:
        client = _session_client(pair, service)
        raw = _raw(client)
        with pytest.raises(ClientError):
            call(client)
        assert raw[-1]["status"] == 403
        root = ET.fromstring(raw[-1]["body"])
        if service == "ec2":
            assert root.tag == "Response" and root.findtext("Errors/Error/Code") == "UnauthorizedOperation"
            assert root.findtext("RequestID")
        else:
            ns = {
                "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
                "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
            }[service]
            assert root.tag == f"{{{ns}}}ErrorResponse"
            assert root.findtext(f"{{{ns}}}Error/{{{ns}}}Code") == "AccessDenied"
            assert root.findtext(f"{{{ns}}}Error/{{{ns}}}Type") == "Sender"
            assert root.findtext(f"{{{ns}}}RequestId")
    assert pair.state(pair.nodes[1]) == "running"


def test_dry_run_answers_the_permission_question_without_acting(pair: Pair) -> None:
    """What a node check can ask on real AWS and in the box alike: ``--dry-run`` gives
    DryRunOperation when allowed and UnauthorizedOperation when not (StopInstances API
    reference), and nothing stops."""
    argv = f"--profile default ec2 stop-instances --dry-run --force --instance-ids {pair.nodes[1]}".split()
    pair.put_policy(hacloud_policy(pair, "aws-vpc-move-ip"))
    res = in_netns(pair.netns, [AWS_CLI, *argv], pair.env)
    assert "DryRunOperation" in res.stderr and not refused(res), res.stderr
    pair.put_policy(_edit(hacloud_policy(pair, "aws-vpc-move-ip"), _drop("ec2:StopInstances")))
    res = in_netns(pair.netns, [AWS_CLI, *argv], pair.env)
    assert refused(res), res.stderr
    assert pair.state(pair.nodes[1]) == "running"


def test_a_condition_the_box_cannot_judge_is_named_in_the_agent_output(pair: Pair) -> None:
    policy = hacloud_policy(pair, "aws-vpc-move-ip")
    for st in policy["Statement"]:
        if "ec2:ReplaceRoute" in st["Action"]:
            st["Condition"] = {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}
    pair.put_policy(policy)
    res = pair.cli("replace-route", rtb=pair.tables[0], eni=pair.enis[1])
    assert refused(res) and "aws:SourceIp" in res.stderr and "not evaluated" in res.stderr, res.stderr


def test_dry_run_of_replace_route_changes_nothing(pair: Pair) -> None:
    """moto itself would carry out a ReplaceRoute with DryRun; EC2 (and the box) only answers."""
    table = pair.tables[1]
    pair.put_policy(hacloud_policy(pair, "aws-vpc-move-ip"))
    before = pair.route_target(table)
    other = pair.enis[1] if before == pair.enis[0] else pair.enis[0]
    argv = AGENT_CALLS["replace-route"].format(region=REGION, ip=OVERLAY, rtb=table, eni=other).split()
    res = in_netns(pair.netns, [AWS_CLI, *argv, "--dry-run"], pair.env)
    assert "DryRunOperation" in res.stderr, res.stderr
    assert pair.route_target(table) == before


@pytest.mark.parametrize("kind", ["aws-vpc-move-ip", "awseip"])
def test_the_permission_probe_passes_on_hacloud_policy_and_names_what_is_missing(
    pair: Pair, kind: str
) -> None:
    """The probe `up` and fence-test's preflight run on each node (EC2 dry runs with the node's
    role), judged by the box: hacloud's policy passes; without StopInstances, or without the
    VIP agent's action, it fails naming the call; and a dry run changes nothing."""
    probe = permission_probe(pair_spec(pair, kind), REGION, list(pair.nodes))
    assert probe is not None and probe.before_faults
    peer = pair.peer_running()
    pair.put_policy(hacloud_policy(pair, kind))
    res = in_netns(pair.netns, ["sh", "-c", probe.command], pair.env)
    assert res.returncode == 0, res.stdout + res.stderr
    route, eip = pair.route_target(pair.tables[0]), pair.eip_instance()
    vip_action = (
        ("ec2:ReplaceRoute", "replace_route")
        if kind == "aws-vpc-move-ip"
        else (
            "ec2:AssociateAddress",
            "associate_address",
        )
    )
    for action, call in (("ec2:StopInstances", "stop_instances"), vip_action):
        pair.put_policy(_edit(hacloud_policy(pair, kind), _drop(action)))
        res = in_netns(pair.netns, ["sh", "-c", probe.command], pair.env)
        assert res.returncode == 1 and f"{call}: UnauthorizedOperation" in res.stdout, res.stdout + res.stderr
    assert pair.state(peer) == "running" and pair.state(pair.nodes[0]) == "running"
    assert pair.route_target(pair.tables[0]) == route and pair.eip_instance() == eip
