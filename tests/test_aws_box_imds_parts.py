"""Parts of the box's IMDS (issue 18, WP3) that run without root: who a source address is,
tokens, role credentials and their rotation against moto's real STS (in-process, as the box
runs it), the loopback test mode, and the moto quirk the box corrects for metadata options.
The namespace contract tests with the stock clients are in ``test_aws_box_imds.py``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hacloud_aws.box import imds, listeners, metadata_options, state
from hacloud_aws.box.layout import ACCOUNT_ID
from hacloud_aws.box.state import CloudState, Instance, Interface, Route, RouteTable

REGION = "eu-central-1"


def _instance(iid: str, eni: str, ips: tuple[str, ...]) -> Instance:
    nic = Interface(eni, "subnet-1", ips, "02:00:00:00:00:01", True, (), None)
    return Instance(iid, "running", "eu-central-1a", "subnet-1", (nic,), None, "required", "enabled", 1)


def _cloud(*routes: Route) -> CloudState:
    a = _instance("i-a", "eni-a", ("192.0.2.10", "192.0.2.40"))
    b = _instance("i-b", "eni-b", ("192.0.2.70",))
    return CloudState(REGION, (a, b), (RouteTable("rtb-1", ("subnet-1",), routes),), (), ())


def test_identify_maps_primary_secondary_and_routed_overlay_addresses() -> None:
    local = Route("192.0.2.0/24", None, None, None, True)
    cloud = _cloud(
        local,
        Route("198.51.100.10/32", "eni-b", None, None, False),  # aws-vpc-move-ip's overlay, by ENI
        Route("198.51.100.11/32", None, "i-a", None, False),  # by instance id
        Route("198.51.100.0/25", "eni-a", None, None, False),  # a block, not one host's address
    )

    def who(source: str) -> str | None:
        inst = imds.identify(source, cloud)
        return inst.id if inst else None

    assert [who(s) for s in ("192.0.2.10", "192.0.2.40", "192.0.2.70")] == ["i-a", "i-a", "i-b"]
    assert (who("198.51.100.10"), who("198.51.100.11")) == ("i-b", "i-a")
    assert who("198.51.100.20") is None  # inside the /25 only
    assert who("192.0.2.99") is None  # in the VPC's local route, but nobody's address
    assert who("127.0.0.1") is None


def test_tokens_are_bound_to_one_instance_and_expire() -> None:
    now = [1000.0]
    tokens = imds.Tokens(clock=lambda: now[0])
    tok = tokens.issue("i-a", 60)
    assert tokens.valid(tok, "i-a") and not tokens.valid(tok, "i-b")
    assert tok != tokens.issue("i-a", 60)
    now[0] += 60
    assert not tokens.valid(tok, "i-a")
    tokens.issue("i-b", 1)  # issuing drops the two expired ones: no growth without bound
    assert len(tokens._tokens) == 1


# -- against moto in-process --------------------------------------------------------------------


@pytest.fixture
def cloud() -> Iterator[dict[str, Any]]:
    """moto in this process with one instance holding an instance profile."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        account = {"undo": metadata_options.install()}
        try:
            account.update(_account(boto3.session.Session(region_name=REGION)))
            yield account
        finally:
            metadata_options.uninstall(account["undo"])


def _account(session: Any) -> dict[str, Any]:
    iam, ec2 = session.client("iam"), session.client("ec2")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_instance_profile(InstanceProfileName="p")
    iam.add_role_to_instance_profile(InstanceProfileName="p", RoleName="r")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    res = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": "p"}, InstanceType="t3.micro"
    )
    return {"session": session, "ec2": ec2, "iid": res["Instances"][0]["InstanceId"]}


def test_moto_drops_metadata_options_a_modify_does_not_name_and_the_box_keeps_them(
    cloud: dict[str, Any],
) -> None:
    ec2, iid = cloud["ec2"], cloud["iid"]

    def options() -> dict[str, Any]:
        res = ec2.describe_instances(InstanceIds=[iid])
        opts: dict[str, Any] = res["Reservations"][0]["Instances"][0]["MetadataOptions"]
        return opts

    ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required", HttpPutResponseHopLimit=2)
    ec2.modify_instance_metadata_options(InstanceId=iid, HttpEndpoint="enabled")
    assert (options()["HttpTokens"], options()["HttpPutResponseHopLimit"]) == ("required", 2)
    # contract with moto 5.2.5: unpatched, the options the call omits are lost (when this
    # fails, moto keeps them itself and metadata_options.py can go)
    metadata_options.uninstall(cloud["undo"])
    try:
        ec2.modify_instance_metadata_options(InstanceId=iid, HttpEndpoint="enabled")
        assert options().get("HttpTokens") != "required"
    finally:
        cloud["undo"] = metadata_options.install()


def test_role_credentials_are_real_sts_keys_and_rotate_before_expiry(cloud: dict[str, Any]) -> None:
    iid, session = cloud["iid"], cloud["session"]
    fresh = imds.Credentials(REGION, duration_s=900, refresh_before_s=899.5)
    first = fresh.get(iid, "r")
    assert first is not None and first["AccessKeyId"].startswith("ASIA") and first["Code"] == "Success"
    assert fresh.get(iid, "r") == first  # cached while more than refresh_before_s remain
    time.sleep(0.7)
    second = fresh.get(iid, "r")
    assert second is not None and second["AccessKeyId"] != first["AccessKeyId"]
    sts = session.client(
        "sts",
        aws_access_key_id=second["AccessKeyId"],
        aws_secret_access_key=second["SecretAccessKey"],
        aws_session_token=second["Token"],
    )
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/r/{iid}"
    assert imds.Credentials(REGION).get(iid, "no-such-role") is None


def _http(method: str, url: str, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:  # noqa: S310
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_loopback_mode_serves_the_pinned_instance(cloud: dict[str, Any]) -> None:
    iid = cloud["iid"]
    service = imds.Service(REGION, lambda: state.snapshot(REGION), imds.Credentials(REGION), pin=iid)
    server = imds.serve(listeners.bind("127.0.0.1", 0), service)
    base = f"http://127.0.0.1:{server.server_address[1]}/latest"
    try:
        status, tok = _http("PUT", f"{base}/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        assert status == 200
        auth = {"X-aws-ec2-metadata-token": tok}
        assert _http("GET", f"{base}/meta-data/instance-id", auth) == (200, iid)
        assert _http("GET", f"{base}/meta-data/iam/security-credentials/", auth) == (200, "r")
        status, body = _http("GET", f"{base}/meta-data/iam/security-credentials/r", auth)
        assert status == 200 and json.loads(body)["Type"] == "AWS-HMAC"
        assert _http("POST", f"{base}/api/token", {})[0] == 405
        cloud["ec2"].stop_instances(InstanceIds=[iid])
        with pytest.raises((ConnectionResetError, urllib.error.URLError)):
            _http("GET", f"{base}/meta-data/instance-id", auth)
    finally:
        server.shutdown()
        server.server_close()
