"""The AWS provider against a real moto server over HTTP (testbed.md §3), plus botocore Stubber
tests for the errors moto cannot produce (throttling, capacity).

Every expectation about the account is read back independently (tests/awstools.py census:
everything in the account, tagged or not), never from what the provider returned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from awstools import REGION, Account, aws_spec_doc, byo_vpc, census, tagged
from botocore.stub import Stubber
from hacloud_aws import iam
from hacloud_aws.api import Clients
from hacloud_aws.infra import Infra, ebs_device_path

from hacloud.errors import HacloudError
from hacloud.provision.provider import get_provider
from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace


@pytest.fixture
def account(aws: tuple[Any, Any]) -> Account:
    return byo_vpc(aws[0])


def workspace(tmp_path: Path, doc: dict[str, Any], log: list[str] | None = None) -> Workspace:
    path = tmp_path / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Workspace(load_spec(path), path, (log.append if log is not None else lambda _m: None))


# ---------------------------------------------------------------- the shared provider contract


def test_what_ensure_makes_as_ec2_reports_it(aws: tuple[Any, Any], account: Account, tmp_path: Path) -> None:
    ec2, iamc = aws
    provider = get_provider("aws")
    before = census(ec2, iamc)
    log: list[str] = []
    ws = workspace(tmp_path, aws_spec_doc(account), log)
    inv = provider.ensure_volumes(ws, provider.ensure_nodes(ws))
    made = census(ec2, iamc)
    assert len(made["instances"]) == 2 and len(made["volumes"]) == 2
    assert len(made["groups"]) == len(before["groups"]) + 1
    assert made["roles"] == ["hacloud-prod-db"] and made["profiles"] == ["hacloud-prod-db"]

    # the instances, as EC2 reports them: two zones, the right subnets, IMDSv2, the profile
    res = ec2.describe_instances(InstanceIds=[n.id for n in inv.nodes])["Reservations"]
    insts = {i["InstanceId"]: i for r in res for i in r["Instances"]}
    assert {i["Placement"]["AvailabilityZone"] for i in insts.values()} == {f"{REGION}a", f"{REGION}b"}
    assert [insts[n.id]["SubnetId"] for n in inv.nodes] == list(account.subnets)
    for node in inv.nodes:
        inst = insts[node.id]
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["IamInstanceProfile"]["Arn"].endswith("/hacloud-prod-db")
        assert (
            node.ssh_address == inst["PrivateIpAddress"]
            and node.zone == inst["Placement"]["AvailabilityZone"]
        )
        attr = ec2.describe_instance_attribute(InstanceId=node.id, Attribute="sourceDestCheck")
        assert attr["SourceDestCheck"]["Value"] is False
        # one gp3 volume in the node's zone, attached to it, named on the node by its id
        vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [node.id]}])[
            "Volumes"
        ]
        data = [v for v in vols if v["VolumeType"] == "gp3"]
        assert len(data) == 1 and data[0]["AvailabilityZone"] == node.zone and data[0]["Size"] == 100
        assert node.volumes["r0"] == ebs_device_path(data[0]["VolumeId"])
        assert node.volumes["r0"].endswith(data[0]["VolumeId"].replace("-", ""))

    # corosync link 1: a secondary private IP on each node's primary ENI, as EC2 reports it
    # (ENIs read on their own, not from the instance description ensure used)
    for node in inv.nodes:
        eni = insts[node.id]["NetworkInterfaces"][0]["NetworkInterfaceId"]
        ips = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0][
            "PrivateIpAddresses"
        ]
        primary = [a["PrivateIpAddress"] for a in ips if a["Primary"]]
        secondary = [a["PrivateIpAddress"] for a in ips if not a["Primary"]]
        assert len(secondary) == 1 and node.links == (primary[0], secondary[0])
        assert node.extra["os_links"] == secondary[0]
    assert sorted(a for _, a in made["secondary_ips"]) == sorted(n.links[1] for n in inv.nodes)

    # the overlay route exists in every listed table and points at node1's interface
    eni1 = insts[inv.nodes[0].id]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    for rtb in account.route_tables:
        table = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
        routes = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "198.51.100.10/32"]
        assert [r["NetworkInterfaceId"] for r in routes] == [eni1]

    # the security group: corosync and DRBD only from the group itself, SSH from the admin CIDR
    group = ec2.describe_security_groups(Filters=[{"Name": "tag:hacloud:cluster", "Values": ["prod-db"]}])[
        "SecurityGroups"
    ][0]
    perms = {(p["IpProtocol"], p["FromPort"]): p for p in group["IpPermissions"]}
    assert set(perms) == {("udp", 5405), ("udp", 5406), ("tcp", 7789), ("tcp", 22)}  # both links
    for key in (("udp", 5405), ("udp", 5406), ("tcp", 7789)):
        assert [g["GroupId"] for g in perms[key]["UserIdGroupPairs"]] == [group["GroupId"]]
        assert perms[key]["IpRanges"] == []
    assert [r["CidrIp"] for r in perms[("tcp", 22)]["IpRanges"]] == ["192.0.2.0/24"]

    # a second run creates nothing and changes nothing
    infra2 = provider._infra(ws)  # type: ignore[attr-defined]
    inv2 = infra2.ensure()
    assert infra2.changes == []
    assert census(ec2, iamc) == made
    assert inv2 == inv
    # discover (read-only) sees exactly what ensure made
    assert provider.discover(ws) == inv

    provider.teardown(ws, delete_volumes=True)


def test_shared_provider_contract(aws: tuple[Any, Any], account: Account, tmp_path: Path) -> None:
    from contract import Target, run_contract

    ec2, iamc = aws
    run_contract(
        Target(
            get_provider("aws"),
            workspace(tmp_path, aws_spec_doc(account)),
            census=lambda: census(ec2, iamc),
            leftovers=lambda: tagged(ec2, iamc, "prod-db"),
        )
    )
    gone = census(ec2, iamc)
    assert gone["instances"] == [] and gone["roles"] == [] and gone["profiles"] == []
    assert not any(r[1] == "198.51.100.10/32" for r in gone["routes"])  # the routes hacloud made


def test_plan_changes_nothing_and_prints_the_policy(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, iamc = aws
    before = census(ec2, iamc)
    ws = workspace(tmp_path, aws_spec_doc(account))
    planned, policy = get_provider("aws").plan_infrastructure(ws)  # type: ignore[attr-defined]
    changes = [str(c) for c in planned]
    assert census(ec2, iamc) == before
    assert any("create instance" in c for c in changes) and any("IAM: create role" in c for c in changes)
    assert sum("corosync link 1" in c for c in changes) == 2
    doc = json.loads(policy)
    assert {a for st in doc["Statement"] for a in st["Action"]} == {
        "ec2:DescribeInstances",
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:DescribeRouteTables",
        "ec2:ReplaceRoute",
    }


def test_existing_instances_by_id_are_adopted_and_kept(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, iamc = aws
    ids = []
    for subnet in account.subnets:
        inst = ec2.run_instances(
            ImageId=account.ami, InstanceType="t3.medium", MinCount=1, MaxCount=1, SubnetId=subnet
        )["Instances"][0]
        ids.append(inst["InstanceId"])
    doc = aws_spec_doc(account)
    doc["nodes"] = [{"name": "node1", "id": ids[0]}, {"name": "node2", "id": ids[1]}]
    ws = workspace(tmp_path, doc)
    provider = get_provider("aws")
    inv = provider.ensure_nodes(ws)
    assert [n.id for n in inv.nodes] == ids
    assert len(census(ec2, iamc)["instances"]) == 2  # none created
    for iid in ids:
        assert (
            ec2.describe_instance_attribute(InstanceId=iid, Attribute="sourceDestCheck")["SourceDestCheck"][
                "Value"
            ]
            is False
        )
        assoc = ec2.describe_iam_instance_profile_associations(
            Filters=[{"Name": "instance-id", "Values": [iid]}]
        )["IamInstanceProfileAssociations"]
        assert assoc and assoc[0]["IamInstanceProfile"]["Arn"].endswith("/hacloud-prod-db")
    # link 1 on the kept instances too, recorded on the instance for teardown
    made = census(ec2, iamc)
    assert len(made["secondary_ips"]) == 2
    assert sorted(a for _, a in made["secondary_ips"]) == sorted(n.links[1] for n in inv.nodes)
    assert sorted(tagged(ec2, iamc, "prod-db")["link_tags"]) == sorted(ids)
    provider.teardown(ws, delete_volumes=True)
    gone = census(ec2, iamc)
    assert gone["secondary_ips"] == []  # exactly what hacloud added is given back
    assert tagged(ec2, iamc, "prod-db")["link_tags"] == []
    alive = gone["instances"]
    assert alive == sorted(ids)  # hacloud did not make them, so it does not terminate them
    for iid in ids:
        groups = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
            "SecurityGroups"
        ]
        assert not any(g["GroupName"] == "hacloud-prod-db" for g in groups)


def test_bad_account_is_reported_whole_and_nothing_is_created(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, iamc = aws
    other = ec2.create_subnet(VpcId=account.vpc, CidrBlock="192.0.2.128/26", AvailabilityZone=f"{REGION}a")
    doc = aws_spec_doc(account)
    doc["provider"]["options"]["subnets"] = [account.subnets[0], other["Subnet"]["SubnetId"]]
    doc["provider"]["options"]["key_name"] = "nobody"
    doc["vip"]["address"] = "192.0.2.200"  # inside the VPC: not an overlay IP
    before = census(ec2, iamc)
    with pytest.raises(HacloudError) as info:
        get_provider("aws").ensure_nodes(workspace(tmp_path, doc))
    text = info.value.message
    assert "3 problems" in text
    assert "provider.options.subnets" in text and f"{REGION}a" in text
    assert "provider.options.key_name" in text and "vip.address" in text
    assert "nothing was created" in info.value.remedy and info.value.code == "HAC340"
    assert census(ec2, iamc) == before


def test_missing_route_table_names_the_field(aws: tuple[Any, Any], account: Account, tmp_path: Path) -> None:
    doc = aws_spec_doc(account)
    doc["vip"]["route_tables"] = [account.route_tables[0], "rtb-0123456789abcdef0"]
    with pytest.raises(HacloudError) as info:
        get_provider("aws").ensure_nodes(workspace(tmp_path, doc))
    assert "vip.route_tables" in info.value.message and "rtb-0123456789abcdef0" in info.value.message


def test_a_foreign_route_for_the_overlay_ip_is_not_taken_over(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, _ = aws
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=account.vpc)
    ec2.create_route(
        RouteTableId=account.route_tables[1], DestinationCidrBlock="198.51.100.10/32", GatewayId=igw
    )
    with pytest.raises(HacloudError) as info:
        get_provider("aws").ensure_nodes(workspace(tmp_path, aws_spec_doc(account)))
    assert account.route_tables[1] in info.value.message and igw in info.value.message
    table = ec2.describe_route_tables(RouteTableIds=[account.route_tables[1]])["RouteTables"][0]
    assert [
        r.get("GatewayId") for r in table["Routes"] if r.get("DestinationCidrBlock") == "198.51.100.10/32"
    ] == [igw]


def test_live_checks_pass_then_name_what_broke(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    ec2, iamc = aws
    ws = workspace(tmp_path, aws_spec_doc(account))
    provider = get_provider("aws")
    inv = provider.ensure_nodes(ws)
    findings = provider.live_audit(ws, inv)
    assert findings and all(f.severity == "ok" for f in findings), [f for f in findings if f.severity != "ok"]
    # break four things behind hacloud's back
    ec2.modify_instance_attribute(InstanceId=inv.nodes[1].id, SourceDestCheck={"Value": True})
    node1 = inv.nodes[0]
    ec2.unassign_private_ip_addresses(
        NetworkInterfaceId=node1.extra["eni"], PrivateIpAddresses=[node1.links[1]]
    )
    ec2.delete_route(RouteTableId=account.route_tables[0], DestinationCidrBlock="198.51.100.10/32")
    iamc.put_role_policy(
        RoleName="hacloud-prod-db",
        PolicyName=iam.POLICY_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}],
            }
        ),
    )
    bad = {(f.code, f.message) for f in provider.live_audit(ws, inv) if f.severity == "error"}
    assert ("aws.source_dest_check", "node2: source/destination check on") in bad
    assert (
        "aws.links",
        f"node1: corosync link address(es) {node1.links[1]} no longer on any of its interfaces",
    ) in bad
    assert ("aws.route", f"{account.route_tables[0]}: 198.51.100.10/32 -> no route") in bad
    assert any(
        code == "aws.instance_profile" and "ec2:StopInstances" in msg and "ec2:ReplaceRoute" in msg
        for code, msg in bad
    )
    # and `up` repairs all four
    provider.ensure_nodes(ws)
    assert all(f.severity == "ok" for f in provider.live_audit(ws, inv))


# ---------------------------------------------------------------- errors moto cannot make


def _stubbed(tmp_path: Path, account: Account) -> tuple[Infra, Stubber, Stubber]:
    from botocore.config import Config

    ws = workspace(tmp_path, aws_spec_doc(account))
    fast = Config(retries={"mode": "standard", "max_attempts": 3})
    ec2 = boto3.client("ec2", region_name=REGION, config=fast)
    once = boto3.client(
        "ec2", region_name=REGION, config=Config(retries={"mode": "standard", "max_attempts": 1})
    )
    c = Clients(ec2=ec2, iam=None, sts=None, region=REGION, ec2_once=once)
    slept: list[float] = []
    infra = Infra(ws, c, sleep=slept.append)
    return infra, Stubber(ec2), Stubber(once)


def test_throttling_is_retried_by_botocore(
    aws: tuple[Any, Any], account: Account, tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real HTTP 503 RequestLimitExceeded answers (a proxy in front of moto): hacloud's clients
    retry them with backoff and the call succeeds."""
    from awstools import RecordingProxy
    from hacloud_aws.api import clients

    proxy = RecordingProxy(moto_url, throttle={"DescribeInstances": 3})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        ws = workspace(tmp_path, aws_spec_doc(account))
        infra = Infra(ws, clients(REGION))
        assert infra.find_instance(ws.spec.nodes[0]) is None
        assert [a for a, _ in proxy.calls].count("DescribeInstances") == 4
        assert proxy.throttle["DescribeInstances"] == 0
    finally:
        proxy.close()


