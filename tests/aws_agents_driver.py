"""Run Debian's fence_aws and aws-vpc-move-ip against moto with the parameters hacloud renders.

Runs inside a network namespace that tests/test_aws_agents.py creates (only `lo`, no route
out), so moto, the recording proxy, the fake instance metadata service and the agents all
talk over that namespace's loopback; the overlay IP goes onto ``ens5`` there (one end of a veth
pair, named as on Debian/Ubuntu Nitro AMIs), which hacloud must discover as each node's facts
are read (the nodes' addresses are on it): aws-vpc-move-ip's own default is eth0.

Shims, each standing in for something only EC2 has (testbed.md §3):
- IMDS: the agents ask http://169.254.169.254; ``http_proxy`` sends those requests to a fake
  IMDS on loopback (no packet is sent to 169.254.169.254), which answers for the node the
  agent "runs on".
- Credentials: moto's dummy key (environment; a credentials file for `aws --profile
  default`) in place of the instance profile.
- Endpoint: Debian's boto3 and AWS CLI predate AWS_ENDPOINT_URL; a sitecustomize.py gives
  fence_aws's boto3 the endpoint, and aws-vpc-move-ip's ``awscli`` parameter names a wrapper
  adding ``--endpoint-url``. Every other parameter is read from hacloud's rendered CIB.

Prints one JSON document: the agents' results, the route/instance states read back from moto,
and every AWS call the agents made (from the recording proxy).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from awstools import OVERLAY_IP, REGION, RecordingProxy, aws_env, aws_spec_doc, byo_vpc, moto_server

from hacloud.deploy.facts import IFACE_PROBE, node_facts, parse_facts
from hacloud.spec.inventory import Inventory

SITECUSTOMIZE = """
import os
_ep = os.environ.get("HACLOUD_TEST_AWS_ENDPOINT")
if _ep:
    import boto3.session
    _client, _resource = boto3.session.Session.client, boto3.session.Session.resource
    def client(self, *a, **kw):
        kw.setdefault("endpoint_url", _ep)
        return _client(self, *a, **kw)
    def resource(self, *a, **kw):
        kw.setdefault("endpoint_url", _ep)
        return _resource(self, *a, **kw)
    boto3.session.Session.client, boto3.session.Session.resource = client, resource
