"""The lab's power supply: one virtual BMC per guest (:mod:`hacloud_lab.bmc`), driven over IPMI
the way fence_ipmilan drives it, and its log of every power change.

Contract: ``ensure_bmc`` starts a node's BMC once (a running one is reused) and waits until it
listens; the password travels only in its 0600 file, never on a command line. ``power_events``
reads the BMC's own log: it is the guest's power supply, so its timestamps are when the plug
was pulled or put back, whoever asked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from hacloud.errors import HacloudError
from hacloud.poll import SYSTEM, Clock, poll_until
from hacloud.provision.provider import PowerChange
from hacloud.spec.model import IpmiTarget
from hacloud_lab import guest

#: seconds a new BMC gets to listen (it starts in well under one on an idle machine)
BMC_START_TIMEOUT = 20.0


def ensure_bmc(
    ns: str, directory: Path, target: IpmiTarget, password_file: Path, clock: Clock = SYSTEM
) -> None:
    """The BMC of the guest in ``directory`` runs in ``ns`` (started unless it already does)."""
    # The BMC reads its password from the 0600 file, never from a command line.
    config = {
        "guest": str(directory / "guest.json"),
        "address": target.ip,
        "port": target.port,
        "username": target.username,
        "password_file": str(password_file),
        "pidfile": str(directory / "bmc.pid"),
        "power_on": True,
    }
    (directory / "bmc.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if bmc_pid(directory) is not None:
        return
    guest.spawn_detached(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "hacloud_lab.bmc", str(directory / "bmc.json")],
        directory / "bmc.log",
    )

    def listening() -> bool | None:
        log = directory / "bmc.log"
        return True if bmc_pid(directory) is not None and b"listening" in log.read_bytes() else None

    if poll_until(listening, timeout=BMC_START_TIMEOUT, interval=0.2, clock=clock) is None:
        raise HacloudError(
            f"the virtual BMC for {directory.name} did not start",
            f"see {directory / 'bmc.log'}",
            code="HAC610",
        )


def ipmitool(
    ns: str, target: IpmiTarget, password_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``ipmitool`` against ``target`` from inside the lab's namespace (password from its file)."""
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            target.ip,
            "-p",
            str(target.port),
            "-U",
            target.username,
            "-f",
            str(password_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def power_events(bmc_log: Path, since: float) -> list[PowerChange]:
    """(epoch seconds, "on"/"off") power changes the BMC logged at or after ``since``."""
    events: list[PowerChange] = []
    try:
        text = bmc_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        m = re.match(r"(\d+\.\d+) power (on|off) ", line)
        if m and float(m.group(1)) >= since:
            events.append((float(m.group(1)), "on" if m.group(2) == "on" else "off"))
    return events


def bmc_pid(directory: Path) -> int | None:
    """The pid of the BMC serving the guest in ``directory`` (None: not running)."""
    try:
        pid = int((directory / "bmc.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"hacloud_lab.bmc" in cmdline and str(directory).encode() in cmdline else None


def kill_group(pid: int, clock: Clock = SYSTEM) -> None:
    """Stop ``pid``'s whole process group: SIGTERM, then SIGKILL for what is left after 5 s."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        poll_until(lambda: None if guest.group_members(pgid) else True, timeout=5, interval=0.1, clock=clock)
