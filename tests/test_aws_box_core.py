"""The AWS box's core (issue 18, WP1), API tier: the daemon, TLS at the real endpoint names,
the WSGI front (path filter, throttling, action log), the control socket.

Real components: the box daemon as a process, boto3, Debian's stock ``/usr/bin/aws`` and
``/usr/sbin/fence_aws`` (unmodified; only name resolution is remapped, inside a namespace made
here that has only ``lo``), ``openssl`` to judge the certificates. Expected numbers come from
the clients' own retry settings, read from their installed files.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, SSLError
from boxtools import (
    AWS_CLI,
    REGION,
    Box,
    endpoint_netns,
    fence_aws,
    in_netns,
    instance_netns,
    running_box,
)
from hacloud_aws.box import control, daemon, layout, listeners

from hacloud.errors import HacloudError

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter of Debian's awscli and fence_aws


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    with endpoint_netns("box") as name:
        yield name


@pytest.fixture(scope="module")
def box(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    with running_box(tmp_path_factory.mktemp("box") / layout.BOX_DIRNAME, netns=netns) as running:
        yield running


@pytest.fixture(autouse=True)
def no_throttles(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "box" in request.fixturenames:
        request.getfixturevalue("box").control(op="fault", kind="throttle", off=True)


def statuses(box: Box, since: int, action: str) -> list[int]:
    return [e["status"] for e in box.actions(since) if e["action"] == action]


def _attempts(python: str, botocore_pkg: str) -> int:
    """Attempts per call of the botocore that ``python`` imports as ``botocore_pkg``, in the retry
    mode it resolves by default (no config file): from its own data, not from the box."""
    code = (
        f"import json, os, {botocore_pkg}.session as s, {botocore_pkg}.retries.standard as std\n"
        "mode = s.get_session().get_config_variable('retry_mode')\n"
        "data = os.path.join(os.path.dirname(s.__file__), 'data', '_retry.json')\n"
        "legacy = lambda: json.load(open(data))['retry']['__default__']['max_attempts']\n"
        "print(std.DEFAULT_MAX_ATTEMPTS if mode == 'standard' else legacy())"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "AWS_CONFIG_FILE": "/dev/null"}
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(res.stdout)


def boto3_max_attempts() -> int:
    """hacloud's boto3 (this venv; botocore 1.44 defaults to standard mode: 3)."""
    import sys

    return _attempts(sys.executable, "botocore")


def fence_aws_max_attempts() -> int:
    """Debian's python3-botocore 1.29 that fence_aws imports (legacy mode: 5)."""
    return _attempts(SYSTEM_PYTHON, "botocore")


def cli_max_attempts() -> int:
    """The stock AWS CLI v2's vendored botocore (standard mode by default: 3)."""
    return _attempts(SYSTEM_PYTHON, "awscli.botocore")


# -- lifecycle -----------------------------------------------------------------------------


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except ProcessLookupError:
                continue
    return pids


def test_daemon_starts_serves_tls_and_stops_leaving_nothing(tmp_path: Path) -> None:
    root = tmp_path / ".hacloud" / "demo" / layout.BOX_DIRNAME
    with running_box(root) as box:
        pid = box.info["pid"]
        assert box.info["ready"] and box.info["moto"] == "5.2.5" and box.info["region"] == REGION
        assert root.stat().st_mode & 0o777 == 0o700
        for secret in (
            box.paths.ca_key,
            box.paths.tls_key,
            box.paths.admin_json,
            box.paths.ssh_key,
            box.paths.sock,
        ):
            assert secret.stat().st_mode & 0o777 == 0o600, secret
        assert box.client("ec2").describe_instances()["Reservations"] == []
        # real TLS: a client that does not trust the box CA refuses the connection
        with pytest.raises(SSLError):
            box.client("ec2", verify=True).describe_instances()
        proc = box.process
    assert daemon.stop(proc) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _session_pids(pid) == []
    kept = {p.name for p in root.iterdir()}
    assert kept == {
        "ca.pem",
        "ca.key",
        "tls.pem",
        "tls.key",
        "id_ed25519",
        "id_ed25519.pub",
        "api.jsonl",
        "daemon.log",
        ".gitignore",  # of everything: the keys never reach git
    }
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for secret_file in ("ca.key", "tls.key", "id_ed25519"):  # git itself says they are ignored
        assert (
            subprocess.run(
                ["git", "-C", str(tmp_path), "check-ignore", "-q", str(root / secret_file)]
            ).returncode
            == 0
        )


