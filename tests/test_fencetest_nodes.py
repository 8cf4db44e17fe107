"""fence-test's real adapters without guests: the cluster reads over a scripted shell that answers
with text captured on the lab (``/proc/drbd`` of DRBD 8.4, crm_mon's XML, the live CIB as the
renderer wrote it), the client process and its wrapper against the real demo service on
loopback, and the SSH rig's wiring over a session built by the real renderer.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXED_SECRETS, REPO, write_lab_spec
from fencetest_world import FakePower, Scenario, World
from test_fencetest import _free_port, _serve

from hacloud.deploy.query.drbd import READ_COMMAND
from hacloud.deploy.remote import Result
from hacloud.errors import HacloudError
from hacloud.poll import ManualClock
from hacloud.render.resources import drbd_resources
from hacloud.verify.fencetest import client as client_module
from hacloud.verify.fencetest.nodes import CRASH, NodeCluster, agent_options, status_problems
from hacloud.verify.fencetest.writer import Client

FIXTURES = REPO / "tests" / "fixtures"
Answer = Result | Callable[[str, bytes | None], Result]


class ScriptedShell:
    """A node's root shell: the first rule whose pattern matches the command answers it."""

    def __init__(self, name: str, rules: list[tuple[str, Answer]]) -> None:
        self.name, self.rules = name, rules
        self.commands: list[tuple[str, bytes | None]] = []

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120.0, stdin: bytes | None = None
    ) -> Result:
        self.commands.append((command, stdin))
        for pattern, answer in self.rules:
            if re.search(pattern, command):
                return answer(command, stdin) if callable(answer) else answer
        raise AssertionError(f"{self.name}: unexpected command {command!r}")


def ok(stdout: str, rc: int = 0) -> Result:
    return Result(rc, stdout, "")


def probe_on(fixture: str) -> Callable[[str, bytes | None], Result]:
    """The one DRBD read (READ_COMMAND) run by the real shell, on a captured /proc/drbd
    instead of the kernel's."""

    def answer(command: str, stdin: bytes | None) -> Result:
        proc = subprocess.run(
            ["sh", "-c", command.replace("/proc/drbd", str(FIXTURES / fixture))],
            capture_output=True,
            text=True,
        )
        return ok(proc.stdout, proc.returncode)

    return answer


CRM_MON = """<pacemaker-result api-version="2.30" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" name="node2" with_quorum="true"/></summary>
  <nodes>
    <node name="node1" id="1" online="{node1}" standby="false" type="member"/>
    <node name="node2" id="2" online="true" standby="false" type="member"/>
  </nodes>
  <status code="0" message="OK"/>
</pacemaker-result>
"""


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Any, Any, Any]:
    from hacloud.provision.provider import get_provider
    from hacloud.render import effective_profile, render_all
    from hacloud.spec.load import load_spec
    from hacloud.spec.profiles import load_profile

    spec_path, _ = write_lab_spec(tmp_path, "adapters")
    spec = load_spec(spec_path)
    inventory = get_provider("lab").planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name), inventory)
    return (
        spec_path,
        inventory,
        render_all(spec, inventory, profile, FIXED_SECRETS, {"node1": "p1", "node2": "p2"}),
    )


def live_resources(cib: str) -> str:
    resources = ET.fromstring(cib).find("./configuration/resources")
    assert resources is not None
    return ET.tostring(resources, encoding="unicode")


def healthy_status() -> dict[str, Any]:
    node = {"online": True, "drbd_disk": "UpToDate", "drbd_connection": "Connected"}
    return {
        "nodes": [{"name": "node1", **node}, {"name": "node2", **node}],
        "quorum": True,
        "fencing_enabled": True,
        "fencing": [{"id": "fence_node1", "state": "Started"}, {"id": "fence_node2", "state": "Started"}],
        "failed_actions": [],
        "service_node": "node1",
        "healthy": True,
        "reasons": [],
    }


