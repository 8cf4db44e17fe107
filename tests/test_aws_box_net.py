"""The AWS box's network (``box/net.py``): moto's state (driven through boto3, moto in this
process) made physical in a router namespace, judged by real packets between namespaces that
stand in for the instances (the instance's address and the ENI's MAC on ``ens5``), a client
namespace on the client subnet and an "internet" client. Every namespace is made here and has
no route out; nothing else is contacted.

Real components: iproute2 (policy routing), nftables (the kernel accepts each ruleset), Linux
forwarding and conntrack; the peers are plain sockets (``_serve``/``_ask``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from boxtools import REGION, need_root
from hacloud_aws.box import moto_ext, net, state
from hacloud_aws.box.layout import ELASTIC_IP, ENDPOINT_ADDRESS
from hacloud_aws.box.netstate import NetworkState, bridge_of, gateway_address, layout_subnets, read_groups

from hacloud.errors import HacloudError

# CI (HACLOUD_REQUIRE_TOOLS) runs them anyway, so a missing nft fails there instead of skipping
pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/nft") and not os.environ.get("HACLOUD_REQUIRE_TOOLS"),
    reason="nftables (nft) missing",
)

VIP = "198.51.100.10"
SERVER = r"""
import socket, sys, threading
name, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(100); s.sendto(name.encode(), peer)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(name.encode()); c.close()
"""
ASK = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
source = (sys.argv[4], 0) if len(sys.argv) > 4 else None
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
        s.sendto(b"x", (host, port)); print(s.recvfrom(100)[0].decode())
    else:
        s = socket.create_connection((host, port), timeout=1.0, source_address=source)
        print(s.recv(100).decode() or "open")
except OSError as exc:
    print(f"fail:{type(exc).__name__}")
"""


@dataclass
class Cloud:
    ec2: Any
    fixed: Any
    router: net.Router
    nodes: dict[str, str] = field(default_factory=dict)  # name -> instance id
    enis: dict[str, str] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)
    group: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> NetworkState:
        return NetworkState(
            state.snapshot(REGION), layout_subnets(self.fixed.subnets, REGION), read_groups(REGION)
        )

    def apply(self) -> list[str]:
        return self.router.apply(self.state())

    def ns(self, node: str) -> str:
        return f"{self.router.name}-{node}"


def _serve(ns: str, name: str, port: int, proto: str = "tcp") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, name, str(port), proto],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ask(ns: str, host: str, port: int, proto: str = "tcp", source: str | None = None) -> str:
    """What a client in ``ns`` gets from ``host:port`` (the server's name, or ``fail:<error>``
    after 1 s), sending from ``source`` when given."""
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            ASK,
            host,
            str(port),
            proto,
            *([source] if source else []),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return out.stdout.strip()


def _until(ns: str, host: str, port: int, want: str, proto: str = "tcp") -> str:
    """The answer, retried for 3 s (a server just started may not listen yet)."""
    deadline, got = time.monotonic() + 3, ""
    while time.monotonic() < deadline:
        got = _ask(ns, host, port, proto)
        if got == want:
            break
        time.sleep(0.1)
    return got


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    need_root()
    import boto3
    from moto import mock_aws

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": "/dev/null"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    router = net.Router(f"hacnet{os.getpid()}")
    try:
        with mock_aws(), moto_ext.patched():
            fixed = moto_ext.bootstrap(REGION, _public_key())
            ec2 = boto3.client("ec2", region_name=REGION)
            c = Cloud(ec2, fixed, router)
            _instances(c)
            router.create(c.state().subnets)
            for node in ("node1", "node2"):
                _plug(c, node)
                c.procs += [_serve(c.ns(node), node, 80), _serve(c.ns(node), node, 5405, "udp")]
            c.procs += [_serve(router.name, "api", 443), _serve(router.name, "imds", 80)]
            yield c
            for p in c.procs:
                p.kill()
                p.wait()
    finally:
        router.destroy()
        for ns in _ours(router.name):  # should destroy fail, the next run still starts clean
            subprocess.run(["ip", "netns", "del", ns], check=False)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _instances(c: Cloud) -> None:
    vpc = c.fixed.vpc
    sg = c.ec2.create_security_group(GroupName="hacloud-demo", Description="pair", VpcId=vpc)["GroupId"]
    c.ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ],
    )
    c.group = sg
    for node, subnet in (("node1", "a"), ("node2", "b")):
        inst = c.ec2.run_instances(
            ImageId=c.fixed.ami,
            MinCount=1,
            MaxCount=1,
            SubnetId=c.fixed.subnets[subnet],
            SecurityGroupIds=[sg],
        )["Instances"][0]
        c.nodes[node] = inst["InstanceId"]
        c.enis[node] = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
        c.ips[node] = inst["PrivateIpAddress"]


