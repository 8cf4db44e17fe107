"""AWS in a box, end to end: `hacloud init --provider aws --emulated` → `up` → a healthy pair
serving on the VIP → `fence-test` → `down`, with the AWS provider's own code path against the
emulated cloud, the stock agents inside lab guests, and every check made from outside hacloud:
EC2's own state and action log (read with boto3 through the box's API), the kernel's routes in
the box's router, the client's view of the VIP from the client subnet.

Network rule: every hacloud command runs inside a namespace this test creates with only ``lo``
(the box's API listener is that loopback); SSH and the clients go into the box's own namespaces.
The commands enter it with ``nsenter --net`` (network only): ``ip netns exec`` would also give
each its own mount namespace, and the namespaces the box makes would not be seen by the next.
One class per VIP kind, each with its own box (cluster ``ciaws``: overlay IP; ``cieip``: Elastic IP).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace

pytestmark = pytest.mark.lab
VIP = "198.51.100.10"
VIP_OPS = {"start_timeout": 180, "stop_timeout": 180, "monitor_interval": 60, "monitor_timeout": 60}
EIP = "198.51.100.200"

# Calls the box's API with its admin key (as the account's administrator would, with boto3),
# from inside the test's namespace, where its listener is.
API_CALL = r"""
import json, sys, boto3
root, region, service, op, args = sys.argv[1:5] + [json.loads(sys.argv[5])]
info = json.load(open(root + "/box.json")); admin = json.load(open(root + "/admin.json"))
client = boto3.client(service, region_name=region, endpoint_url="https://127.0.0.1:%d" % info["port"],
                      verify=root + "/ca.pem", aws_access_key_id=admin["access_key_id"],
                      aws_secret_access_key=admin["secret_access_key"])