def test_throttling_that_never_stops_says_to_retry_later(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    infra, stub, _ = _stubbed(tmp_path, account)
    for _ in range(3):
        stub.add_client_error("describe_instances", "RequestLimitExceeded", "Request limit exceeded.", 503)
    with stub, pytest.raises(HacloudError) as info:
        infra.find_instance(infra.spec.nodes[0])
    assert "throttling" in info.value.message and "again" in info.value.remedy
    assert info.value.code == "HAC656"


def test_capacity_error_fails_fast_naming_the_zone(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    from hacloud_aws.infra import Site

    infra, _, once = _stubbed(tmp_path, account)
    once.add_client_error(
        "run_instances",
        "InsufficientInstanceCapacity",
        "We currently do not have sufficient m6i.large capacity in the Availability Zone you requested.",
        500,
    )
    site = Site("123456789012", account.vpc, ["192.0.2.0/24"], {account.subnets[0]: f"{REGION}a"})
    with once, pytest.raises(HacloudError) as info:
        infra._run_instance(
            infra.spec.nodes[0], 0, "sg-0123456789abcdef0", "arn:aws:iam::1:instance-profile/x", site
        )
    once.assert_no_pending_responses()  # one call: no retry
    assert f"{REGION}a" in info.value.message
    assert "instance_type" in info.value.remedy and "subnets" in info.value.remedy
    assert info.value.code == "HAC654"


def test_throttled_instance_creation_backs_off_then_succeeds(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    from hacloud_aws.infra import Site

    infra, _, once = _stubbed(tmp_path, account)
    once.add_client_error("run_instances", "RequestLimitExceeded", "Request limit exceeded.", 503)
    once.add_response("run_instances", {"Instances": [{"InstanceId": "i-0123456789abcdef0"}]})
    site = Site("123456789012", account.vpc, ["192.0.2.0/24"], {account.subnets[0]: f"{REGION}a"})
    with once:
        iid = infra._run_instance(
            infra.spec.nodes[0], 0, "sg-0123456789abcdef0", "arn:aws:iam::1:instance-profile/x", site
        )
    assert iid == "i-0123456789abcdef0"


def test_no_credentials_says_how_to_log_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached: no credentials
    acct = Account(
        "vpc-0",
        ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"),
        ("rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"),
        "ami-0123456789abcdef0",
    )
    with pytest.raises(HacloudError) as info:
        get_provider("aws").ensure_nodes(workspace(tmp_path, aws_spec_doc(acct)))
    assert "no AWS credentials" in info.value.message and "aws configure" in info.value.remedy
    assert info.value.code == "HAC652"


@pytest.mark.tools
def test_cib_from_the_moto_inventory_passes_crm_verify_and_fails_over(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    import xml.etree.ElementTree as ET

    from conftest import need
    from tools import simulate_failover

    from hacloud.ops.prepare import prepare

    need("crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    ws = workspace(tmp_path, aws_spec_doc(account))
    inv = get_provider("aws").ensure_nodes(ws)
    (tmp_path / "inventory.json").write_text(inv.to_json())
    prepared = prepare(ws.spec_path, tmp_path / "inventory.json")
    assert not prepared.inventory.placeholder
    root = ET.fromstring(prepared.bundle.cib)
    maps = sorted(nv.get("value", "") for nv in root.iter("nvpair") if nv.get("name") == "pcmk_host_map")
    assert maps == sorted(f"{n.name}:{n.id}" for n in inv.nodes)  # the instances moto made
    # crm_verify on the started CIB, then the failover the scheduler plans (tests/tools.py)
    active, survivor, summary, after = simulate_failover(prepared.bundle.cib, tmp_path / "sim")
    assert f"Fence (off) {active}" in summary  # the AWS profile: fenced nodes stay down
    assert after["vip_aws"] == [("Started", survivor)]
    # the file the AWS CLI needs for `--profile default` is rendered for both nodes
    for node in inv.nodes:
        cfg = next(f for f in prepared.bundle.files[node.name] if f.path == "/root/.aws/config")
        assert b"[default]" in cfg.content and f"region = {REGION}".encode() in cfg.content


def test_links_the_spec_names_are_kept_as_given(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    """An adopted pair whose spec names one link each keeps one link (HAC050 then warns): hacloud
    adds no address and opens only link 0's port; a secondary IP someone else gave stays."""
    ec2, iamc = aws
    ids, private = [], []
    for subnet in account.subnets:
        inst = ec2.run_instances(
            ImageId=account.ami, InstanceType="t3.medium", MinCount=1, MaxCount=1, SubnetId=subnet
        )["Instances"][0]
        ids.append(inst["InstanceId"])
        private.append(inst["PrivateIpAddress"])
    theirs = ec2.assign_private_ip_addresses(
        NetworkInterfaceId=inst["NetworkInterfaces"][0]["NetworkInterfaceId"],
        SecondaryPrivateIpAddressCount=1,
    )
    doc = aws_spec_doc(account)
    doc["nodes"] = [
        {"name": f"node{i + 1}", "id": iid, "links": [ip]}
        for i, (iid, ip) in enumerate(zip(ids, private, strict=True))
    ]
    ws = workspace(tmp_path, doc)
    before = census(ec2, iamc)["secondary_ips"]
    inv = get_provider("aws").ensure_nodes(ws)
    assert [n.links for n in inv.nodes] == [(ip,) for ip in private]
    assert census(ec2, iamc)["secondary_ips"] == before and len(before) == 1
    group = ec2.describe_security_groups(Filters=[{"Name": "tag:hacloud:cluster", "Values": ["prod-db"]}])[
        "SecurityGroups"
    ][0]
    assert sorted(p["FromPort"] for p in group["IpPermissions"] if p["IpProtocol"] == "udp") == [5405]
    get_provider("aws").teardown(ws, delete_volumes=True)
    assert census(ec2, iamc)["secondary_ips"] == before  # not hacloud's: left alone
    assert theirs["NetworkInterfaceId"]


def test_a_lost_link_address_comes_back_as_the_same_ip(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    """Someone unassigns link 1's address behind hacloud's back: the next `up` assigns the same
    IP again (corosync.conf names it), one change, and the inventory is unchanged."""
    ec2, iamc = aws
    ws = workspace(tmp_path, aws_spec_doc(account))
    provider = get_provider("aws")
    inv = provider.ensure_nodes(ws)
    node = inv.nodes[0]
    ec2.unassign_private_ip_addresses(
        NetworkInterfaceId=node.extra["eni"], PrivateIpAddresses=[node.links[1]]
    )
    assert node.links[1] not in {a for _, a in census(ec2, iamc)["secondary_ips"]}
    infra = provider._infra(ws)  # type: ignore[attr-defined]
    assert infra.ensure() == inv
    added = f"node1: add a secondary private IP to {node.extra['eni']} (corosync link 1)"
    assert [str(c) for c in infra.changes] == [added]
    ips = ec2.describe_network_interfaces(NetworkInterfaceIds=[node.extra["eni"]])["NetworkInterfaces"][0]
    assert [a["PrivateIpAddress"] for a in ips["PrivateIpAddresses"] if not a["Primary"]] == [node.links[1]]
    provider.teardown(ws, delete_volumes=True)


def test_profile_value_one_link_adds_no_address_and_takes_hacloud_s_back(
    aws: tuple[Any, Any], account: Account, tmp_path: Path
) -> None:
    """`overrides: {corosync.links: 1}`: a pair made with two links gives link 1's address and tag
    back on the next `up` (one change per node), then renders one link."""
    ec2, iamc = aws
    doc = aws_spec_doc(account)
    ws = workspace(tmp_path, doc)
    provider = get_provider("aws")
    two = provider.ensure_nodes(ws)
    assert [len(n.links) for n in two.nodes] == [2, 2]
    doc["overrides"] = {"corosync.links": 1}
    ws = workspace(tmp_path, doc)
    infra = provider._infra(ws)  # type: ignore[attr-defined]
    one = infra.ensure()
    assert [n.links for n in one.nodes] == [(n.links[0],) for n in two.nodes]
    assert census(ec2, iamc)["secondary_ips"] == [] and tagged(ec2, iamc, "prod-db")["link_tags"] == []
    assert sum("remove secondary private IP" in str(c) for c in infra.changes) == 2
    group = ec2.describe_security_groups(Filters=[{"Name": "tag:hacloud:cluster", "Values": ["prod-db"]}])[
        "SecurityGroups"
    ][0]
    assert sorted(p["FromPort"] for p in group["IpPermissions"] if p["IpProtocol"] == "udp") == [5405]
    again = provider._infra(ws)  # type: ignore[attr-defined]
    assert again.ensure() == one and again.changes == []
    provider.teardown(ws, delete_volumes=True)
