"""The lab without root: its power record (the BMC's log, written by hacloud_lab.bmc's ``log``,
is the guest's power supply, so fence-test confirms a fence from it) and its wait for a booting
guest to answer SSH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hacloud_lab import power
from hacloud_lab.lab import SSH_TIMEOUT, LabProvider
from test_provider_seam import onprem_spec

from hacloud.errors import HacloudError
from hacloud.poll import ManualClock, poll_until
from hacloud.spec.workspace import Workspace


def test_power_events_are_read_from_the_bmc_log_since_a_time(tmp_path: Path) -> None:
    log = tmp_path / "bmc.log"
    log.write_text(
        "1800000000.100 listening on 192.0.2.201:623\n"
        "1800000001.250 power on node1 (pgid 4242)\n"
        "1800000010.500 power off node1 (was on)\n"
        "1800000011.000 power cycle node1\n"  # not a power state: a cycle is an off and an on
        "garbage that is not a log line\n"
        "1800000020.750 power on node1 (pgid 4243)\n"
    )
    assert power.power_events(log, 1800000005) == [(1800000010.5, "off"), (1800000020.75, "on")]
    assert power.power_events(log, 0)[0] == (1800000001.25, "on")
    assert power.power_events(tmp_path / "missing.log", 0) == []  # no BMC yet: no record


def test_bmc_pid_is_only_a_running_bmc_of_this_guest(tmp_path: Path) -> None:
    directory = tmp_path / "node1"
    directory.mkdir()
    assert power.bmc_pid(directory) is None  # no pid file
    (directory / "bmc.pid").write_text(f"{os.getpid()}\n")
    assert power.bmc_pid(directory) is None  # a live process, but not hacloud_lab.bmc
    # a process whose command line is this guest's BMC (a stand-in that only sleeps)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "hacloud_lab.bmc", str(directory / "bmc.json")]
    )
    try:
        (directory / "bmc.pid").write_text(f"{proc.pid}\n")
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        # between fork and exec the child still shows this interpreter's command line
        execed = poll_until(
            lambda: b"hacloud_lab.bmc" in cmdline.read_bytes() or None, timeout=10, interval=0.01
        )
        assert execed
        assert power.bmc_pid(directory) == proc.pid
        assert power.bmc_pid(tmp_path / "node2") is None
    finally:
        proc.kill()
        proc.wait()
    assert power.bmc_pid(directory) is None  # gone


class ScriptedSsh(LabProvider):
    """The lab provider with its SSH to a guest answered from a script (a guest needs root and
    user-mode Linux): each call takes the next answer; an exception is raised, not returned."""

    def __init__(self, answers: list[subprocess.CompletedProcess[str] | Exception]) -> None:
        self.answers = answers
        self.calls = 0

    def ssh(
        self, ws: Workspace, node: str, command: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else subprocess.CompletedProcess([], 255, "", "refused")
        if isinstance(answer, Exception):
            raise answer
        return answer


#: what the probe prints on a booted guest: dpkg's pacemaker version, then /proc/drbd's first line
BOOTED = "2.1.5-1+deb12u1\nversion: 8.4.11 (api:1/proto:86-101)\n"


def test_a_booting_guest_is_waited_for_then_its_facts_read(tmp_path: Path) -> None:
    ws = onprem_spec(tmp_path)
    lab = ScriptedSsh(
        [
            subprocess.CompletedProcess([], 255, "", "Connection refused"),
            subprocess.TimeoutExpired("ssh", 15),
            subprocess.CompletedProcess([], 0, BOOTED, ""),
        ]
    )
    clock = ManualClock()
    facts = lab._wait_ssh(ws, "db1", clock)
    assert (facts.pacemaker, facts.drbd, facts.os_family) == ("2.1.5", "8.4", "debian")
    assert lab.calls == 3 and clock.slept == 2.0  # one second between two tries


def test_a_guest_that_never_answers_fails_after_the_ssh_timeout(tmp_path: Path) -> None:
    ws = onprem_spec(tmp_path)
    clock = ManualClock()
    with pytest.raises(HacloudError) as info:
        ScriptedSsh([])._wait_ssh(ws, "db1", clock)
    assert info.value.code == "HAC627" and "console.log" in info.value.remedy
    assert SSH_TIMEOUT <= clock.now <= SSH_TIMEOUT + 1
