"""A real moto server over HTTP, an account laid out like a bring-your-own VPC, and an
independent census of the account (everything, tagged or not) for the AWS tests.

The VPC uses 192.0.2.0/24 (RFC 5737) and the overlay IP 198.51.100.10, so no address a test
might touch is routable outside this machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "eu-central-1"
OVERLAY_IP = "198.51.100.10"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log: Path, netns: str | None = None, port: int | None = None) -> Iterator[str]:
    """Run ``moto_server`` on 127.0.0.1 (inside ``netns`` when given); yields its URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = ["ip", "netns", "exec", netns, "true"] if netns else None
                if probe is None:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()  # noqa: S310 (loopback)
                else:
                    subprocess.run(
                        [
                            "ip",
                            "netns",
                            "exec",
                            netns,
                            sys.executable,
                            "-c",
                            f"import urllib.request; urllib.request.urlopen('{url}/moto-api/', timeout=1)",
                        ],
                        check=True,
                        capture_output=True,
                    )
                break
            except (OSError, subprocess.CalledProcessError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def reset(url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310 (loopback)
    urllib.request.urlopen(req, timeout=10).read()  # noqa: S310


def aws_env(url: str) -> dict[str, str]:
    """Environment for boto3 (and the AWS CLI) aimed at moto, never at a real account."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass(frozen=True)
class Account:
    vpc: str
    subnets: tuple[str, str]
    route_tables: tuple[str, str]
    ami: str


def byo_vpc(ec2: Any) -> Account:
    """A VPC with two subnets in two zones and two route tables, as a team would have it."""
    vpc = ec2.create_vpc(CidrBlock="192.0.2.0/24")["Vpc"]["VpcId"]
    s1 = ec2.create_subnet(VpcId=vpc, CidrBlock="192.0.2.0/26", AvailabilityZone=f"{REGION}a")
    s2 = ec2.create_subnet(VpcId=vpc, CidrBlock="192.0.2.64/26", AvailabilityZone=f"{REGION}b")
    r1 = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    r2 = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_key_pair(KeyName="ops")
    return Account(vpc, (s1["Subnet"]["SubnetId"], s2["Subnet"]["SubnetId"]), (r1, r2), ami)


def aws_spec_doc(account: Account, **options: Any) -> dict[str, Any]:
    import yaml

    repo = Path(__file__).resolve().parent.parent
    doc: dict[str, Any] = yaml.safe_load((repo / "templates/init/aws.yaml").read_text())
    doc["provider"]["options"].update(
        region=REGION,
        subnets=list(account.subnets),
        ami=account.ami,
        admin_cidr="192.0.2.0/24",
        **options,
    )
    doc["vip"].update(address=OVERLAY_IP, route_tables=list(account.route_tables))
    return doc


def census(ec2: Any, iam: Any) -> dict[str, Any]:
    """Everything in the account that hacloud could have made, found without hacloud's tags
    (so an untagged duplicate is counted too)."""
    instances = sorted(
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    )
    volumes = sorted(
        v["VolumeId"]
        for v in ec2.describe_volumes()["Volumes"]
        if not v.get("Attachments") or all(a["Device"] != "/dev/sda1" for a in v["Attachments"])
    )
    groups = sorted(
        g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"
    )
    rules = sorted(
        (g["GroupId"], str(p))
        for g in ec2.describe_security_groups()["SecurityGroups"]
        for p in g["IpPermissions"]
    )
    routes = sorted(
        (t["RouteTableId"], r.get("DestinationCidrBlock"), r.get("NetworkInterfaceId") or r.get("InstanceId"))
        for t in ec2.describe_route_tables()["RouteTables"]
        for r in t["Routes"]
        if r.get("GatewayId") != "local"
    )
    roles = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
    profiles = sorted(p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"])
    secondary = sorted(
        (e["NetworkInterfaceId"], a["PrivateIpAddress"])
        for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
        for a in e.get("PrivateIpAddresses", [])
        if not a.get("Primary")
    )
    return {
        "secondary_ips": secondary,
        "instances": instances,
        "volumes": volumes,
        "groups": groups,
        "rules": rules,
        "routes": routes,
        "roles": roles,
        "profiles": profiles,
    }


def tagged(ec2: Any, iam: Any, cluster: str) -> dict[str, list[str]]:
    """What still carries hacloud:cluster=<cluster>."""
    f = [{"Name": "tag:hacloud:cluster", "Values": [cluster]}]
    inst = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=f)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    vols = [v["VolumeId"] for v in ec2.describe_volumes(Filters=f)["Volumes"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]]
    roles = [
        r["RoleName"]
        for r in iam.list_roles()["Roles"]
        if any(
            t["Key"] == "hacloud:cluster" and t["Value"] == cluster
            for t in iam.list_role_tags(RoleName=r["RoleName"])["Tags"]
        )
    ]
    # the link-address tag hacloud puts on every node, kept ones included
    links = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["hacloud:link1"]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {"instances": inst, "volumes": vols, "groups": groups, "roles": roles, "link_tags": links}


class RecordingProxy:
    """An HTTP proxy in front of moto that records every AWS call (action and parameters,
    decoded from the query-protocol body) and can answer the first N calls of an action with
    a real throttling error, as EC2 sends it. Used to check the IAM policy against what the
    agents really called, and botocore's retries against real HTTP answers."""

    THROTTLE_BODY = (
        b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded'
        b"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>"
        b"hacloud-test</RequestID></Response>"
    )

    def __init__(self, target: str, throttle: dict[str, int] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        self.calls: list[tuple[str, dict[str, str]]] = []
        self.throttle = dict(throttle or {})
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                action = form.get("Action", "")
                if action:
                    proxy.calls.append((action, form))
                    if proxy.throttle.get(action, 0) > 0:
                        proxy.throttle[action] -= 1
                        self.send_response(503)
                        self.send_header("Content-Type", "text/xml")
                        self.send_header("Content-Length", str(len(RecordingProxy.THROTTLE_BODY)))
                        self.end_headers()
                        self.wfile.write(RecordingProxy.THROTTLE_BODY)
                        return
                req = urllib.request.Request(  # noqa: S310 (loopback moto)
                    target + self.path,
                    data=body or None,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                        status, headers, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, data = err.code, err.headers, err.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "server",
                        "date",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def actions(self) -> set[str]:
        return {a for a, _ in self.calls}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_driver_in_netns(driver: Path, work: Path, tag: str) -> dict[str, Any]:
    """Run an agents driver script (moto, stand-in IMDS and the real agents) inside a network
    namespace made for it (no route out), and return its JSON report plus the spec it wrote."""
    import json

    import yaml

    ns = f"hactest-{tag}{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        res = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(driver), str(work)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout)
    out["spec"] = yaml.safe_load((work / "hacloud.yaml").read_text())
    return out
