"""Parsers of the DRBD kernel module's state, on real text.

DRBD 8.4 (``/proc/drbd``, ``tests/fixtures/drbd84-*``): captured from the lab guests (UML,
in-tree DRBD 8.4.11) in one run of ``hacloud up``, a block corrupted below DRBD on the
Secondary, ``hacloud verify``, a split brain made by hand and recovered with the steps
``hacloud status`` printed. DRBD 9 (``drbdsetup status --verbose --statistics``,
``tests/fixtures/drbd9-*``): the lab kernel carries 8.4 and this host has no DRBD module, so
these are written from drbd-utils' printing code (user/v9/drbdsetup.c resource_status,
device_status, connection_status, peer_device_status, print_*_statistics; wrap_printf wraps
at 80 columns when stdout is not a terminal), with plausible numbers.
"""

from __future__ import annotations

from pathlib import Path

from hacloud.deploy.query.drbd import (
    by_minor,
    link_state,
    parse_drbdsetup_status,
    parse_proc_drbd,
    split_brain_nodes,
    split_brain_report,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_drbd9_healthy_two_resources() -> None:
    vols = parse_drbdsetup_status(_read("drbd9-status-healthy-node1.txt"))
    assert [(v.resource, v.minor) for v in vols] == [("r0", 0), ("r1", 1)]
    for v in vols:
        assert (v.role, v.disk, v.connection, v.replication) == (
            "Primary",
            "UpToDate",
            "Connected",
            "Established",
        )
        assert (v.peer, v.peer_role, v.peer_disk, v.out_of_sync_kib) == ("node2", "Secondary", "UpToDate", 0)
        assert not v.standalone and not v.verifying and not v.suspended and v.progress is None
        assert link_state(v) == "Connected"


def test_drbd9_verify_running_and_done() -> None:
    (running,) = parse_drbdsetup_status(_read("drbd9-status-verifying-node1.txt"))
    assert running.verifying and running.progress == 42.17 and running.out_of_sync_kib == 4
    assert link_state(running) == "VerifyS"
    (done,) = parse_drbdsetup_status(_read("drbd9-status-verified-node1.txt"))
    assert not done.verifying and done.out_of_sync_kib == 4 and done.replication == "Established"


def test_drbd9_split_brain_names_the_standalone_node_and_the_recovery() -> None:
    states = {
        "node1": parse_drbdsetup_status(_read("drbd9-status-splitbrain-node1.txt")),
        "node2": parse_drbdsetup_status(_read("drbd9-status-splitbrain-node2.txt")),
    }
    assert states["node2"][0].standalone and states["node2"][0].peer_disk == "DUnknown"
    assert states["node1"][0].connection == "Connecting"
    assert split_brain_nodes(states) == {"r0": ["node2"]}
    (entry,) = split_brain_report(states, {"node2": True}, service_node="node1")
    assert entry["split_brain"] and entry["survivor"] == "node1" and entry["victim"] == "node2"
    steps = "\n".join(entry["steps"])  # type: ignore[arg-type]
    # the DRBD user guide's manual recovery, 8.4 and 9: node2 is StandAlone (no disconnect
    # needed), node1 still Connecting (no connect needed)
    assert "on node2: drbdadm secondary r0; drbdadm connect --discard-my-data r0" in steps
    assert "on node1:" not in steps


def test_standalone_without_a_logged_split_brain_only_reconnects() -> None:
    states = {"node2": parse_drbdsetup_status(_read("drbd9-status-splitbrain-node2.txt"))}
    (entry,) = split_brain_report(states, {"node2": False}, service_node="node1")
    assert not entry["split_brain"] and entry["steps"] == ["on node2: drbdadm connect r0"]


def test_garbage_reads_as_nothing_not_healthy() -> None:
    assert parse_drbdsetup_status("") == []
    assert parse_proc_drbd("version: 8.4.11 (api:1/proto:86-101)\n") == []
    assert parse_proc_drbd(" 0: cs:Unconfigured\n") == []
    assert (
        by_minor(
            parse_proc_drbd(" 7: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"),
            {0: "r0"},
        )
        == []
    )


def test_drbd84_healthy_pair_from_the_lab() -> None:
    primary = by_minor(parse_proc_drbd(_read("drbd84-proc-healthy-node2.txt")), {0: "r0"})
    secondary = by_minor(parse_proc_drbd(_read("drbd84-proc-healthy-node1.txt")), {0: "r0"})
    assert [(v.resource, v.role, v.peer_role) for v in primary] == [("r0", "Primary", "Secondary")]
    assert [(v.resource, v.role, v.peer_role) for v in secondary] == [("r0", "Secondary", "Primary")]
    for v in primary + secondary:
        assert (v.disk, v.peer_disk, v.connection, v.replication) == (
            "UpToDate",
            "UpToDate",
            "Connected",
            "Established",
        )
        assert v.out_of_sync_kib == 0 and v.progress is None and not v.suspended and not v.standalone


def test_drbd84_online_verify_from_the_lab() -> None:
    """A 4 KiB block was overwritten below DRBD on the Secondary, then `hacloud verify` ran:
    mid-way /proc/drbd shows VerifyS with its progress and the block already counted; the
    kernel logged 'Online verify found 1 4k block out of sync!' and oos:4 stays afterwards."""
    (running,) = parse_proc_drbd(_read("drbd84-proc-verifying-node2.txt"))
    assert running.verifying and running.replication == "VerifyS" and running.connection == "Connected"
    assert running.progress == 33.6 and running.out_of_sync_kib == 4
    assert link_state(running) == "VerifyS"
    for name in ("drbd84-proc-verified-node2.txt", "drbd84-proc-verified-node1.txt"):
        (done,) = parse_proc_drbd(_read(name))
        assert not done.verifying and done.out_of_sync_kib == 4 and done.replication == "Established"


def test_drbd84_split_brain_from_the_lab() -> None:
    """Both nodes StandAlone after a real split brain (after-sb-1pri disconnect); the kernel
    logged it. The steps `hacloud status` printed brought the pair back to Connected
    UpToDate/UpToDate in that lab run (drbd84-proc-recovered-node1.txt)."""
    from hacloud.deploy.query.drbd import SPLIT_BRAIN_LOG

    states = {
        node: by_minor(parse_proc_drbd(_read(f"drbd84-proc-splitbrain-{node}.txt")), {0: "r0"})
        for node in ("node1", "node2")
    }
    assert [(v.role, v.disk, v.peer_disk, v.connection, v.out_of_sync_kib) for v in states["node2"]] == [
        ("Primary", "UpToDate", "Outdated", "StandAlone", 56)
    ]
    assert [(v.role, v.connection, v.replication) for v in states["node1"]] == [
        ("Secondary", "StandAlone", "Off")
    ]
    assert split_brain_nodes(states) == {"r0": ["node1", "node2"]}
    logged = {"node1": SPLIT_BRAIN_LOG in _read("drbd84-dmesg-splitbrain-node1.txt")}
    (entry,) = split_brain_report(states, logged, service_node="node2")
    assert entry["split_brain"] and (entry["survivor"], entry["victim"]) == ("node2", "node1")
    assert entry["steps"][1:3] == [
        "on node1: drbdadm secondary r0; drbdadm connect --discard-my-data r0",
        "on node2: drbdadm connect r0",
    ]
    (after,) = parse_proc_drbd(_read("drbd84-proc-recovered-node1.txt"))
    assert (after.connection, after.disk, after.peer_disk, after.out_of_sync_kib) == (
        "Connected",
        "UpToDate",
        "UpToDate",
        0,
    )


def test_the_kernel_messages_hacloud_waits_for_are_the_real_ones() -> None:
    from hacloud.ops.verify import VERIFY_DONE_LOG

    assert VERIFY_DONE_LOG in _read("drbd84-dmesg-verify-node2.txt")
    assert "Online verify found 1 4k block out of sync" in _read("drbd84-dmesg-verify-node2.txt")


class _Replay:
    """A node connection that answers with text captured in the lab, in order: the stand-in
    is SSH only; DRBD's answers are real (the verify's progress was a lab run)."""

    def __init__(self, procs: list[str], done_logs: list[int]) -> None:
        self.procs, self.done_logs, self.commands = procs, done_logs, []  # type: ignore[var-annotated]

    def run(self, command: str, check: bool = True, timeout: float = 0) -> object:
        from types import SimpleNamespace

        self.commands.append(command)
        if command.startswith("cat /proc/drbd"):
            text = self.procs.pop(0) if len(self.procs) > 1 else self.procs[0]
        elif command.startswith("dmesg"):
            text = str(self.done_logs.pop(0) if len(self.done_logs) > 1 else self.done_logs[0])
        else:
            text = ""
        return SimpleNamespace(stdout=text, returncode=0)


def _spec() -> object:
    """The managed DRBD resources of the lab's spec (r0, minor 0)."""
    from conftest import onprem_doc, spec_of

    from hacloud.render.resources import drbd_resources

    return drbd_resources(spec_of(onprem_doc()))


def test_verify_starts_waits_and_reads_the_kernels_count() -> None:
    from hacloud.ops.verify import _verify_one

    healthy, running, done = (
        _read("drbd84-proc-healthy-node2.txt"),
        _read("drbd84-proc-verifying-node2.txt"),
        _read("drbd84-proc-verified-node2.txt"),
    )
    conn = _Replay([healthy, running, running, done], [0])
    result = _verify_one(conn, _spec(), "r0", "node2", lambda _: None, None, 0)  # type: ignore[arg-type]
    assert result.out_of_sync_kib == 4 and result.node == "node2"
    assert conn.commands.count("drbdadm verify r0") == 1


def test_verify_joins_a_running_one_and_sees_a_fast_one_finish_by_the_log() -> None:
    from hacloud.ops.verify import _verify_one

    conn = _Replay([_read("drbd84-proc-verifying-node2.txt"), _read("drbd84-proc-verified-node2.txt")], [3])
    _verify_one(conn, _spec(), "r0", "node2", lambda _: None, None, 0)  # type: ignore[arg-type]
    assert "drbdadm verify r0" not in conn.commands  # joined, not restarted
    # never seen in VerifyS (a small disk between two polls): done once the kernel logged it
    conn = _Replay(
        [_read("drbd84-proc-healthy-node2.txt"), _read("drbd84-proc-verified-node2.txt")], [0, 0, 1]
    )
    assert _verify_one(conn, _spec(), "r0", "node2", lambda _: None, None, 0).out_of_sync_kib == 4  # type: ignore[arg-type]


def test_verify_timeout_says_the_verify_keeps_running() -> None:
    import pytest

    from hacloud.errors import HacloudError
    from hacloud.ops.verify import _verify_one

    conn = _Replay([_read("drbd84-proc-verifying-node2.txt")], [0])
    with pytest.raises(HacloudError) as err:
        _verify_one(conn, _spec(), "r0", "node2", lambda _: None, 0.0, 0)  # type: ignore[arg-type]
    assert "keeps running" in err.value.message and "hacloud verify" in err.value.remedy


def test_status_text_names_the_split_brain_and_the_steps(monkeypatch: object) -> None:
    """`hacloud status` as printed for the lab's split brain (the data is what the lab
    reported; only the SSH round trips are skipped)."""
    import pytest
    from typer.testing import CliRunner

    from hacloud import cli
    from hacloud.ops import status as commands

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    states = {
        node: by_minor(parse_proc_drbd(_read(f"drbd84-proc-splitbrain-{node}.txt")), {0: "r0"})
        for node in ("node1", "node2")
    }
    nodes = [
        {
            "name": node,
            "online": True,
            "address": addr,
            "drbd_role": vols[0].role,
            "drbd_disk": vols[0].disk,
            "drbd_connection": link_state(vols[0]),
            "sync": None,
            "drbd": [v.as_dict() for v in vols],
        }
        for (node, vols), addr in zip(states.items(), ("192.0.2.11", "192.0.2.12"), strict=True)
    ]
    status = {
        "cluster": "lab",
        "healthy": False,
        "quorum": True,
        "fencing_enabled": True,
        "nodes": nodes,
        "vip": "192.0.2.100",
        "service_node": "node2",
        "fencing": [],
        "fencing_history": [],
        "failed_actions": [],
        "split_brain": split_brain_report(states, {"node1": True, "node2": True}, "node2"),
    }
    monkeypatch.setattr(commands, "cluster_status", lambda *_a, **_k: status)
    out = CliRunner().invoke(cli.app, ["status"])
    assert out.exit_code == 1
    assert "SPLIT BRAIN: DRBD r0 is StandAlone on node1, node2" in out.output
    assert "2. on node1: drbdadm secondary r0; drbdadm connect --discard-my-data r0" in out.output
    assert "3. on node2: drbdadm connect r0" in out.output