def _plug(c: Cloud, node: str) -> None:
    snap = state.snapshot(REGION)
    inst = next(i for i in snap.instances if i.id == c.nodes[node])
    eni = inst.interfaces[0]
    cidr = next(cidr for _n, sid, cidr, _z in c.state().subnets if sid == eni.subnet)
    c.router.plug(
        c.ns(node),
        bridge_of(c.state(), eni.subnet),
        f"{eni.private_ips[0]}/{cidr.split('/')[1]}",
        gateway_address(cidr),
        f"v-{node}",
        mac=eni.mac,
    )
    subprocess.run(["ip", "-n", c.ns(node), "addr", "replace", f"{VIP}/32", "dev", "lo"], check=True)


def _route(c: Cloud, table: str, node: str, replace: bool = False) -> None:
    call = c.ec2.replace_route if replace else c.ec2.create_route
    call(
        RouteTableId=c.fixed.route_tables[table],
        DestinationCidrBlock=f"{VIP}/32",
        NetworkInterfaceId=c.enis[node],
    )


def _source_dest_check(c: Cloud, on: bool) -> None:
    for node in c.nodes.values():
        c.ec2.modify_instance_attribute(InstanceId=node, SourceDestCheck={"Value": on})


def test_client_reaches_the_vip_only_through_its_route_tables_route(cloud: Cloud) -> None:
    c = cloud
    _source_dest_check(c, False)
    c.apply()
    assert _ask(c.router.client, VIP, 80).startswith("fail:")  # no route in rtb-c yet
    _route(c, "a", "node1")  # only the node subnets' tables: the client's still has none
    _route(c, "b", "node1")
    c.apply()
    assert _ask(c.router.client, VIP, 80).startswith("fail:")
    _route(c, "c", "node1")
    c.apply()
    assert _until(c.router.client, VIP, 80, "node1") == "node1"
    _route(c, "c", "node2", replace=True)  # what aws-vpc-move-ip does on failover
    started = time.monotonic()
    changes = c.apply()
    assert _until(c.router.client, VIP, 80, "node2") == "node2", changes
    print(f"ReplaceRoute -> apply -> first answer from node2: {time.monotonic() - started:.3f} s")
    _source_dest_check(c, True)  # EC2 drops what is not addressed to a checking interface
    c.apply()
    assert _ask(c.router.client, VIP, 80).startswith("fail:")
    assert _ask(c.router.client, c.ips["node2"], 80) == "node2"  # its own address still works
    _source_dest_check(c, False)
    c.apply()


def test_source_dest_check_drops_what_an_instance_sends_from_another_address(cloud: Cloud) -> None:
    c = cloud
    other = "192.0.2.50"  # in node1's subnet, not node1's: the client's answer comes back on-link
    subprocess.run(["ip", "-n", c.ns("node1"), "addr", "replace", f"{other}/32", "dev", "lo"], check=True)
    c.procs.append(_serve(c.router.client, "client", 8080))
    _source_dest_check(c, True)
    c.apply()
    try:
        assert _until(c.ns("node1"), net.CLIENT_ADDRESS, 8080, "client") == "client"  # its own address
        assert _ask(c.ns("node1"), net.CLIENT_ADDRESS, 8080, source=other).startswith("fail:")
        _source_dest_check(c, False)  # what hacloud sets so a node can answer from the overlay IP
        c.apply()
        assert _ask(c.ns("node1"), net.CLIENT_ADDRESS, 8080, source=other) == "client"
    finally:
        _source_dest_check(c, False)
        c.apply()


def test_a_second_apply_changes_nothing(cloud: Cloud) -> None:
    c = cloud
    c.apply()
    before = net.describe(c.router)
    assert c.apply() == []
    assert net.describe(c.router) == before


def test_security_group_without_the_corosync_rule_drops_it(cloud: Cloud) -> None:
    c = cloud
    c.apply()
    assert _ask(c.ns("node1"), c.ips["node2"], 5405, "udp").startswith("fail:")
    perm = {"IpProtocol": "udp", "FromPort": 5405, "ToPort": 5405, "UserIdGroupPairs": [{"GroupId": c.group}]}
    c.ec2.authorize_security_group_ingress(GroupId=c.group, IpPermissions=[perm])
    c.apply()
    try:
        assert _ask(c.ns("node1"), c.ips["node2"], 5405, "udp") == "node2"
        assert _ask(c.ns("node2"), c.ips["node1"], 5405, "udp") == "node1"
        assert _ask(c.router.client, c.ips["node2"], 5405, "udp").startswith("fail:")  # not in the group
    finally:
        c.ec2.revoke_security_group_ingress(GroupId=c.group, IpPermissions=[perm])
    c.apply()
    assert _ask(c.ns("node1"), c.ips["node2"], 5405, "udp").startswith("fail:")