def test_a_second_box_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with running_box(tmp_path / "b") as box:
        info = box.paths.box_json.read_text()
        with pytest.raises(HacloudError) as exc:
            second = daemon.launch(daemon.BoxConfig(box.paths.root, REGION), timeout=60)
            daemon.stop(second)
        assert exc.value.code == "HAC692" and "HAC691" in exc.value.message
        assert box.paths.box_json.read_text() == info  # the running box is untouched
        assert box.client("ec2").describe_vpcs()["Vpcs"]


def test_a_box_that_cannot_listen_fails_to_launch_with_its_reason(tmp_path: Path, box: Box) -> None:
    with pytest.raises(HacloudError) as exc:
        daemon.launch(daemon.BoxConfig(tmp_path / "b", REGION, port=box.info["port"]), timeout=60)
    assert exc.value.code == "HAC692" and "HAC695" in exc.value.message
    assert not (tmp_path / "b" / "box.json").exists() and not (tmp_path / "b" / "box.sock").exists()


def test_box_directory_must_be_private(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    for root in (loose, link):
        with pytest.raises(HacloudError) as exc:
            layout.prepare(root)
        assert exc.value.code == "HAC690"
    assert layout.prepare(tmp_path / "new").root.stat().st_mode & 0o777 == 0o700


def test_listener_in_a_missing_namespace_and_bad_address_are_refused() -> None:
    with pytest.raises(HacloudError) as exc:
        listeners.bind("192.0.2.253", 0, "hactest-no-such-namespace")
    assert exc.value.code == "HAC695"
    for bad in ("example.com:443", "192.0.2.253:99999", "192.0.2.253:x"):
        with pytest.raises(HacloudError) as exc:
            listeners.parse_address(bad, 443)
        assert exc.value.code == "HAC698"


# -- authentication and the path filter ------------------------------------------------------


def _https(box: Box, path: str, method: str = "GET", data: bytes | None = None) -> int:
    ctx = ssl.create_default_context(cafile=str(box.paths.ca_pem))
    req = urllib.request.Request(box.url + path, data=data, method=method)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_every_request_is_authenticated_from_the_first_one(box: Box) -> None:
    body = b"Action=DescribeInstances&Version=2016-11-15"
    assert _https(box, "/", "POST", body) == 401  # unsigned: MissingAuthenticationToken
    with pytest.raises(ClientError) as exc:
        box.client(
            "ec2", key="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ).describe_vpcs()
    assert exc.value.response["Error"]["Code"] in ("AuthFailure", "InvalidClientTokenId")


def test_moto_control_and_metadata_paths_are_refused(box: Box) -> None:
    vpcs = box.client("ec2").describe_vpcs()["Vpcs"]
    assert _https(box, "/moto-api/reset", "POST", b"") == 403
    assert _https(box, "/moto-api/data.json") == 403
    assert _https(box, "/latest/meta-data/iam/security-credentials/") == 403
    assert box.client("ec2").describe_vpcs()["Vpcs"] == vpcs  # nothing was reset


# -- the stock AWS CLI at the real endpoint name ---------------------------------------------


def test_stock_aws_cli_reaches_the_real_endpoint_name_over_tls(box: Box, netns: str) -> None:
    since = box.next_seq()
    argv = [AWS_CLI, "ec2", "describe-subnets", "--region", REGION, "--output", "json"]
    res = in_netns(netns, argv, box.cli_env())
    assert res.returncode == 0, res.stderr
    subnets = {s["SubnetId"] for s in json.loads(res.stdout)["Subnets"]}
    assert set(box.info["layout"]["subnets"].values()) <= subnets
    entry = next(e for e in box.actions(since) if e["action"] == "DescribeSubnets")
    assert entry["listener"] == f"netns:{netns}" and entry["caller"].endswith(":user/hacloud-admin")
    # without the box CA the CLI refuses the endpoint's certificate
    env = {k: v for k, v in box.cli_env().items() if k != "AWS_CA_BUNDLE"}
    res = in_netns(netns, argv, env)
    assert res.returncode != 0 and "SSL" in res.stderr


# -- throttling ----------------------------------------------------------------------------


def test_throttled_stop_is_retried_by_boto3_and_succeeds(box: Box) -> None:
    iid = box.run_instance()
    box.control(op="fault", kind="throttle", action="StopInstances", count=2)
    since = box.next_seq()
    box.client("ec2").stop_instances(InstanceIds=[iid])
    assert statuses(box, since, "StopInstances") == [503, 503, 200]
    assert box.state(iid) == "stopped"


def test_an_acting_only_throttle_lets_dry_runs_through_uncounted(box: Box) -> None:
    """A script throttles the fence's StopInstances, not the permission checks before it."""
    iid = box.run_instance()
    box.control(op="fault", kind="throttle", action="StopInstances", count=1, acting_only=True)
    since = box.next_seq()
    ec2 = box.client("ec2")
    for _ in range(2):
        with pytest.raises(Exception) as exc:
            ec2.stop_instances(InstanceIds=[iid], DryRun=True)
        assert "DryRunOperation" in str(exc.value)
    assert box.state(iid) == "running"
    ec2.stop_instances(InstanceIds=[iid])
    assert statuses(box, since, "StopInstances") == [412, 412, 503, 200]
    assert box.state(iid) == "stopped"


def test_persistent_throttle_surfaces_request_limit_exceeded(box: Box) -> None:
    iid = box.run_instance()
    box.control(op="fault", kind="throttle", action="StopInstances", seconds=600)
    since = box.next_seq()
    with pytest.raises(ClientError) as exc:
        box.client("ec2").stop_instances(InstanceIds=[iid])
    assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert statuses(box, since, "StopInstances") == [503] * boto3_max_attempts()
    assert box.state(iid) == "running"


def test_stock_cli_retries_a_throttle_and_reports_a_persistent_one(box: Box, netns: str) -> None:
    iid = box.run_instance()
    argv = [AWS_CLI, "ec2", "stop-instances", "--region", REGION, "--instance-ids", iid]
    box.control(op="fault", kind="throttle", action="StopInstances", count=1)
    since = box.next_seq()
    res = in_netns(netns, argv, box.cli_env())
    assert res.returncode == 0, res.stderr
    assert statuses(box, since, "StopInstances") == [503, 200]
    box.client("ec2").start_instances(InstanceIds=[iid])
    box.control(op="fault", kind="throttle", action="StopInstances", count=100)
    since = box.next_seq()
    res = in_netns(netns, argv, box.cli_env())
    assert res.returncode != 0 and "RequestLimitExceeded" in res.stderr
    assert statuses(box, since, "StopInstances") == [503] * cli_max_attempts()


def test_fence_aws_rides_out_a_short_throttle_and_fails_a_long_one(box: Box, netns: str) -> None:
    fencer, victim = box.run_instance("a"), box.run_instance("b")
    with instance_netns(box, netns, fencer) as node:
        box.control(op="fault", kind="throttle", action="StopInstances", count=2)
        since = box.next_seq()
        res = fence_aws(box, node, "off", victim)
        assert res.returncode == 0 and "Powered OFF" in res.stdout, res.stderr
        assert statuses(box, since, "StopInstances") == [503, 503, 200]
        assert box.state(victim) == "stopped"
        stop = [e for e in box.actions(since) if e["action"] == "StopInstances"][-1]
        assert stop["params"] == {"InstanceId.1": victim, "Force": "true"}
        box.client("ec2").start_instances(InstanceIds=[victim])
        # beyond botocore's attempts: fence_aws logs the error, then waits out power_timeout
        box.control(op="fault", kind="throttle", action="StopInstances", count=100)
        since = box.next_seq()
        res = fence_aws(box, node, "off", victim, power_timeout=2)
        assert res.returncode == 1 and "Timed out waiting to power OFF" in res.stderr
        assert statuses(box, since, "StopInstances") == [503] * fence_aws_max_attempts()
        assert box.state(victim) == "running"


# -- the action log --------------------------------------------------------------------------


def test_action_log_holds_no_secret(box: Box) -> None:
    iam, sts = box.client("iam"), box.client("sts")
    iam.create_user(UserName="logtest")
    iam.create_login_profile(UserName="logtest", Password="Pa55-word-never-logged")
    key = iam.create_access_key(UserName="logtest")["AccessKey"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": box.admin["arn"]}}]}  # fmt: skip
    role = iam.create_role(RoleName="logtest", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    allow = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName="logtest", PolicyName="p", PolicyDocument=json.dumps(allow))
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="i-0123456789abcdef0")["Credentials"]
    session = box.client(
        "ec2", key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["SessionToken"]
    )
    session.describe_instances()
    box.control(op="fault", kind="throttle", action="DescribeVpcs", count=1)
    box.client("ec2").describe_vpcs()
    secrets = [box.admin["secret_access_key"], key["SecretAccessKey"], creds["SecretAccessKey"],
               creds["SessionToken"], "Pa55-word-never-logged", "Signature=", "Authorization",
               "X-Amz-Security-Token"]  # fmt: skip
    text = box.paths.api_log.read_text()
    served = json.dumps(box.actions())
    for secret in secrets:
        assert secret not in text and secret not in served, secret
    assert box.paths.api_log.stat().st_mode & 0o777 == 0o600
    # the log does record who did what (access key ids are not secret: CloudTrail shows them)
    entry = next(
        e for e in box.actions() if e["action"] == "DescribeInstances" and e["key"] == creds["AccessKeyId"]
    )
    assert entry["caller"].endswith(":assumed-role/logtest/i-0123456789abcdef0")


# -- the control socket ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"op": "reset"}, "op"),
        ({"op": "status", "verbose": True}, "verbose"),
        ({"op": "fault", "kind": "flood"}, "kind"),
        ({"op": "fault", "kind": "throttle", "action": "StopInstances", "count": 0}, "count"),
        ({"op": "fault", "kind": "throttle", "action": "StopInstances", "count": True}, "count"),
        (
            {"op": "fault", "kind": "throttle", "action": "StopInstances", "count": 1, "seconds": 5},
            "count, seconds",
        ),
        ({"op": "fault", "kind": "throttle", "action": "Stop Instances", "count": 1}, "action"),
        ({"op": "fault", "kind": "throttle", "count": 1}, "action"),
        ({"op": "fault", "kind": "throttle", "action": "StopInstances", "bucket": {"size": 5}}, "bucket"),
        ({"op": "actions", "since": -1}, "since"),
    ],
)
def test_control_refuses_a_bad_request_naming_the_field(
    box: Box, request_: dict[str, Any], field: str
) -> None:
    with pytest.raises(HacloudError) as exc:
        control.call(box.paths.sock, request_)
    assert exc.value.code == "HAC696" and field in exc.value.message
    assert box.control(op="status")["throttles"] == {}  # nothing half-applied


