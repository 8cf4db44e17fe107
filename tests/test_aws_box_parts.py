"""The AWS box's parts that need no daemon: the moto patches (one contract test for what EC2
does, one canary for what moto 5.2.5 does without the patch, so an upgrade that changes either
fails here), the seeded layout, the lab PKI (judged by ``openssl``), the throttle rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from boxtools import REGION, running_box
from hacloud_aws.box import layout, moto_ext, pki
from hacloud_aws.box.frontend import Throttles

from hacloud.errors import HacloudError


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """boto3 against moto in this process (mock_aws: no network at all)."""
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def _two_zones(ec2: Any) -> tuple[str, str, str]:
    vpc = ec2.create_vpc(CidrBlock="192.0.2.0/24")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="192.0.2.0/26", AvailabilityZone=f"{REGION}a")["Subnet"][
        "SubnetId"
    ]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="192.0.2.64/26", AvailabilityZone=f"{REGION}b")["Subnet"][
        "SubnetId"
    ]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return a, b, ami


def _instance(ec2: Any, subnet: str, ami: str) -> str:
    return str(
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
    )


def _attach_across_zones(ec2: Any) -> None:
    a, _b, ami = _two_zones(ec2)
    iid = _instance(ec2, a, ami)
    vol = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}b")["VolumeId"]
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")


def test_attach_across_zones_is_refused_as_ec2_does(ec2: Any) -> None:
    with moto_ext.patched():
        with pytest.raises(ClientError) as exc:
            _attach_across_zones(ec2)
        assert exc.value.response["Error"]["Code"] == "InvalidVolume.ZoneMismatch"
        a, _, ami = _two_zones(ec2)
        iid = _instance(ec2, a, ami)
        same = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
        assert ec2.attach_volume(VolumeId=same, InstanceId=iid, Device="/dev/sdf")["VolumeId"] == same


def test_canary_unpatched_moto_attaches_across_zones(ec2: Any) -> None:
    _attach_across_zones(ec2)  # when this raises, moto fixed it: drop the patch


def _move_eip(ec2: Any) -> tuple[str, str]:
    a, b, ami = _two_zones(ec2)
    first, second = _instance(ec2, a, ami), _instance(ec2, b, ami)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=first)
    ec2.associate_address(AllocationId=alloc, InstanceId=second)  # as awseip does: no AllowReassociation
    return first, second


def _public_ip(ec2: Any, iid: str) -> str | None:
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    value = inst.get("PublicIpAddress")
    return str(value) if value else None


def test_elastic_ip_moves_without_allow_reassociation_and_leaves_the_old_instance(ec2: Any) -> None:
    with moto_ext.patched():
        first, second = _move_eip(ec2)
        address = ec2.describe_addresses()["Addresses"][0]
        assert address["InstanceId"] == second
        assert _public_ip(ec2, second) == address["PublicIp"]
        assert _public_ip(ec2, first) != address["PublicIp"]


def test_canary_unpatched_moto_refuses_to_move_an_elastic_ip(ec2: Any) -> None:
    with pytest.raises(ClientError) as exc:
        _move_eip(ec2)
    assert exc.value.response["Error"]["Code"] == "Resource.AlreadyAssociated"


def test_patches_install_and_uninstall_cleanly() -> None:
    before = [owner.__dict__[name] for owner, name, _ in moto_ext._targets()]
    undo = moto_ext.install()
    assert [owner.__dict__[name] for owner, name, _ in moto_ext._targets()] != before
    moto_ext.uninstall(undo)
    assert [owner.__dict__[name] for owner, name, _ in moto_ext._targets()] == before


def test_wrong_moto_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_ext, "MOTO_VERSION", "0.0.1")
    with pytest.raises(HacloudError) as exc:
        moto_ext.check_version()
    assert exc.value.code == "HAC693"


def test_layout_ids_are_identical_across_starts(tmp_path: Path) -> None:
    seen = []
    for n in range(2):
        with running_box(tmp_path / f"box{n}") as box:
            iid = box.run_instance("b")
            inst = box.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
            nic = inst["NetworkInterfaces"][0]
            seen.append(
                (
                    box.info["layout"],
                    iid,
                    nic["NetworkInterfaceId"],
                    nic["PrivateIpAddress"],
                    nic["MacAddress"],
                )
            )
    assert seen[0] == seen[1]
    fixed = seen[0][0]
    assert fixed["eip_address"] == layout.ELASTIC_IP and len(set(fixed["subnets"].values())) == 3


# -- PKI -------------------------------------------------------------------------------------


def _openssl_verify(paths: layout.BoxPaths, *check: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "openssl",
        "verify",
        "-CAfile",
        str(paths.ca_pem),
        "-purpose",
        "sslserver",
        *check,
        str(paths.tls_pem),
    ]
    return subprocess.run(argv, capture_output=True, text=True)


def test_certificate_names_the_real_endpoints_and_chains_to_the_box_ca(tmp_path: Path) -> None:
    paths = layout.prepare(tmp_path / "box")
    pki.ensure(paths, REGION)
    for name in pki.endpoint_names(REGION):
        assert _openssl_verify(paths, "-verify_hostname", name).returncode == 0, name
    assert _openssl_verify(paths, "-verify_ip", "127.0.0.1").returncode == 0
    assert _openssl_verify(paths, "-verify_hostname", "ec2.us-east-1.amazonaws.com").returncode != 0
    assert _openssl_verify(paths, "-verify_ip", "192.0.2.1").returncode != 0
    for key in (paths.ca_key, paths.tls_key):
        assert key.stat().st_mode & 0o777 == 0o600


def test_ca_is_kept_and_the_leaf_follows_the_region(tmp_path: Path) -> None:
    paths = layout.prepare(tmp_path / "box")
    pki.ensure(paths, REGION)
    ca, leaf = paths.ca_pem.read_bytes(), paths.tls_pem.read_bytes()
    pki.ensure(paths, REGION)
    assert (paths.ca_pem.read_bytes(), paths.tls_pem.read_bytes()) == (ca, leaf)  # a re-run changes nothing
    pki.ensure(paths, "us-east-1")
    assert paths.ca_pem.read_bytes() == ca and paths.tls_pem.read_bytes() != leaf
    assert _openssl_verify(paths, "-verify_hostname", "ec2.us-east-1.amazonaws.com").returncode == 0


def test_a_readable_private_key_is_refused(tmp_path: Path) -> None:
    paths = layout.prepare(tmp_path / "box")
    pki.ensure(paths, REGION)
    paths.ca_key.chmod(0o644)
    with pytest.raises(HacloudError) as exc:
        pki.ensure(paths, REGION)
    assert exc.value.code == "HAC697"


# -- throttle rules (an injected clock: no sleeping) -----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_next_n_then_for_t_seconds() -> None:
    clock = Clock()
    rules = Throttles(clock=clock)
    rules.set("StopInstances", count=2)
    assert [rules.take("StopInstances") for _ in range(4)] == [True, True, False, False]
    assert not rules.take("StartInstances")
    rules.set("StopInstances", seconds=30)
    assert rules.take("StopInstances")
    clock.now += 30
    assert not rules.take("StopInstances")


def test_throttle_token_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    rules = Throttles(clock=clock)
    rules.set("DescribeInstances", bucket=(3, 2.0))
    assert [rules.take("DescribeInstances") for _ in range(4)] == [False, False, False, True]
    clock.now += 0.5  # one token back at 2 per second
    assert [rules.take("DescribeInstances") for _ in range(2)] == [False, True]
    clock.now += 60  # never more than the bucket holds
    assert [rules.take("DescribeInstances") for _ in range(4)] == [False, False, False, True]
    rules.clear("DescribeInstances")
    assert not rules.take("DescribeInstances")


def test_a_failing_control_operation_is_answered_and_named(tmp_path: Path) -> None:
    from hacloud_aws.box.control import Controller
    from hacloud_aws.box.frontend import ActionLog

    def broken() -> dict[str, Any]:
        raise RuntimeError("moto changed")

    log = ActionLog(tmp_path / "api.jsonl")
    ctl = Controller(log, Throttles(), dict, lambda: None, broken)
    answer = ctl.handle({"op": "state"})
    assert answer["ok"] is False and answer["code"] == "HAC699" and "moto changed" in answer["error"]
    assert ctl.handle({"op": "status"})["ok"] is True  # still serving
    log.close()


def _src_dst(ec2: Any) -> tuple[str, str, bool]:
    a, _b, ami = _two_zones(ec2)
    iid = _instance(ec2, a, ami)
    ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
    eni = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
    return iid, eni["NetworkInterfaceId"], bool(eni["SourceDestCheck"])


def test_source_dest_check_is_one_attribute_of_instance_and_primary_interface(ec2: Any) -> None:
    with moto_ext.patched():
        iid, eni, on = _src_dst(ec2)
        assert on is False
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": True})
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="sourceDestCheck")
        assert attr["SourceDestCheck"]["Value"] is True


def test_canary_unpatched_moto_keeps_two_source_dest_checks(ec2: Any) -> None:
    _iid, _eni, on = _src_dst(ec2)
    assert on is True  # the instance says off, its interface still on