print(json.dumps(getattr(client, op)(**args), default=str))
"""


def _require() -> None:
    from hacloud_lab import kernel

    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    if not kernel.SYSTEM_KERNEL.exists():
        problems.append("user-mode-linux missing")
    for tool in ("mmdebstrap", "nft", "ssh"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} missing")
    if problems:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS") == "1":
            pytest.fail(f"the AWS box cannot run: {problems}; .ci/run installs what it needs")
        pytest.skip(f"the AWS box cannot run here: {problems}")


class Box:
    """One emulated-AWS cluster: its spec, the test's namespace, and readers of the cloud."""

    def __init__(self, root: Path, cluster: str, eip: bool) -> None:
        self.root, self.cluster, self.eip = root, cluster, eip
        self.netns = f"hactest-{cluster}-{os.getpid()}"
        self.router = f"hacaws-{cluster}"
        self.spec = root / "hacloud.yaml"
        self.box_dir = root / ".hacloud" / cluster / "aws-box"

    def hacloud(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m", "hacloud", args[0]]
        argv += [*(["-f", str(self.spec)] if args[0] != "init" else []), *args[1:]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def ec2(self, op: str, **args: Any) -> Any:
        return self.api("ec2", op, **args)

    def api(self, service: str, op: str, **args: Any) -> Any:
        reader = [
            sys.executable,
            "-c",
            API_CALL,
            str(self.box_dir),
            "eu-central-1",
            service,
            op,
            json.dumps(args),
        ]
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", *reader], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def client(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` where the service's clients sit (the client subnet; the Internet for an EIP)."""
        where = "inet" if self.eip else "client"
        return subprocess.run(
            ["ip", "netns", "exec", f"{self.router}-{where}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def health(self) -> dict[str, Any]:
        proc = self.client(
            "curl", "-sS", "--max-time", "20", f"http://{EIP if self.eip else VIP}:8080/health"
        )
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    def instances(self) -> dict[str, dict[str, Any]]:
        """Node name -> the instance as EC2 describes it (live ones of this cluster)."""
        res = self.ec2(
            "describe_instances", Filters=[{"Name": "tag:hacloud:cluster", "Values": [self.cluster]}]
        )
        out = {}
        for r in res["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                if i["State"]["Name"] != "terminated":
                    out[tags["hacloud:node"]] = i
        return out

    def api_log(self, since: float) -> list[dict[str, Any]]:
        lines = (self.box_dir / "api.jsonl").read_text().splitlines()
        return [e for e in map(json.loads, lines) if e.get("t", e.get("time", 0)) >= since]

    def ws(self) -> Workspace:
        return Workspace(load_spec(self.spec), self.spec)

    def control(self, **request: Any) -> dict[str, Any]:
        """A request to the box's control socket (faults the cloud itself injects)."""
        from hacloud_aws.box import control

        return control.call(self.box_dir / "box.sock", request, timeout=30)

    def healthy_pair(self) -> None:
        st = self.hacloud("status", "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        status = json.loads(st.stdout)
        assert status["healthy"] and [n["drbd_disk"] for n in status["nodes"]] == ["UpToDate", "UpToDate"]


def _box(tmp_path_factory: pytest.TempPathFactory, cluster: str, eip: bool) -> Iterator[Box]:
    _require()
    # the guest image is built (or found in the cache) here, where the Debian mirror is
    # reachable; hacloud itself then runs where nothing but loopback is
    from hacloud_lab import image

    image.ensure_image(image.select_kernel(lambda _m: None), lambda _m: None)
    box = Box(tmp_path_factory.mktemp(cluster), cluster, eip)
    subprocess.run(["ip", "netns", "add", box.netns], check=True)
    subprocess.run(["ip", "-n", box.netns, "link", "set", "lo", "up"], check=True)
    try:
        init = box.hacloud("init", "--provider", "aws", "--emulated", "--out", str(box.spec))
        assert init.returncode == 0, init.stderr
        doc = yaml.safe_load(box.spec.read_text())
        doc["cluster"]["name"] = cluster
        for node in doc["nodes"]:
            node["ssh"]["key"] = f".hacloud/{cluster}/aws-box/id_ed25519"
        # the lab's short timers for CI time (bench/aws_box_e2e.py runs AWS's), with the AWS VIP
        # agents' own operation timeouts: the lab's are IPaddr2's (20 s), and aws-vpc-move-ip
        # makes 7-10 AWS CLI calls to start, 3-4 s each on a lab guest
        doc["profile"] = "lab"
        doc["overrides"] = {f"ops.vip.{k}": v for k, v in VIP_OPS.items()}
        doc["provider"]["options"]["emulated"]["stop"]["graceful_timeout_s"] = 30
        if eip:
            alloc = "eipalloc-44b0131531152faa8"
            doc["vip"] = {"kind": "awseip", "elastic_ip": EIP, "allocation_id": alloc}
            # its clients are on the Internet: the security group must admit them, as on AWS
            doc["provider"]["options"]["client_cidr"] = "198.51.100.0/24"
        box.spec.write_text(yaml.safe_dump(doc))
        yield box
    finally:
        box.hacloud("down", "-y", "--delete-volumes", timeout=300)
        subprocess.run(["ip", "netns", "del", box.netns], check=False)


def _assert_nothing_left(box: Box) -> None:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert box.router not in namespaces, namespaces
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(box.box_dir) not in procs, [p for p in procs.splitlines() if str(box.box_dir) in p]


def _overlay_targets(box: Box) -> set[str]:
    """The interfaces the route tables send the overlay IP to (every table: one)."""
    tables = box.ec2("describe_route_tables")["RouteTables"]
    return {
        str(r.get("NetworkInterfaceId"))
        for t in tables
        for r in t["Routes"]
        if r.get("DestinationCidrBlock") == f"{VIP}/32"
    }


def _dry(entry: dict[str, Any]) -> bool:
    return str(entry.get("params", {}).get("DryRun", "")).lower() == "true"


def _fence_test(box: Box, method: str, on: dict[str, Callable[[], None]]) -> subprocess.CompletedProcess[str]:
    """`fence-test --method METHOD`, calling ``on[text]`` the moment its progress says ``text``
    (e.g. "injecting the fault": after its preflight, which would refuse a cloud fault already on)."""
    argv = ["nsenter", f"--net=/run/netns/{box.netns}", sys.executable, "-m", "hacloud", "fence-test"]
    argv += ["-f", str(box.spec), "-y", "--json", "--method", method]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=box.root)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    err = []
    for line in proc.stderr:  # type: ignore[union-attr]
        err.append(line)
        for text, action in on.items():
            if text in line:
                action()
    proc.wait(timeout=1200)
    reader.join()
    return subprocess.CompletedProcess(argv, proc.returncode, "".join(out), "".join(err))


def _round(
    box: Box, method: str, check: bool = True, on: dict[str, Callable[[], None]] | None = None
) -> dict[str, Any]:
    started = time.time()
    if on is None:
        proc = box.hacloud("fence-test", "-y", "--json", "--method", method, timeout=1200)
    else:
        proc = _fence_test(box, method, on)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    r: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    print(
        f"\n{box.cluster} {method}: RTO {r['rto_seconds']} s (floor {r['floor_seconds']} s), "
        f"stages {r['stages']}, resync {r['resync_seconds']} s, acknowledged {r['acknowledged']}"
    )
    assert r["passed"] and r["lost"] == 0 and r["duplicates"] == 0 and r["corrupt"] == 0
    assert r["acknowledged"] > 20 and r["single_primary"] and r["recovered"]
    fenced, survivor = r["node"], r["survivor"]
    inst = box.instances()
    stops_all = [e for e in box.api_log(started) if e.get("action") == "StopInstances" and not _dry(e)]
    stops = [e for e in stops_all if e.get("status") == 200]
    r["stops_all"] = stops_all
    victim_id = inst[fenced]["InstanceId"]
    assert stops, "no StopInstances reached EC2"
    if method == "fence":
        # the cluster's own fence_aws did it, with the survivor's instance-profile credentials
        assert any(f"/{inst[survivor]['InstanceId']}" in str(e.get("caller")) for e in stops), stops
    r["victim_id"], r["stops"] = victim_id, stops
    if check:  # the service runs on the survivor and the pair is whole again
        assert box.health()["node"] == survivor
        box.healthy_pair()
    return r


# ---------------------------------------------------------------- the overlay IP (aws-vpc-move-ip)


@pytest.fixture(scope="class")
def movebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    yield from _box(tmp_path_factory, "ciaws", eip=False)


@pytest.mark.usefixtures("movebox")
class TestOverlayIp:
    def test_up_builds_a_healthy_pair_on_emulated_ec2(self, movebox: Box) -> None:
        box = movebox
        started = time.monotonic()
        up = box.hacloud("up", "-y")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        print(f"\nup from nothing: {time.monotonic() - started:.0f} s")
        inst = box.instances()
        assert set(inst) == {"node1", "node2"}
        assert {i["State"]["Name"] for i in inst.values()} == {"running"}
        zones = {i["Placement"]["AvailabilityZone"] for i in inst.values()}
        assert zones == {"eu-central-1a", "eu-central-1b"}
        # the DRBD backing disk is the node's EBS volume, under the name Nitro gives it, and
        # the host carries the node's name (EC2 named it ip-...; DRBD knows a node by uname -n)
        for name, instance in inst.items():
            attached = [{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
            vols = box.ec2("describe_volumes", Filters=attached)["Volumes"]
            data = [v["VolumeId"] for v in vols if v["Attachments"][0]["Device"] != "/dev/sda1"]
            assert len(data) == 1, vols
            path = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + data[0].replace("-", "")
            # sh-ll-dev: the backing device DRBD uses (never `drbdadm dump`: it prints the secret)
            res = box.hacloud("ssh", name, "--", f"uname -n; test -b {path} && drbdadm sh-ll-dev r0")
            assert res.returncode == 0, res.stdout + res.stderr
            assert res.stdout.split() == [name, path], res.stdout
        again = box.hacloud("up", "-y")
        assert again.returncode == 0 and again.stdout.startswith("0 changes"), again.stdout + again.stderr

    def test_clients_reach_the_service_only_through_the_route_table(self, movebox: Box) -> None:
        box = movebox
        active = box.health()["node"]
        inst = box.instances()
        # the route in the client subnet's table points at the active node's ENI, and the
        # router's kernel route follows it
        eni = inst[active]["NetworkInterfaces"][0]
        assert _overlay_targets(box) == {eni["NetworkInterfaceId"]}
        routes = subprocess.run(
            ["ip", "-n", box.router, "route", "show", "table", "all", f"{VIP}/32"],
            capture_output=True,
            text=True,
        ).stdout
        assert eni["PrivateIpAddress"] in routes, routes

    def test_plan_check_live_and_a_planned_failover(self, movebox: Box) -> None:
        """What an operator runs between faults: nothing to change, the account checked live,
        and a switchover that the route table follows."""
        box = movebox
        plan = box.hacloud("plan")
        assert plan.returncode == 0 and "0 changes" in plan.stdout, plan.stdout + plan.stderr
        live = box.hacloud("check", "--live")
        assert live.returncode == 0, live.stdout[-3000:] + live.stderr[-2000:]
        before = box.health()["node"]
        moved = box.hacloud("failover", "-y", timeout=600)
        assert moved.returncode == 0, moved.stdout[-2000:] + moved.stderr[-2000:]
        after = box.health()["node"]
        assert after != before
        eni = box.instances()[after]["NetworkInterfaces"][0]["NetworkInterfaceId"]
        assert _overlay_targets(box) == {eni}

    @pytest.mark.parametrize("method", ["power", "fence", "crash", "partition"])
    def test_fence_test(self, movebox: Box, method: str) -> None:
        box = movebox
        r = _round(box, method)
        survivor_eni = box.instances()[r["survivor"]]["NetworkInterfaces"][0]["NetworkInterfaceId"]
        assert _overlay_targets(box) == {survivor_eni}

    def test_a_throttled_stop_during_a_fence_is_retried_and_nothing_is_lost(self, movebox: Box) -> None:
        """The next 3 StopInstances answer RequestLimitExceeded (503), as EC2 throttles: the
        cluster's fence_aws (botocore's retries) still stops the victim within stonith-timeout."""
        box = movebox
        # acting_only: the preflight's dry runs (the permission probe) are not throttled
        box.control(op="fault", kind="throttle", action="StopInstances", count=3, acting_only=True)
        r = _round(box, "fence")
        statuses = [e["status"] for e in r["stops_all"]]
        assert statuses[:3] == [503, 503, 503] and 200 in statuses[3:], statuses

    def test_a_role_without_stop_instances_is_refused_before_any_fault(self, movebox: Box) -> None:
        """The instance profile loses ec2:StopInstances after `up`: fence-test's preflight asks
        EC2 (dry runs from the nodes, judged by the box's IAM) and refuses before any fault;
        `up` then puts hacloud's policy back."""
        from hacloud_aws import iam

        box = movebox
        role = iam.role_name(box.cluster)
        policy = box.api("iam", "get_role_policy", RoleName=role, PolicyName=iam.POLICY_NAME)[
            "PolicyDocument"
        ]
        for st in policy["Statement"]:
            st["Action"] = [a for a in st["Action"] if a != "ec2:StopInstances"] or ["ec2:DescribeTags"]
        box.api(
            "iam",
            "put_role_policy",
            RoleName=role,
            PolicyName=iam.POLICY_NAME,
            PolicyDocument=json.dumps(policy),
        )
        started = time.time()
        proc = box.hacloud("fence-test", "-y", "--method", "power", timeout=600)
        assert proc.returncode != 0 and "refused" in proc.stderr, proc.stdout + proc.stderr
        assert "stop_instances: UnauthorizedOperation" in proc.stderr, proc.stderr
        refused = [e for e in box.api_log(started) if e.get("action") == "StopInstances"]
        assert refused and all(_dry(e) for e in refused)  # asked by dry runs only, nothing stopped
        up = box.hacloud("up", "-y")
        assert up.returncode == 0 and "IAM: put policy" in up.stderr, up.stdout + up.stderr
        box.healthy_pair()

    def test_the_active_zone_losing_the_api_while_partitioned_loses_nothing(self, movebox: Box) -> None:
        """The active node's zone cannot reach the EC2 API while the zones are cut apart: it
        cannot fence, its DRBD fence-peer handler waits, the other side fences it; every
        acknowledged write survives."""
        box = movebox
        active = box.health()["node"]
        zone = box.instances()[active]["Placement"]["AvailabilityZone"]

        def api(on: bool) -> Callable[[], None]:
            return lambda: box.control(op="fault", kind="api_cut", zone=zone, on=on) and None

        # the zone loses the API with the partition, and gets it back when the round recovers
        try:
            r = _round(
                box, "partition", check=False, on={"injecting the fault": api(True), "recovery:": api(False)}
            )
        finally:
            box.control(op="fault", kind="api_cut", zone=zone, on=False)
        assert r["node"] == active, r  # the side that could not fence lost
        assert box.health()["node"] == r["survivor"]
        # the cut zone's fence device monitor failed meanwhile (it could not reach EC2): `up`
        # cleans a failure whose resource runs again
        up = box.hacloud("up", "-y")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        box.healthy_pair()

    def test_fenced_instance_is_stopped_in_ec2(self, movebox: Box) -> None:
        box = movebox
        proc = box.hacloud("fence-test", "-y", "--json", "--method", "power", "--no-recover", timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        r = json.loads(proc.stdout.splitlines()[-1])
        assert r["lost"] == 0
        assert box.instances()[r["node"]]["State"]["Name"] == "stopped"
        # `up` starts it again (the instances phase), and the pair is whole
        up = box.hacloud("up", "-y")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert box.instances()[r["node"]]["State"]["Name"] == "running"

    def test_down_leaves_nothing(self, movebox: Box) -> None:
        box = movebox
        started = time.time()
        down = box.hacloud("down", "-y", timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr
        actions = {e.get("action") for e in box.api_log(started)}
        assert {"TerminateInstances", "DeleteSecurityGroup"} <= actions, actions
        assert "DeleteVolume" not in actions  # data volumes stay unless asked
        _assert_nothing_left(box)
        assert sorted((box.box_dir / "volumes").glob("*.img")), "the volume files were kept"
        gone = box.hacloud("down", "-y", "--delete-volumes", timeout=300)
        assert gone.returncode == 0, gone.stderr
        assert not box.box_dir.exists()


# ---------------------------------------------------------------- the Elastic IP (awseip)


@pytest.fixture(scope="class")
def eipbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    yield from _box(tmp_path_factory, "cieip", eip=True)


@pytest.mark.usefixtures("eipbox")
class TestElasticIp:
    def test_up_and_the_internet_reaches_the_elastic_ip(self, eipbox: Box) -> None:
        box = eipbox
        up = box.hacloud("up", "-y")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        active = box.health()["node"]
        address = box.ec2("describe_addresses", PublicIps=[EIP])["Addresses"][0]
        assert address["InstanceId"] == box.instances()[active]["InstanceId"]

    def test_power_round_moves_the_elastic_ip(self, eipbox: Box) -> None:
        box = eipbox
        r = _round(box, "power")
        address = box.ec2("describe_addresses", PublicIps=[EIP])["Addresses"][0]
        assert address["InstanceId"] == box.instances()[r["survivor"]]["InstanceId"]

    def test_down_leaves_nothing(self, eipbox: Box) -> None:
        box = eipbox
        down = box.hacloud("down", "-y", "--delete-volumes", timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr
        _assert_nothing_left(box)
        assert not box.box_dir.exists()