def test_fence_devices_are_called_with_the_live_parameters_from_the_other_node(
    rendered: tuple[Any, Any, Any],
) -> None:
    spec_path, _, bundle = rendered
    devices = [(d.primitive.id, d.target) for d in bundle.fence_devices]
    shells = {
        name: ScriptedShell(
            name,
            [
                (r"^cibadmin -Q -o resources", ok(live_resources(bundle.cib))),
                (r"^stonith_admin --list", ok("fence_node1\nfence_node2\n2 fence devices found\n")),
                (r"^fence_ipmilan", ok("Status: ON\n")),
            ],
        )
        for name in ("node1", "node2")
    }
    cluster = NodeCluster(spec_path, shells, [], devices, status=lambda path: healthy_status())  # type: ignore[arg-type]
    pre = cluster.preflight()
    assert (pre.active, pre.standby, pre.problems) == ("node1", "node2", [])
    # fence_node2 is asked from node1 only, with the rendered address and the password file's path
    calls = [(n, stdin.decode()) for n, s in shells.items() for c, stdin in s.commands if stdin]
    assert sorted(n for n, _ in calls) == ["node1", "node2"]
    from_node1 = next(stdin for n, stdin in calls if n == "node1")
    params = dict(line.split("=", 1) for line in from_node1.splitlines())
    rendered_params = dict(bundle.fence_devices[1].primitive.params)  # fence_node2, node2's BMC
    assert params == {k: v for k, v in rendered_params.items() if not k.startswith("pcmk_")} | {
        "action": "status"
    }
    assert not any(k.startswith("pcmk_") for k in params)


def test_a_failing_agent_and_a_device_pacemaker_does_not_list_are_refused(
    rendered: tuple[Any, Any, Any],
) -> None:
    spec_path, _, bundle = rendered
    devices = [(d.primitive.id, d.target) for d in bundle.fence_devices]
    failing = ok(
        "DeprecationWarning: import of foo\n"
        "Failed: Unable to obtain correct plug status or plug is not available\n",
        1,
    )
    shells = {
        "node1": ScriptedShell(
            "node1",
            [
                (r"^cibadmin", ok(live_resources(bundle.cib))),
                (r"^stonith_admin --list", ok("")),
                (r".", failing),
            ],
        ),
        "node2": ScriptedShell(
            "node2",
            [(r"^stonith_admin --list", ok("fence_node1\n")), (r"^fence_ipmilan", failing)],
        ),
    }
    status = healthy_status()
    # the judge's reasons (hacloud.deploy.query.health, tested in test_nodequery.py)
    status.update(healthy=False, reasons=["node2: not online in the cluster", "the cluster has no quorum"])
    cluster = NodeCluster(spec_path, shells, [], devices, status=lambda path: status)  # type: ignore[arg-type]
    problems = cluster.preflight().problems
    assert problems == [
        "node2: not online in the cluster",
        "the cluster has no quorum",
        "fence device fence_node1 (fences node1 from node2) fails a status call: "
        "Failed: Unable to obtain correct plug status or plug is not available",
        "node1 would not fence node2 with fence_node2 (stonith_admin --list: nothing)",
    ]
    assert status_problems(status) == status["reasons"]


def test_agent_options_read_the_host_map_and_refuse_an_unknown_device() -> None:
    cib = """<resources><primitive id="f" class="stonith" type="fence_aws"><instance_attributes id="a">
      <nvpair id="1" name="region" value="eu-west-1"/><nvpair id="2" name="pcmk_delay_max" value="15"/>
      <nvpair id="3" name="pcmk_host_map" value="node1:i-0a;node2:i-0b"/>
      </instance_attributes></primitive></resources>"""
    assert agent_options(cib, "f", "node2") == (
        "fence_aws",
        {"region": "eu-west-1", "plug": "i-0b", "action": "status"},
    )
    with pytest.raises(HacloudError) as info:
        agent_options(cib, "fence_other", "node1")
    assert info.value.code == "HAC522"


def test_roles_from_the_kernel_text_of_drbd_8_4() -> None:
    """The real probe, run by sh on /proc/drbd as captured on the lab: node1 Secondary there."""
    shells = {
        "node1": ScriptedShell(
            "node1", [(re.escape(READ_COMMAND), probe_on("drbd84-proc-healthy-node1.txt"))]
        ),
        "node2": ScriptedShell(
            "node2", [(re.escape(READ_COMMAND), probe_on("drbd84-proc-healthy-node2.txt"))]
        ),
    }
    cluster = NodeCluster(Path("x"), shells, [], [])  # type: ignore[arg-type]
    roles = {n: cluster.is_primary(n) for n in shells}
    node2 = (FIXTURES / "drbd84-proc-healthy-node2.txt").read_text()
    assert roles == {"node1": False, "node2": "ro:Primary/" in node2} and sum(roles.values()) == 1