def test_control_socket_is_private_and_an_absent_box_is_named(box: Box, tmp_path: Path) -> None:
    assert box.paths.sock.stat().st_mode & 0o777 == 0o600
    status = box.control(op="status")
    assert status["pid"] == box.info["pid"] and status["layout"] == box.info["layout"]
    with pytest.raises(HacloudError) as exc:
        control.call(tmp_path / "box.sock", {"op": "status"})
    assert exc.value.code == "HAC694"


def test_shutdown_through_the_control_socket(tmp_path: Path) -> None:
    with running_box(tmp_path / "b") as box:
        box.control(op="shutdown")
        assert box.process.proc.wait(timeout=15) == 0
        assert not box.paths.sock.exists() and not box.paths.box_json.exists()


# -- CloudState (what the next work packages make physical) ----------------------------------


def test_cloud_state_matches_what_the_api_describes(box: Box) -> None:
    ec2, iam = box.client("ec2"), box.client("iam")
    fixed = box.info["layout"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
    iam.create_role(RoleName="state-node", AssumeRolePolicyDocument=json.dumps(trust))
    profile = iam.create_instance_profile(InstanceProfileName="state-node")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="state-node", RoleName="state-node")
    run = ec2.run_instances(ImageId=fixed["ami"], MinCount=1, MaxCount=1, SubnetId=fixed["subnets"]["b"],
                            IamInstanceProfile={"Arn": profile["Arn"]},
                            MetadataOptions={"HttpTokens": "required"})["Instances"][0]  # fmt: skip
    iid, eni = run["InstanceId"], run["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1)
    ec2.create_route(RouteTableId=fixed["route_tables"]["c"], DestinationCidrBlock="198.51.100.10/32",
                     NetworkInterfaceId=eni)  # fmt: skip
    ec2.associate_address(AllocationId=fixed["eip_allocation"], InstanceId=iid)
    vol = ec2.create_volume(Size=2, AvailabilityZone=f"{REGION}b")["VolumeId"]
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})

    state = box.control(op="state")["state"]
    got = next(i for i in state["instances"] if i["id"] == iid)
    api = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    nic = api["NetworkInterfaces"][0]
    assert got["state"] == api["State"]["Name"] and got["zone"] == api["Placement"]["AvailabilityZone"]
    assert got["subnet"] == fixed["subnets"]["b"] and got["role"] == "state-node"
    assert (got["http_tokens"], got["http_endpoint"]) == ("required", "enabled")
    [iface] = got["interfaces"]
    assert iface["id"] == eni and iface["mac"] == nic["MacAddress"]
    assert (
        iface["private_ips"] == [a["PrivateIpAddress"] for a in nic["PrivateIpAddresses"]]
        and len(iface["private_ips"]) == 2
    )
    assert iface["public_ip"] == fixed["eip_address"] == api["PublicIpAddress"]
    assert iface["groups"] == sorted(g["GroupId"] for g in nic["Groups"])
    assert iface["source_dest_check"] is False  # set on the instance: one attribute in EC2
    table = next(t for t in state["route_tables"] if t["id"] == fixed["route_tables"]["c"])
    assert table["subnets"] == [fixed["subnets"]["c"]]
    assert {
        "destination": "198.51.100.10/32",
        "interface": eni,
        "instance": None,
        "gateway": None,
        "local": False,
    } in table["routes"]
    [eip] = [e for e in state["elastic_ips"] if e["allocation"] == fixed["eip_allocation"]]
    assert eip["interface"] == eni
    [volume] = [v for v in state["volumes"] if v["id"] == vol]
    assert (volume["instance"], volume["device"], volume["zone"], volume["size_gib"]) == (
        iid,
        "/dev/sdf",
        f"{REGION}b",
        2,
    )
    ec2.terminate_instances(InstanceIds=[iid])
    assert iid not in {i["id"] for i in box.control(op="state")["state"]["instances"]}