def test_elastic_ip_nat_follows_the_association(cloud: Cloud) -> None:
    c = cloud
    c.apply()
    assert _ask(c.router.internet, ELASTIC_IP, 80).startswith("fail:")  # not associated
    assert _ask(c.router.internet, c.ips["node1"], 80).startswith("fail:")  # never a private address
    c.ec2.associate_address(AllocationId=c.fixed.eip_allocation, InstanceId=c.nodes["node1"])
    c.apply()
    assert _ask(c.router.internet, ELASTIC_IP, 80) == "node1"
    c.ec2.associate_address(AllocationId=c.fixed.eip_allocation, InstanceId=c.nodes["node2"])  # as awseip
    c.apply()
    assert _ask(c.router.internet, ELASTIC_IP, 80) == "node2"
    c.ec2.disassociate_address(AssociationId=_association(c))
    c.apply()
    assert _ask(c.router.internet, ELASTIC_IP, 80).startswith("fail:")


def _association(c: Cloud) -> str:
    return str(
        c.ec2.describe_addresses(AllocationIds=[c.fixed.eip_allocation])["Addresses"][0]["AssociationId"]
    )


def test_partition_cuts_only_the_inter_zone_path(cloud: Cloud) -> None:
    c = cloud
    perm = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": c.group}]}
    c.ec2.authorize_security_group_ingress(GroupId=c.group, IpPermissions=[perm])
    try:
        c.apply()
        assert _ask(c.ns("node1"), c.ips["node2"], 80) == "node2"
        c.router.fault("partition", True)
        c.apply()
        assert _ask(c.ns("node1"), c.ips["node2"], 80).startswith("fail:")
        assert _ask(c.ns("node2"), c.ips["node1"], 80).startswith("fail:")
        for node in ("node1", "node2"):
            assert _ask(c.ns(node), ENDPOINT_ADDRESS, 443) == "api"
            assert _ask(c.router.client, c.ips[node], 80) == node
        c.router.fault("partition", False)
        c.apply()
        assert _ask(c.ns("node1"), c.ips["node2"], 80) == "node2"
    finally:
        c.router.fault("partition", False)
        c.ec2.revoke_security_group_ingress(GroupId=c.group, IpPermissions=[perm])
        c.apply()


def test_zone_api_cut_drops_only_that_zones_api(cloud: Cloud) -> None:
    c = cloud
    zone = f"{REGION}a"
    c.router.fault("api_cut", True, zone)
    try:
        c.apply()
        assert _ask(c.ns("node1"), ENDPOINT_ADDRESS, 443).startswith("fail:")
        assert _ask(c.ns("node1"), net.IMDS_ADDRESS, 80) == "imds"
        assert _ask(c.ns("node2"), ENDPOINT_ADDRESS, 443) == "api"
    finally:
        c.router.fault("api_cut", False, zone)
    c.apply()
    assert _ask(c.ns("node1"), ENDPOINT_ADDRESS, 443) == "api"


def test_an_unknown_fault_is_refused() -> None:
    router = net.Router("hacnet-unused")
    with pytest.raises(HacloudError) as exc:
        router.fault("api_cut", True)  # no zone
    assert exc.value.code == "HAC741"
    with pytest.raises(HacloudError) as exc:
        router.fault("flood", True)
    assert exc.value.code == "HAC741"


OURS = {"v-admin", "v-client", "v-inet", "v-i1", "br-a", "br-b", "br-c", "br-inet", "ens5"}


def _host_view() -> tuple[list[str], set[str]]:
    """Namespaces, and the links of ours in the host namespace (others' come and go)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return netns.split(), names & OURS


def _ours(prefix: str) -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    return [n for n in names if n == prefix or n.startswith(f"{prefix}-")]


def test_destroy_leaves_no_namespace_link_rule_or_table(cloud: Cloud) -> None:
    c = cloud
    _, links_before = _host_view()
    router = net.Router(f"hacnetx{os.getpid()}")
    try:
        router.create(c.state().subnets)
        state_now = c.state()
        router.fault("partition", True)
        assert router.apply(state_now)
        cidr = state_now.subnets[0][2]
        router.plug(
            f"{router.name}-i1",
            "br-a",
            "192.0.2.60/26",
            gateway_address(cidr),
            "v-i1",
            mac="02:00:00:aa:bb:cc",
        )
        c.procs.append(_serve(f"{router.name}-i1", "i1", 80))  # still running inside: destroy kills it
        assert len(_ours(router.name)) == 5  # router, admin, client, internet client, i1
        router.destroy()
        router.destroy()  # idempotent
        assert _ours(router.name) == []  # and with them every veth, bridge, rule, route, nft table
        _, links_after = _host_view()
        assert links_before == links_after == set()  # nothing was ever made in the host namespace
    finally:
        for ns in _ours(router.name):  # a failed run leaves nothing either
            subprocess.run(["ip", "netns", "del", ns], check=False)
    with pytest.raises(HacloudError) as exc:
        router.plug("elsewhere", "br-a", "192.0.2.61/26", "192.0.2.1", "v-x")
    assert exc.value.code == "HAC742"