def test_online_drbd_state_clock_and_journal_reads() -> None:
    clock = ManualClock()
    # DRBD 8.4's /proc/drbd (drbd_proc.c): r0 (minor 0) waits for its peer, then resyncs;
    # r1 (minor 1) is connected with its peer still Inconsistent
    states = iter([("WFConnection", "UpToDate/DUnknown"), ("SyncSource", "UpToDate/Inconsistent")])

    def drbd(command: str, stdin: bytes | None) -> Result:
        cs, ds = next(states, ("Connected", "UpToDate/UpToDate"))
        return ok(
            "version: 8.4.11 (api:1/proto:86-101)\n"
            f" 0: cs:{cs} ro:Primary/Unknown ds:{ds} C r-----\n    ns:0 oos:0\n"
            " 1: cs:Connected ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n    ns:0 oos:0\n"
        )

    journal = (FIXTURES / "journal-power-node1.jsonl").read_text()
    shell = ScriptedShell(
        "node2",
        [
            (r"^crm_mon", ok(CRM_MON.format(node1="false"))),
            (r"^cat /proc/drbd", drbd),
            (r"^date \+%s\.%N$", lambda c, s: ok(f"{clock.time() + 2.5:.6f}\n")),
            (r"^journalctl -o json --no-pager --since=@1799999998 -u corosync -u pacemaker", ok(journal)),
        ],
    )
    resources = [r for r in drbd_resources(_two_volume_spec())]
    cluster = NodeCluster(Path("x"), {"node2": shell}, resources, [], clock)  # type: ignore[arg-type]
    assert cluster.online("node2", "node2") and not cluster.online("node2", "node1")
    assert cluster.drbd_state("node2") == ("WFConnection", "UpToDate/DUnknown")
    assert cluster.drbd_state("node2") == ("SyncSource", "UpToDate/Inconsistent")
    assert cluster.clock_offset("node2") == pytest.approx(2.5)
    assert cluster.journal("node2", 1_800_000_000.7) == journal


def _two_volume_spec() -> Any:
    import yaml
    from conftest import spec_of

    doc = yaml.safe_load((REPO / "templates/init/lab.yaml").read_text())
    vol = doc["volumes"][0]
    doc["volumes"] = [vol, dict(vol, name="r1", mount_point="/srv/logs")]
    return spec_of(doc)


def test_fence_request_and_kernel_crash_are_sent_to_the_right_node() -> None:
    shells = {n: ScriptedShell(n, [(r".", ok(""))]) for n in ("node1", "node2")}
    cluster = NodeCluster(Path("x"), shells, [], [], status=lambda path: {"healthy": True})  # type: ignore[arg-type]
    cluster.request_fence("node2", "node1", 90).join(timeout=10)
    cluster.crash_kernel("node1")
    assert shells["node2"].commands == [("stonith_admin --fence node1 --timeout 90", None)]
    assert shells["node1"].commands == [(CRASH, None)] and cluster.healthy()


