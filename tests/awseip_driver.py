"""Run Debian's awseip agent against moto with the /root/.aws/config and parameters hacloud renders.

Runs inside a network namespace that tests/test_awseip_agent.py creates (only `lo`, no route out):
moto, a recording proxy in front of it and a fake instance metadata service all listen on that
namespace's loopback. The Elastic IP is 198.51.100.50 (RFC 5737), only ever a string in moto.

As on EC2, there is no credentials file: the AWS CLI takes the instance profile's credentials
(moto's dummy key here) and, when no config file names one, the region from the metadata
service. The shims, each standing in for something only EC2 has:
- IMDS: the agent's own curl calls reach the fake through ``http_proxy`` (no packet goes to
  169.254.169.254); the CLI's botocore reaches it through ``AWS_EC2_METADATA_SERVICE_ENDPOINT``.
- Endpoint: Debian's AWS CLI ignores AWS_ENDPOINT_URL; the agent's ``awscli`` parameter names
  a wrapper adding ``--endpoint-url`` (the recording proxy).
Every other parameter is read from hacloud's rendered CIB; api_delay (seconds the agent sleeps
after each API call) is 0 to keep the test short.

Prints one JSON document: each agent run with its exit code and the association of the Elastic
IP read back from moto, the same runs without the config file and with a config that has no
region, the node check `up` runs, and every AWS call the agent made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aws_agents_driver import params_of
from awstools import REGION, RecordingProxy, aws_env, aws_spec_doc, byo_vpc, moto_server

EIP = "198.51.100.50"
AGENT = "/usr/lib/ocf/resource.d/heartbeat/awseip"
ROLE = "hacloud-test-role"
AWS_CONFIG = "/root/.aws/config"


class Imds:
    """IMDSv2 for one instance at a time: its id, region and instance-profile credentials."""

    def __init__(self) -> None:
        self.instance = ""
        self.requests: list[str] = []
        imds = self
        answers: dict[str, Callable[[], str]] = {
            "/latest/meta-data/instance-id": lambda: imds.instance,
            # AWS CLI v2 (2.9) derives the region from the zone when no config names one
            "/latest/meta-data/placement/availability-zone/": lambda: f"{REGION}a",
            "/latest/meta-data/placement/region": lambda: REGION,
            "/latest/meta-data/iam/security-credentials/": lambda: ROLE,
            f"/latest/meta-data/iam/security-credentials/{ROLE}": lambda: json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "testing",
                    "SecretAccessKey": "testing",
                    "Token": "testing",
                    "Expiration": "2099-01-01T00:00:00Z",
                    "LastUpdated": "2026-01-01T00:00:00Z",
                }
            ),
        }

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, body: str, status: int = 200) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _path(self) -> str:  # a proxied request carries the whole URL
                return self.path.removeprefix("http://169.254.169.254")

            def do_PUT(self) -> None:
                imds.requests.append(f"PUT {self._path()}")
                self._answer("fake-imds-token" if self._path() == "/latest/api/token" else "", 200)

            def do_GET(self) -> None:
                imds.requests.append(f"GET {self._path()}")
                if self.headers.get("X-aws-ec2-metadata-token") != "fake-imds-token":
                    self._answer("", 401)  # IMDSv2 only, as hacloud's instances are made
                elif self._path() in answers:
                    self._answer(answers[self._path()]())
                else:
                    self._answer("", 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> None:
    work = Path(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out: dict[str, Any] = {}
    with moto_server(work / "moto.log") as moto:
        os.environ.update(aws_env(moto))
        ec2 = boto3.client("ec2", region_name=REGION)
        account = byo_vpc(ec2)
        allocation = ec2.allocate_address(Domain="vpc", Address=EIP)["AllocationId"]
        doc = aws_spec_doc(account)
        doc["vip"] = {"kind": "awseip", "elastic_ip": EIP, "allocation_id": allocation}
        spec_path = work / "hacloud.yaml"
        spec_path.write_text(yaml.safe_dump(doc))

        from hacloud_aws import aws_node_needs

        from hacloud.ops.prepare import prepare
        from hacloud.provision.provider import get_provider
        from hacloud.spec.load import load_spec
        from hacloud.spec.workspace import Workspace

        ws = Workspace(load_spec(spec_path), spec_path)
        inventory = get_provider("aws").ensure_nodes(ws)
        (work / "inventory.json").write_text(inventory.to_json())
        prepared = prepare(spec_path, work / "inventory.json")
        node1, node2 = inventory.nodes
        out["inventory"] = json.loads(inventory.to_json())
        out["allocation_id"] = allocation
        configs = {
            n.name: [f.content.decode() for f in prepared.bundle.files[n.name] if f.path == AWS_CONFIG]
            for n in inventory.nodes
        }
        out["configs"] = configs
        config = work / "aws-config"  # the file hacloud renders for /root/.aws/config
        config.write_text(configs[node1.name][0])
        no_region = work / "aws-config-no-region"  # what an on-prem spec without a region gets
        no_region.write_text("".join(x for x in config.read_text().splitlines(True) if "region" not in x))

        proxy = RecordingProxy(moto)
        imds = Imds()
        wrapper = work / "aws-wrapper"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/aws --endpoint-url {proxy.url} "$@"\n')
        wrapper.chmod(0o755)
        vip = params_of(ET.fromstring(prepared.bundle.cib), "vip_eip")
        out["vip_params"] = vip
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(work),
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials-file"),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{imds.url}/",
            "http_proxy": imds.url,
            "no_proxy": "127.0.0.1,localhost",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": "vip_eip",
            "OCF_RESKEY_awscli": str(wrapper),
            "OCF_RESKEY_api_delay": "0",
            **{f"OCF_RESKEY_{k}": v for k, v in vip.items()},
        }

        def holder() -> str | None:
            addr = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
            return addr.get("InstanceId") or None

        def run(steps: list[tuple[Any, str]], extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
            done = []
            for who, action in steps:
                imds.instance = who.id
                res = subprocess.run(
                    [AGENT, action], capture_output=True, text=True, env={**env, **(extra or {})}, timeout=300
                )
                done.append(
                    {
                        "node": who.name,
                        "action": action,
                        "rc": res.returncode,
                        "stderr": res.stderr[-800:],
                        "holder": holder(),
                    }
                )
            return done

        # moto keeps a stale PublicIpAddress on an instance after its EIP moves (testbed.md §3),
        # so node1 is not monitored after it gave the address up; moto's address is the truth.
        out["eip"] = run(
            [
                (node1, "monitor"),
                (node1, "start"),
                (node1, "monitor"),
                (node1, "stop"),
                (node2, "monitor"),
                (node2, "start"),
                (node2, "monitor"),
                (node2, "stop"),
            ]
        )
        # the bug hacloud had: no /root/.aws/config on the node, so `aws --profile default` fails
        out["without_config"] = run([(node1, "start")], {"AWS_CONFIG_FILE": str(work / "no-such-file")})
        # a config without a region line: AWS CLI v2 takes the region from IMDS
        out["no_region"] = run([(node1, "start"), (node1, "stop")], {"AWS_CONFIG_FILE": str(no_region)})
        # the check `up` runs on each node before enabling fencing, with the same shims
        bindir = work / "bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "aws").symlink_to(wrapper)
        check_env = {**env, "PATH": f"{bindir}:{env['PATH']}"}
        checks = {}
        for check in aws_node_needs(ws.spec, inventory).probes:
            if check.code == "aws.eip_read":
                res = subprocess.run(
                    ["sh", "-c", check.command], capture_output=True, text=True, env=check_env
                )
                checks[check.code] = {"rc": res.returncode, "out": (res.stdout + res.stderr)[-500:]}
                res = subprocess.run(
                    ["sh", "-c", check.command],
                    capture_output=True,
                    text=True,
                    env={**check_env, "AWS_CONFIG_FILE": str(work / "no-such-file")},
                )
                checks["aws.eip_read without config"] = {"rc": res.returncode, "out": res.stderr[-500:]}
        out["checks"] = checks
        out["calls"] = proxy.calls
        out["imds_requests"] = sorted(set(imds.requests))
        proxy.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
