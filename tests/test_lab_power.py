"""The lab's power record, read without root: the BMC's log (written by hacloud_lab.bmc's
``log``) is the guest's power supply, so fence-test confirms a fence from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hacloud_lab import power


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
        assert power.bmc_pid(directory) == proc.pid
        assert power.bmc_pid(tmp_path / "node2") is None
    finally:
        proc.kill()
        proc.wait()
    assert power.bmc_pid(directory) is None  # gone