# ---------------------------------------------------------------- the client process


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = _serve(tmp_path / "records", port)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_the_client_process_in_process(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "a.jsonl"
    argv = [
        "write",
        "--url",
        service,
        "--run",
        "r9",
        "--out",
        str(log),
        "--rate",
        "200",
        "--max-requests",
        "25",
    ]
    assert client_module.main(argv) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(a["seq"] for a in lines) == list(range(1, 26)) and all(a["ok"] for a in lines)
    capsys.readouterr()
    assert client_module.main(["digest", "--url", service, "--after", "0"]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert len(records) == 25 and {r[0] for r in records} == {a["id"] for a in lines}
    assert client_module.main(["health", "--url", f"http://127.0.0.1:{_free_port()}", "--timeout", "1"]) == 1
    # a stop file ends the writer before its limit
    stop = tmp_path / "stop"
    stop.touch()
    argv = [
        "write",
        "--url",
        service,
        "--run",
        "r10",
        "--out",
        str(tmp_path / "b.jsonl"),
        "--stop-file",
        str(stop),
    ]
    assert client_module.main(argv) == 0 and (tmp_path / "b.jsonl").read_text() == ""


def test_the_round_client_writes_reads_back_and_stops(service: str, tmp_path: Path) -> None:
    from hacloud.spec.load import load_spec
    from hacloud.spec.workspace import Workspace

    spec_path, _ = write_lab_spec(tmp_path, "writer")
    ws = Workspace(load_spec(spec_path), spec_path)
    power = FakePower(World(Scenario()))
    writer = Client(ws, power, service, tmp_path / "ft", rate=50, request_timeout=1.0, max_seconds=60)
    baseline = int(writer.health()["last_id"])
    writer.start()
    from hacloud.poll import poll_until

    assert poll_until(lambda: True if len(writer.attempts()) >= 10 else None, timeout=20, interval=0.05)
    writer.stop()
    assert writer.proc is not None and writer.proc.returncode == 0 and not writer.stop_file.exists()
    acked = [a for a in writer.attempts() if a.ok]
    records = writer.digest(baseline)
    assert {r[0] for r in records} == {a.id for a in acked} and all(a.node for a in acked)
    down = Client(
        ws,
        power,
        f"http://127.0.0.1:{_free_port()}",
        tmp_path / "ft",
        rate=5,
        request_timeout=1,
        max_seconds=5,
    )
    with pytest.raises(HacloudError) as info:
        down.health()
    assert info.value.code == "HAC520"
    with pytest.raises(HacloudError) as info:
        down.digest(0)
    assert info.value.code == "HAC521"


# ---------------------------------------------------------------- the SSH rig's wiring


def test_the_rig_is_wired_from_the_session(
    rendered: tuple[Any, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hacloud.deploy.session as session_module
    from hacloud.deploy.session import Session
    from hacloud.spec.load import load_spec
    from hacloud.spec.workspace import Workspace
    from hacloud.verify.fencetest.runner import Options, open_rig

    spec_path, inventory, bundle = rendered
    ws = Workspace(load_spec(spec_path), spec_path)
    closed: list[bool] = []

    class Conn:
        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(
        session_module,
        "open_session",
        lambda ws, inv: Session(ws, inv, {"node1": Conn(), "node2": Conn()}, bundle),
    )

    from hacloud.provision.provider import NodeNeeds, NodeProbe

    permission = NodeProbe("x.perm", "a dry run", "true", "grant it", before_faults=True)
    deploy_only = NodeProbe("x.read", "a read", "true", "allow it")

    class Provider(FakePower):
        def discover(self, ws: Any) -> Any:
            return inventory

        def node_needs(self, spec: Any, inv: Any) -> NodeNeeds:
            return NodeNeeds(probes=(deploy_only, permission))

    with open_rig(ws, Provider(World(Scenario())), Options(), ManualClock()) as rig:  # type: ignore[arg-type]
        plan = rig.plan
        # the preflight runs again only the probes marked before_faults
        assert rig.cluster.probes == (permission,)  # type: ignore[attr-defined]
        # the ids are the rendered CIB's: the group's members in order, the DRBD primitive
        cib = ET.fromstring(bundle.cib)
        group = [p.get("id") for p in cib.iterfind(".//group/primitive")]
        assert group == [plan.fs_id, plan.service_id, *plan.vip_ids]
        assert (
            cib.find(f".//clone//primitive[@id='{plan.drbd_id}']/instance_attributes/nvpair[@value='r0']")
            is not None
        )
        devices = {
            (p.get("id"), p.find(".//nvpair[@name='pcmk_host_list']").get("value"))
            for p in cib.iterfind(".//primitive[@class='stonith']")
        }  # type: ignore[union-attr]
        assert plan.nodes == ("node1", "node2") and set(plan.devices) == devices
        assert rig.writer.url == "http://192.0.2.100:8080"  # type: ignore[attr-defined]
    assert closed == [True, True]

    class Nothing(Provider):
        def discover(self, ws: Any) -> Any:
            return None

    with pytest.raises(HacloudError) as info, open_rig(ws, Nothing(World(Scenario())), Options()):  # type: ignore[arg-type]
        pass
    assert info.value.code == "HAC428"


def test_a_failed_permission_probe_is_a_preflight_problem_naming_node_and_fix() -> None:
    """A probe the provider marks ``before_faults`` runs on both nodes in the preflight; its
    failure (as the real shell runs it) is a problem that names the node, the output and the fix."""
    from hacloud.provision.provider import NodeProbe
    from hacloud.verify.fencetest.nodes import probe_problems

    def real_shell(command: str, stdin: bytes | None) -> Result:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    probe = NodeProbe(
        "x.perm",
        "EC2 dry runs",
        'test "$(hostname)" = never || { echo "stop_instances: UnauthorizedOperation"; exit 1; }',
        "give the role ec2:StopInstances",
        before_faults=True,
    )
    conns = {n: ScriptedShell(n, [(".", real_shell)]) for n in ("node1", "node2")}
    problems = probe_problems(conns, (probe,))  # type: ignore[arg-type]
    assert len(problems) == 2 and problems[0].startswith("node1: EC2 dry runs failed")
    assert "UnauthorizedOperation" in problems[1] and "fix: give the role ec2:StopInstances" in problems[1]
    passing = NodeProbe("x.ok", "a read", "true", "n/a", before_faults=True)
    assert probe_problems(conns, (passing,)) == []  # type: ignore[arg-type]