"""


class FakeImds:
    """IMDSv2 for one instance at a time (``self.instance``, ``self.eni``)."""

    def __init__(self) -> None:
        self.instance = ""
        self.eni = ""
        self.requests: list[str] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, body: str, status: int = 200) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                imds.requests.append(f"PUT {self.path}")
                self._answer("fake-imds-token" if self.path.endswith("/latest/api/token") else "", 200)

            def do_GET(self) -> None:
                imds.requests.append(f"GET {self.path}")
                if self.headers.get("X-aws-ec2-metadata-token") != "fake-imds-token":
                    self._answer("", 401)  # IMDSv2 only, as hacloud's instances are made
                elif self.path.endswith("/meta-data/instance-id"):
                    self._answer(imds.instance)
                elif self.path.endswith("/interface-id"):
                    self._answer(imds.eni)
                else:
                    self._answer("", 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def params_of(cib: ET.Element, rid: str) -> dict[str, str]:
    prim = next(p for p in cib.iter("primitive") if p.get("id") == rid)
    return {
        nv.get("name", ""): nv.get("value", "")
        for nv in prim.iter("nvpair")
        if nv.get("id", "").startswith(rid)
    }


NIC = "ens5"


def with_facts(inventory: Inventory) -> Inventory:
    """The inventory as `up` renders it: each node's facts read by the facts script's interface
    probe. Both "nodes" run in this namespace, so both private addresses go on the NIC."""
    for node in inventory.nodes:
        subprocess.run(["ip", "addr", "add", f"{node.links[0]}/32", "dev", NIC], check=True)
    probe = subprocess.run(["sh", "-c", IFACE_PROBE], capture_output=True, text=True, check=True).stdout
    host = parse_facts("node", probe)
    nodes = [dataclasses.replace(n, facts=node_facts(host, n)) for n in inventory.nodes]
    return dataclasses.replace(inventory, nodes=(nodes[0], nodes[1]))


def main() -> None:
    work = Path(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # No dummy module in every kernel: a veth pair inside the namespace gives an up NIC.
    subprocess.run(["ip", "link", "add", NIC, "type", "veth", "peer", "name", f"{NIC}peer"], check=True)
    for dev in (NIC, f"{NIC}peer"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    out: dict[str, Any] = {}
    with moto_server(work / "moto.log") as moto:
        os.environ.update(aws_env(moto))
        ec2 = boto3.client("ec2", region_name=REGION)
        account = byo_vpc(ec2)
        spec_path = work / "hacloud.yaml"
        spec_path.write_text(yaml.safe_dump(aws_spec_doc(account)))

        from hacloud.ops.prepare import prepare
        from hacloud.provision.provider import get_provider
        from hacloud.spec.load import load_spec
        from hacloud.spec.workspace import Workspace

        ws = Workspace(load_spec(spec_path), spec_path)
        inventory = with_facts(get_provider("aws").ensure_nodes(ws))
        (work / "inventory.json").write_text(inventory.to_json())
        prepared = prepare(spec_path, work / "inventory.json")
        cib = ET.fromstring(prepared.bundle.cib)
        node1, node2 = inventory.nodes
        out["inventory"] = json.loads(inventory.to_json())
        aws_config = next(f for f in prepared.bundle.files[node1.name] if f.path == "/root/.aws/config")
        (work / "aws-config").write_bytes(aws_config.content)

        proxy = RecordingProxy(moto)
        imds = FakeImds()
        shim = work / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
        wrapper = work / "aws-wrapper"
        # env -u: the boto3 shim for fence_aws must not reach the CLI's own botocore
        wrapper.write_text(
            f'#!/bin/sh\nexec env -u PYTHONPATH /usr/bin/aws --endpoint-url {proxy.url} "$@"\n'
        )
        wrapper.chmod(0o755)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(work),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(work / "aws-config"),  # the file hacloud renders for /root/.aws/config
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "HACLOUD_TEST_AWS_ENDPOINT": proxy.url,
            "PYTHONPATH": str(shim),
            "http_proxy": imds.url,
            "HTTP_PROXY": imds.url,
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
        }

        def state(iid: str) -> str:
            res = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
            return str(res[0]["Instances"][0]["State"]["Name"])

        # ---- fence_aws, as node1 fencing node2 (stonith-ng passes the non-pcmk parameters)
        fence = params_of(cib, "fence_node2")
        target = dict(p.split(":") for p in fence["pcmk_host_map"].split(";"))["node2"]
        agent_params = {k: v for k, v in fence.items() if not k.startswith("pcmk_")}
        out["fence_params"] = agent_params
        imds.instance, imds.eni = node1.id, node1.extra["eni"]
        results = {}
        for action in ("list", "status", "off", "status", "on", "status", "monitor"):
            stdin = "".join(
                f"{k}={v}\n" for k, v in {**agent_params, "action": action, "plug": target}.items()
            )
            res = subprocess.run(
                ["fence_aws"], input=stdin, capture_output=True, text=True, env=env, timeout=300
            )
            results.setdefault(action, []).append(
                {
                    "rc": res.returncode,
                    "stdout": res.stdout,
                    "stderr": res.stderr[-800:],
                    "state": state(target),
                }
            )
        out["fence_aws"] = results
        out["imds_requests_fence"] = list(imds.requests)

        # ---- aws-vpc-move-ip: node2 takes the overlay IP over, then gives it up
        vip = params_of(cib, "vip_aws")
        out["vip_params"] = vip
        # Not the boto3 shim: Debian's AWS CLI carries its own botocore and breaks beside it.
        ocf_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "HACLOUD_TEST_AWS_ENDPOINT")}
        ocf_env |= {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESKEY_awscli": str(wrapper)}
        # `aws --profile default` ignores the key variables; on EC2 the instance profile
        # answers, here a credentials file with moto's dummy key stands in for it.
        creds = work / "aws-credentials"
        creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        ocf_env["AWS_SHARED_CREDENTIALS_FILE"] = str(creds)
        ocf_env |= {f"OCF_RESKEY_{k}": v for k, v in vip.items()}
        agent = "/usr/lib/ocf/resource.d/heartbeat/aws-vpc-move-ip"

        def routes() -> dict[str, str | None]:
            got = {}
            for rtb in account.route_tables:
                table = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
                r = [x for x in table["Routes"] if x.get("DestinationCidrBlock") == f"{OVERLAY_IP}/32"]
                got[rtb] = r[0].get("NetworkInterfaceId") if r else None
            return got

        def addr() -> bool:
            show = subprocess.run(["ip", "-4", "addr", "show", "dev", NIC], capture_output=True, text=True)
            return f"{OVERLAY_IP}/32" in show.stdout

        steps = []
        for who, action in (
            (node2, "monitor"),
            (node2, "start"),
            (node2, "monitor"),
            (node2, "stop"),
            (node2, "monitor"),
            (node1, "start"),
            (node1, "monitor"),
        ):
            imds.instance, imds.eni = who.id, who.extra["eni"]
            res = subprocess.run([agent, action], capture_output=True, text=True, env=ocf_env, timeout=300)
            steps.append(
                {
                    "node": who.name,
                    "action": action,
                    "rc": res.returncode,
                    "stderr": res.stderr[-800:],
                    "routes": routes(),
                    "address": addr(),
                }
            )
        out["move_ip"] = steps

        # ---- the checks `up` runs on each node before it enables fencing, as node1
        from hacloud_aws import aws_node_needs

        bindir = work / "bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "aws").symlink_to(wrapper)
        check_env = {**env, "PATH": f"{bindir}:{env['PATH']}", "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
        imds.instance, imds.eni = node1.id, node1.extra["eni"]
        checks = {}
        # the dry-run permission probe needs an EC2 that judges permissions (plain moto would
        # carry out a "dry" ReplaceRoute): the AWS box's tests run it (test_aws_box_permissions)
        probes = [c for c in aws_node_needs(ws.spec, inventory).probes if c.code != "aws.permissions"]
        for check in probes:
            res = subprocess.run(
                ["sh", "-c", check.command], capture_output=True, text=True, env=check_env, timeout=300
            )
            checks[check.code] = {"rc": res.returncode, "out": (res.stdout + res.stderr)[-500:]}
        out["checks"] = checks
        # and what they say when IMDS is out of reach (a proxy or firewall in the way)
        broken = {**check_env, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
        failed = {}
        for check in probes:
            res = subprocess.run(
                ["sh", "-c", check.command], capture_output=True, text=True, env=broken, timeout=300
            )
            failed[check.code] = res.returncode
        out["checks_without_imds"] = failed
        # an instance that is not a node of this cluster asks IMDS: the identity check fails
        imds.instance = "i-0ffffffffffffffff"
        imds_check = aws_node_needs(ws.spec, inventory).probes[0]
        res = subprocess.run(["sh", "-c", imds_check.command], capture_output=True, text=True, env=check_env)
        out["check_foreign_instance"] = {"rc": res.returncode, "out": res.stdout + res.stderr}
        out["route_tables"] = list(account.route_tables)
        out["calls"] = proxy.calls
        proxy.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
