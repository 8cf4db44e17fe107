"""Benchmark: the AWS box's network (issue 18, WP4): a box daemon with its router, two
namespaces standing in for the instances (their ENI's address and MAC), and the client subnet's
client. Measures the router's build, an apply (with a change and without), and what a failover
of the overlay route costs: ReplaceRoute answered → kernel route, → the client's first answer
from the new node. Prints numbers, asserts nothing. Needs root; every namespace is made here
and removed at the end; traffic stays inside them and on 127.0.0.1.

Run: .venv/bin/python bench/aws_box_net.py [FLIPS]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from boxtools import REGION, Box  # noqa: E402
from hacloud_aws.box import daemon, net  # noqa: E402
from hacloud_aws.box.netstate import gateway_address  # noqa: E402

VIP = "198.51.100.10"
SERVER = (
    "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',80));s.listen(16)\n"
    "while True:\n c,_=s.accept();c.sendall(sys.argv[1].encode());c.close()\n"
)
# one client process polls until the new node answers (a process per probe would measure Python's start)
POLL = (
    "import socket,sys,time\nt=time.monotonic()\nwhile True:\n try:\n"
    "  s=socket.create_connection((sys.argv[1],80),timeout=0.2);d=s.recv(50).decode();s.close()\n"
    "  if d==sys.argv[2]: break\n except OSError: pass\nprint(time.monotonic()-t)\n"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def routes(router: str) -> str:
    return subprocess.run(
        ["ip", "-n", router, "-4", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout


def stand_in(router: net.Router, box: Box, iid: str, node: str) -> tuple[str, str]:
    ec2 = box.client("ec2")
    eni = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
    subnet = next(k for k, v in box.info["layout"]["subnets"].items() if v == eni["SubnetId"])
    cidr = {"a": "192.0.2.0/26", "b": "192.0.2.64/26"}[subnet]
    ns = f"{router.name}-{node}"
    router.plug(
        ns,
        f"br-{subnet}",
        f"{eni['PrivateIpAddress']}/26",
        gateway_address(cidr),
        f"v-{node}",
        mac=eni["MacAddress"],
    )
    subprocess.run(["ip", "-n", ns, "addr", "replace", f"{VIP}/32", "dev", "lo"], check=True)
    subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, node], stdout=subprocess.DEVNULL
    )
    return eni["NetworkInterfaceId"], eni["PrivateIpAddress"]


def pair(box: Box, router: net.Router) -> list[tuple[str, str]]:
    """Two instances (subnets A, B) with source/dest check off, port 80 open, their stand-ins
    serving their names; returns (ENI id, address) of each."""
    ec2 = box.client("ec2")
    iids = [box.run_instance("a"), box.run_instance("b")]
    for iid in iids:
        ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
    vpc = [
        {"Name": "group-name", "Values": ["default"]},
        {"Name": "vpc-id", "Values": [box.info["layout"]["vpc"]]},
    ]
    ec2.authorize_security_group_ingress(
        GroupId=ec2.describe_security_groups(Filters=vpc)["SecurityGroups"][0]["GroupId"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    return [stand_in(router, box, iid, f"node{k + 1}") for k, iid in enumerate(iids)]


def flip(box: Box, router: net.Router, flips: int) -> None:
    """Move the overlay route of the client subnet's table between the nodes ``flips`` times."""
    ec2, nodes = box.client("ec2"), pair(box, router)
    table = box.info["layout"]["route_tables"]["c"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock=f"{VIP}/32", NetworkInterfaceId=nodes[0][0])
    to_route, to_packet, apply_ms = [], [], []
    for k in range(flips):
        eni, ip = nodes[(k + 1) % 2]
        client = subprocess.Popen(
            ["ip", "netns", "exec", router.client, sys.executable, "-c", POLL, VIP, f"node{(k + 1) % 2 + 1}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.3)  # the poller runs (and gets the old node) before the route moves
        t0 = time.perf_counter()
        ec2.replace_route(RouteTableId=table, DestinationCidrBlock=f"{VIP}/32", NetworkInterfaceId=eni)
        answered = time.perf_counter()
        while f"{VIP} via {ip} " not in routes(router.name):
            time.sleep(0.002)
        to_route.append((time.perf_counter() - answered) * 1000)
        client.communicate(timeout=30)
        to_packet.append((time.perf_counter() - t0) * 1000)
        apply_ms.append(box.control(op="net")["net"]["last_apply_ms"])
    print(f"ReplaceRoute answered -> kernel route, {flips} flips: p50 {pct(to_route, 0.5):.0f} ms, "
          f"p99 {pct(to_route, 0.99):.0f} ms")  # fmt: skip
    print(f"ReplaceRoute sent -> client's first answer from the new node: "
          f"p50 {pct(to_packet, 0.5):.0f} ms, p99 {pct(to_packet, 0.99):.0f} ms")  # fmt: skip
    print(f"apply with a change (route + nft): p50 {pct(apply_ms, 0.5):.0f} ms, "
          f"p99 {pct(apply_ms, 0.99):.0f} ms")  # fmt: skip


def main() -> None:
    flips = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    name = f"hacbench{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        box = Box(daemon.launch(daemon.BoxConfig(Path(tmp) / "aws-box", REGION, router=name)))
        print(f"box with router to ready: {time.perf_counter() - t0:.2f} s "
              f"(first apply {box.control(op='net')['net']['last_apply_ms']:.0f} ms)")  # fmt: skip
        try:
            flip(box, net.Router(name), flips)
            idle = []
            for _ in range(3):
                time.sleep(2.1)  # one 2 s tick: an apply that finds nothing to change
                idle.append(box.control(op="net")["net"]["last_apply_ms"])
            print(f"apply without a change (the 2 s tick): median {sorted(idle)[1]:.0f} ms")
            t0 = time.perf_counter()
            box.control(op="fault", kind="partition", on=True)
            took = (time.perf_counter() - t0) * 1000
            print(f"partition on (control request answered, in force): {took:.0f} ms")
            ruleset = subprocess.run(
                ["ip", "netns", "exec", name, "nft", "list", "ruleset"], capture_output=True, text=True
            )
            print(f"nft ruleset for 2 instances: {len(ruleset.stdout.splitlines())} lines")
        finally:
            t0 = time.perf_counter()
            daemon.stop(box.process)
            print(f"daemon stop incl. router removal: {time.perf_counter() - t0:.2f} s")
            names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
            print(f"namespaces left: {len([n for n in names if n.startswith(name)])}")


if __name__ == "__main__":
    main()