def test_a_killed_box_leaves_stale_files_that_the_next_start_replaces(tmp_path: Path) -> None:
    import signal

    with running_box(tmp_path / "b") as box:
        fixed = box.info["layout"]
        os.kill(box.info["pid"], signal.SIGKILL)
        box.process.proc.wait(timeout=10)
        assert box.paths.box_json.exists() and daemon.read_info(box.paths) is None  # stale: ignored
        with pytest.raises(HacloudError) as exc:
            box.control(op="status")
        assert exc.value.code == "HAC694"
        again = Box(daemon.launch(daemon.BoxConfig(box.paths.root, REGION)))
        try:
            assert again.info["layout"] == fixed and again.control(op="status")["pid"] == again.info["pid"]
        finally:
            daemon.stop(again.process)


def test_token_bucket_set_through_the_control_socket(box: Box) -> None:
    from botocore.config import Config

    box.control(op="fault", kind="throttle", action="DescribeVpcs", bucket={"size": 2, "refill": 0})
    once = box.client("ec2", config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    once.describe_vpcs()
    once.describe_vpcs()
    with pytest.raises(ClientError) as exc:
        once.describe_vpcs()
    assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"


def test_iam_and_sts_are_throttled_as_those_services_answer(box: Box) -> None:
    box.control(op="fault", kind="throttle", action="GetCallerIdentity", count=1)
    since = box.next_seq()
    assert box.client("sts").get_caller_identity()["Arn"] == box.admin["arn"]  # retried
    assert statuses(box, since, "GetCallerIdentity") == [400, 200]
    box.control(op="fault", kind="throttle", action="ListRoles", seconds=600)
    with pytest.raises(ClientError) as exc:
        box.client("iam").list_roles()
    assert exc.value.response["Error"]["Code"] == "Throttling"


def test_the_namespace_listener_refuses_moto_paths_too(box: Box, netns: str) -> None:
    url = f"https://ec2.{REGION}.amazonaws.com/moto-api/data.json"
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(box.paths.ca_pem), url]
    res = in_netns(netns, argv, {"PATH": "/usr/bin:/bin"})
    assert res.stdout == "403", res.stderr
