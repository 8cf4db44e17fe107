"""The AWS box daemon with its router (``--router``): the network follows API calls made over
TLS with the admin key (no apply by hand), the network faults go through the control socket,
and stopping the daemon removes the router. Namespaces are made here; nothing else is reached."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from boxtools import REGION, need_root, running_box
from hacloud_aws.box import control
from hacloud_aws.box.frontend import ActionLog, Throttles
from hacloud_aws.box.layout import ENDPOINT_ADDRESS

from hacloud.errors import HacloudError

# CI (HACLOUD_REQUIRE_TOOLS) runs them anyway, so a missing nft fails there instead of skipping
pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/nft") and not os.environ.get("HACLOUD_REQUIRE_TOOLS"),
    reason="nftables (nft) missing",
)
VIP = "198.51.100.10"


def _routes(router: str) -> str:
    return subprocess.run(
        ["ip", "-n", router, "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _connects(ns: str, host: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
    return (
        subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", probe], capture_output=True).returncode
        == 0
    )


def test_the_daemons_router_follows_the_api_and_its_faults(tmp_path: Path) -> None:
    need_root()
    router = f"hacnetd{os.getpid()}"
    with running_box(tmp_path / "aws-box", router=router) as box:
        assert box.control(op="net")["net"]["router"] == router
        assert box.info["listen"][f"netns:{router}"] == f"{ENDPOINT_ADDRESS}:443"
        assert _connects(f"{router}-client", ENDPOINT_ADDRESS, 443)  # the API, from the client subnet
        ec2, fixed = box.client("ec2"), box.info["layout"]
        iid = box.run_instance("a")
        ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
        eni = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
            "NetworkInterfaces"
        ][0]
        kicks = box.control(op="net")["net"]["kicks"]
        started = time.monotonic()
        ec2.create_route(
            RouteTableId=fixed["route_tables"]["c"],
            DestinationCidrBlock=f"{VIP}/32",
            NetworkInterfaceId=eni["NetworkInterfaceId"],
        )
        want = f"{VIP} via {eni['PrivateIpAddress']} dev br-a"
        while want not in _routes(router) and time.monotonic() - started < 5:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert want in _routes(router)
        print(f"CreateRoute answered -> kernel route: {elapsed * 1000:.0f} ms")
        assert box.control(op="net")["net"]["kicks"] > kicks  # the call itself, not the 2 s tick
        answer = box.control(op="fault", kind="api_cut", zone=f"{REGION}a", on=True)["net"]
        assert answer["faults"] == [f"api_cut:{REGION}a"]
        assert not _connects(f"{router}-client", ENDPOINT_ADDRESS, 443)  # subnet C is in zone a
        box.control(op="fault", kind="api_cut", zone=f"{REGION}a", on=False)
        assert _connects(f"{router}-client", ENDPOINT_ADDRESS, 443)
        with pytest.raises(HacloudError) as exc:
            box.control(op="fault", kind="api_cut", zone=f"{REGION}z", on=True)
        assert exc.value.code == "HAC741"
        box.control(op="fault", kind="partition", on=True)
        ruleset = subprocess.run(
            ["ip", "netns", "exec", router, "nft", "list", "table", "inet", "hacloud"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert 'iifname "br-a" oifname "br-b" drop' in ruleset
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert not [n for n in names if n == router or n.startswith(f"{router}-")]


def test_network_requests_are_refused_without_a_router_or_with_a_bad_on(tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "api.jsonl")
    try:
        bare = control.Controller(log, Throttles(), dict, lambda: None)
        assert bare.handle({"op": "net"})["code"] == "HAC743"
        assert bare.handle({"op": "fault", "kind": "partition", "on": True})["code"] == "HAC743"
        wired = control.Controller(log, Throttles(), dict, lambda: None, network=object())
        assert wired.handle({"op": "fault", "kind": "partition", "on": "yes"})["code"] == "HAC744"
    finally:
        log.close()
