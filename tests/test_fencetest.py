"""fence-test's measuring parts, without a cluster: the client against the real demo service on
loopback (records really written, deleted and altered on disk), the outage arithmetic on
timelines worked out by hand, stage extraction from a journal captured on the lab, the timer
floor from the profile file, and the demo OCF agent through the stock ocf-tester.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, need, run_hacloud, write_lab_spec

from hacloud.spec.profiles import load_profile
from hacloud.verify.fencetest.analysis import Attempt, availability, check_data, load_attempts, summary
from hacloud.verify.fencetest.timeline import floor, parse_journal, stage_patterns, stages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "hacloud/verify/demo_service.py"),
            "--data",
            str(data),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("demo service did not start")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, int, list[subprocess.Popen[bytes]]]]:
    data, port = tmp_path / "records", _free_port()
    procs = [_serve(data, port)]
    yield data, port, procs
    for p in procs:
        p.kill()
        p.wait()


def _client(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hacloud.verify.fencetest.client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_client_writes_survive_a_restart_and_every_ack_is_checked(
    store: tuple[Path, int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    """The service is killed mid-run and started again on the same directory (a failover on one
    machine): writes fail for a while, then succeed; nothing acknowledged is missing."""
    data, port, procs = store
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "attempts.jsonl"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hacloud.verify.fencetest.client",
            "write",
            "--url",
            url,
            "--run",
            "r1",
            "--out",
            str(log),
            "--rate",
            "50",
            "--timeout",
            "0.5",
            "--max-seconds",
            "30",
        ],
    )
    time.sleep(1.5)
    procs[0].kill()
    procs[0].wait()
    t0 = time.time()
    time.sleep(1.0)
    procs.append(_serve(data, port))
    time.sleep(1.5)
    writer.terminate()
    assert writer.wait(timeout=10) == 0
    attempts = load_attempts(log)
    acked = [a for a in attempts if a.ok]
    assert len(acked) > 50 and any(not a.ok for a in attempts)
    # independent of the code under test: the files on disk hold exactly what was sent
    for a in acked:
        assert hashlib.sha256((data / str(a.id)).read_bytes()).hexdigest() == a.sha
    digest = json.loads(_client("digest", "--url", url, "--after", "0").stdout)["records"]
    result = check_data(attempts, digest, "r1")
    assert result.lost == () and result.duplicates == 0 and result.corrupt == ()
    assert result.acknowledged == len(acked)
    avail = availability(attempts, t0)
    assert avail.rto_seconds is not None and 0.9 < avail.rto_seconds < 3.0
    assert avail.answered_by == socket.gethostname()


def test_a_lost_or_altered_record_is_reported(
    store: tuple[Path, int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    data, port, _ = store
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "a.jsonl"
    _client("write", "--url", url, "--run", "r2", "--out", str(log), "--rate", "100", "--max-requests", "40")
    attempts = load_attempts(log)
    acked = sorted((a for a in attempts if a.ok), key=lambda a: a.seq)
    assert len(acked) == 40
    (data / str(acked[3].id)).unlink()  # the record is gone: RPO > 0
    (data / str(acked[7].id)).write_bytes(b"hacloud-fencetest r2 8\nnot what was sent\n")
    digest = json.loads(_client("digest", "--url", url, "--after", "0").stdout)["records"]
    result = check_data(attempts, digest, "r2")
    assert acked[3].seq in result.lost and acked[7].seq in result.corrupt
    # a record stored twice (a replay) is a duplicate
    (data / "999").write_bytes((data / str(acked[10].id)).read_bytes())
    digest = json.loads(_client("digest", "--url", url, "--after", "0").stdout)["records"]
    assert check_data(attempts, digest, "r2").duplicates == 1


def _attempt(seq: int, sent: float, done: float, ok: bool, node: str = "node1") -> Attempt:
    return Attempt(seq, f"s{seq}", sent, done, ok, seq if ok else None, node if ok else None)


def test_outage_arithmetic_on_a_timeline_worked_out_by_hand() -> None:
    t0 = 100.0
    attempts = [
        _attempt(1, 99.0, 99.1, True),
        _attempt(2, 99.8, 100.2, False),  # in flight at the fault: does not open the outage
        _attempt(3, 100.05, 100.1, True),  # still answered by the dying node
        _attempt(4, 100.3, 101.3, False),  # the outage begins at 100.3
        _attempt(5, 101.3, 102.3, False),
        _attempt(6, 112.0, 112.4, True, "node2"),  # first answer after the outage
        _attempt(7, 112.5, 112.6, True, "node2"),
    ]
    a = availability(attempts, t0)
    assert a.outage_began == 100.3 and a.answered_again == 112.4 and a.answered_by == "node2"
    assert a.rto_seconds == 12.4 and a.outage_seconds == pytest.approx(12.3)
    assert a.serving == ("node1", "node2") and not a.interleaved
    # while the test runs, in-flight failures alone do not count as an outage yet
    assert availability(attempts[:3], t0, final=False).outage_began is None
    # two nodes answering alternately is reported
    both = [*attempts, _attempt(8, 113.0, 113.1, True, "node1")]
    assert availability(both, t0).interleaved
    # the service never came back
    assert availability(attempts[:5], t0).rto_seconds is None


def test_percentiles() -> None:
    s = summary([float(x) for x in range(1, 21)])
    assert s == {"min": 1.0, "median": 10.5, "p95": 19.0, "max": 20.0}


def test_stages_from_a_journal_captured_on_the_lab() -> None:
    """node2's journal after node1 lost power; expected offsets computed by hand from the
    microsecond timestamps in the file (t0 = 1796162067.0)."""
    text = (REPO / "tests/fixtures/journal-power-node1.jsonl").read_text()
    events = parse_journal(text, offset=0.0)
    found = stages(
        events, stage_patterns("node1", "node2", "drbd_r0", "fs_r0", "svc_demo", ["vip_ip"]), 1796162067.0
    )
    assert found == {
        "token_lost": 0.853,
        "detected": 2.081,
        "fence_requested": 2.777,
        "fenced": 6.938,
        "promoted": 12.171,
        "mounted": 14.442,
        "service_started": 15.991,
        "vip_up": 16.939,
    }
    # a clock offset shifts every stage (the node's clock 0.5 s ahead of ours)
    shifted = stages(
        parse_journal(text, offset=0.5),
        stage_patterns("node1", "node2", "drbd_r0", "fs_r0", "svc_demo", ["vip_ip"]),
        1796162067.0,
    )
    assert shifted["fenced"] == pytest.approx(6.438)


def test_floor_follows_the_profile_file() -> None:
    raw = yaml.safe_load((REPO / "templates/profiles/lab.yaml").read_text())["values"]

    def v(key: str) -> float:
        return float(raw[key]["value"] if isinstance(raw[key], dict) else raw[key])

    profile = load_profile("lab")
    power = floor("power", profile, victim_was_active=True)
    assert power.total == pytest.approx(
        (v("corosync.token") + v("corosync.consensus")) / 1000
        + v("fencing.pcmk_delay_base")
        + v("pacemaker.priority_fencing_delay")
    )
    assert floor("fence", profile, victim_was_active=True).total == v("fencing.pcmk_delay_base")
    standby = floor("power", profile, victim_was_active=False)
    assert "priority_fencing_delay" not in standby.parts


@pytest.mark.tools
def test_demo_agent_passes_ocf_tester(tmp_path: Path) -> None:
    """The rendered ocf:hacloud:demo agent, run by resource-agents' own ocf-tester (start,
    monitor, stop, idempotency, return codes) against the real demo program."""
    need("ocf-tester", "curl")
    if os.geteuid() != 0:
        pytest.skip("ocf-tester runs agents as root")
    from conftest import render_doc

    _, bundle = render_doc(yaml.safe_load((REPO / "templates/init/lab.yaml").read_text()))
    files = {f.path: f for f in bundle.files["node1"]}
    # ocf-tester also runs the agent as an unprivileged user: the path must be traversable
    tmp_path = Path(tempfile.mkdtemp(prefix="hacloud-ocf-"))
    tmp_path.chmod(0o755)
    agent = tmp_path / "demo"
    agent.write_bytes(files["/usr/lib/ocf/resource.d/hacloud/demo"].content)
    agent.chmod(0o755)
    program = tmp_path / "hacloud-demo.py"
    program.write_bytes(files["/usr/local/lib/hacloud/hacloud-demo.py"].content)
    (tmp_path / "mnt").mkdir()
    port = _free_port()
    proc = subprocess.run(
        [
            "ocf-tester",
            "-n",
            "svc_demo",
            "-o",
            f"program={program}",
            "-o",
            f"data={tmp_path / 'mnt' / 'rec'}",
            "-o",
            f"port={port}",
            "-o",
            f"pidfile={tmp_path / 'demo.pid'}",
            "-o",
            f"logfile={tmp_path / 'demo.log'}",
            str(agent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    # and it fails when it must: another demo process on the port is not "our service"
    blocker = _serve(tmp_path / "other", port)
    try:
        env = {
            **os.environ,
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESKEY_program": str(program),
            "OCF_RESKEY_data": str(tmp_path / "mnt" / "rec"),
            "OCF_RESKEY_port": str(port),
            "OCF_RESKEY_pidfile": str(tmp_path / "demo.pid"),
            "OCF_RESKEY_logfile": str(tmp_path / "demo.log"),
        }
        start = subprocess.run([str(agent), "start"], env=env, timeout=60)
        assert start.returncode != 0
        assert subprocess.run([str(agent), "monitor"], env=env, timeout=60).returncode == 7
    finally:
        blocker.kill()
        blocker.wait()


def test_cli_refuses_bad_requests_before_touching_anything(tmp_path: Path) -> None:
    spec, doc = write_lab_spec(tmp_path, "cliref")
    env = dict(os.environ)
    bad = run_hacloud(spec, env, "fence-test", "-y", "--method", "unplug")
    said = " ".join(bad.stderr.replace("│", " ").split())  # click's box wraps the message
    assert bad.returncode == 2 and "'unplug' is not one of 'fence', 'power', 'crash', 'partition'" in said
    both = run_hacloud(spec, env, "fence-test", "-y", "--method", "partition", "--node", "node1")
    assert both.returncode == 2 and "--node does not apply to partition" in both.stderr
    nobody = run_hacloud(spec, env, "fence-test", "-y", "--node", "node9")
    assert nobody.returncode == 2 and "node1, node2" in nobody.stderr
    doc["service"] = {"kind": "systemd", "unit": "postgresql"}
    spec.write_text(yaml.safe_dump(doc))
    other = run_hacloud(spec, env, "fence-test", "-y")
    assert other.returncode == 2 and "demo" in other.stderr
    # nothing was created: no lab
    assert not (tmp_path / ".hacloud" / "cliref" / "lab").exists()


def test_history_groups_runs_by_the_timers_in_force(tmp_path: Path) -> None:
    from hacloud.spec.load import load_spec
    from hacloud.spec.workspace import Workspace
    from hacloud.verify.fencetest.runner import history_path, history_summary

    spec, _ = write_lab_spec(tmp_path, "hist")
    ws = Workspace(load_spec(spec), spec)
    ws.state_dir.mkdir(parents=True)
    rows = [("power", 1000, 20.0), ("power", 1000, 18.0), ("power", 3000, 30.0), ("crash", 1000, 25.0)]
    history_path(ws).write_text(
        "".join(
            json.dumps(
                {"method": m, "timers": {"corosync.token": t}, "rto_seconds": r, "passed": True, "lost": 0}
            )
            + "\n"
            for m, t, r in rows
        )
        + "{torn line\n"
    )
    groups = {(g["method"], g["timers"]["corosync.token"]): g for g in history_summary(ws)}
    assert set(groups) == {("power", 1000), ("power", 3000), ("crash", 1000)}
    assert groups[("power", 1000)]["rounds"] == 2 and groups[("power", 1000)]["rto"]["median"] == 19.0


def test_history_records_the_timers_of_the_nodes_os_variant(tmp_path: Path) -> None:
    """A round on RHEL Azure nodes ran with Microsoft's RHEL delays (priority-fencing-delay 15,
    no pcmk_delay_max), not the SUSE defaults of the base profile (30 and 15): the history says
    so, so rounds before and after a change of OS or profile are told apart."""
    import dataclasses

    from conftest import spec_of

    from hacloud.provision.provider import get_provider
    from hacloud.render import effective_profile
    from hacloud.spec.inventory import NodeFacts
    from hacloud.spec.workspace import Workspace
    from hacloud.verify.fencetest.runner import RoundResult, append_history, history_path, timers_of

    path = tmp_path / "hacloud.yaml"
    path.write_text((REPO / "templates/init/azure.yaml").read_text())
    spec = spec_of(yaml.safe_load(path.read_text()))
    ws = Workspace(spec, path)
    ws.state_dir.mkdir(parents=True)
    inv = get_provider("azure").planned_inventory(spec)
    rhel = tuple(dataclasses.replace(n, facts=NodeFacts(os_family="rhel")) for n in inv.nodes)
    profile = effective_profile(spec, load_profile("azure"), dataclasses.replace(inv, nodes=rhel))
    started = "2026-12-03T00:00:00+00:00"
    # as play_round records it
    result = RoundResult("power", "node1", "node2", started, profile=profile.label, timers=timers_of(profile))
    append_history(ws, result)
    append_history(ws, RoundResult("power", "node1", "node2", "2026-12-03T00:01:00+00:00"))
    rhel_line, unknown_line = (json.loads(line) for line in history_path(ws).read_text().splitlines())
    assert rhel_line["profile"] == "azure (rhel)"
    assert rhel_line["timers"]["pacemaker.priority_fencing_delay"] == 15
    assert rhel_line["timers"]["fencing.pcmk_delay_max"] == 0
    base = load_profile("azure")
    assert unknown_line["timers"]["pacemaker.priority_fencing_delay"] == base.num(
        "pacemaker.priority_fencing_delay"
    )


def test_onprem_power_needs_a_bmc(tmp_path: Path) -> None:
    from conftest import onprem_doc, spec_of
    from hacloud_onprem import OnpremProvider

    from hacloud.errors import ProviderUnavailable
    from hacloud.spec.workspace import Workspace

    spec = spec_of(onprem_doc(fencing="sbd"))
    with pytest.raises(ProviderUnavailable) as info:
        OnpremProvider().power(Workspace(spec, tmp_path / "hacloud.yaml"), "node1")
    assert "fence_ipmilan or fence_redfish" in info.value.message and "--method fence" in info.value.remedy
