"""One user-mode Linux guest: its command line, and power by process group.

Contract: a guest is "on" while its process group has a live ``linux.uml`` process whose
command line carries the guest's ``umid``. :func:`start` runs it in a new session (so it and
every helper it forks share one process group) inside the lab namespace; :func:`kill` sends
SIGKILL to the whole group, like pulling the plug, and waits until no process of it is left,
so no helper keeps the disk images locked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from hacloud.poll import poll_until
from hacloud_lab.kernel import SYSTEM_KERNEL


@dataclass(frozen=True)
class GuestConfig:
    name: str
    umid: str
    directory: str  # per-guest state: root.cow, data disks, console.log, guest.pid
    base_image: str
    data_disks: tuple[str, ...]
    taps: tuple[tuple[str, str], ...]  # (tap, mac) per link
    addresses: tuple[str, ...]  # "192.0.2.11/24" per link
    hosts: str  # "node1:192.0.2.11,node2:192.0.2.12"
    admin_key: str  # base64 blob of the ssh-ed25519 public key
    memory_mib: int
    kernel: str = str(SYSTEM_KERNEL)  # linux.uml to run (hacloud_lab.kernel chooses it)
    network: str = "tuntap"  # the kernel's network transport: "tuntap" or "vector"
    seccomp: bool = False  # the kernel supports seccomp=on (faster system calls than ptrace)
    # AWS box additions (defaults keep the lab's guests as they were):
    disk_serials: tuple[str, ...] = ()  # per data disk, its serial ("" none): EBS volume ids
    cmdline: tuple[str, ...] = ()  # extra kernel arguments, e.g. lab.gw=, lab.ifname=, lab.ca=
    netns: str = ""  # start the guest inside this namespace, where its taps are
    # UML's runtime dir (mconsole socket): default <directory>/uml; a unix socket path must stay
    # under 108 bytes, so a deep state directory needs a short one elsewhere
    uml_dir: str = ""

    @property
    def runtime_dir(self) -> Path:
        return Path(self.uml_dir) if self.uml_dir else Path(self.directory) / "uml"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @staticmethod
    def load(path: Path) -> GuestConfig:
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["data_disks"] = tuple(raw["data_disks"])
        raw["taps"] = tuple(tuple(t) for t in raw["taps"])
        raw["addresses"] = tuple(raw["addresses"])
        for key in ("disk_serials", "cmdline"):
            raw[key] = tuple(raw.get(key, ()))
        return GuestConfig(**raw)

    @property
    def pidfile(self) -> Path:
        return Path(self.directory) / "guest.pid"

    def command(self) -> list[str]:
        d = Path(self.directory)
        args = [
            self.kernel,
            f"umid={self.umid}",
            f"uml_dir={self.runtime_dir}",
            f"mem={self.memory_mib}M",
            # ubd0 = per-guest copy-on-write layer over the shared, never-modified image
            f"ubd0={d / 'root.cow'},{self.base_image}",
        ]
        for i, disk in enumerate(self.data_disks):
            serial = self.disk_serials[i] if i < len(self.disk_serials) else ""
            # "file,,serial": no backing file; the serial shows in /sys/block/ubdX/serial
            args.append(f"ubd{i + 1}={disk},,{serial}" if serial else f"ubd{i + 1}={disk}")
        if self.network == "tuntap":
            args += [f"eth{i}=tuntap,{tap},{mac}" for i, (tap, mac) in enumerate(self.taps)]
        else:
            # gro=1: the guest takes the host's offloaded (GSO) frames with virtio-net headers.
            # Without it every frame larger than the MTU is dropped, and TCP into the guest
            # (DRBD resync, replication) crawls at ~20 KB/s; with it, several hundred MB/s.
            args += [
                f"vec{i}:transport=tap,ifname={tap},mac={mac},gro=1" for i, (tap, mac) in enumerate(self.taps)
            ]
        args += [
            "root=/dev/ubda",
            "rw",
            "con0=null,fd:1",
            "con=null",
            "ssl=null",
            f"lab.hostname={self.name}",
            f"lab.hosts={self.hosts}",
            f"lab.key={self.admin_key}",
            f"lab.if={'eth' if self.network == 'tuntap' else 'vec'}",
        ]
        if self.seccomp:
            args.append("seccomp=on")
        args += [f"lab.ip{i}={addr}" for i, addr in enumerate(self.addresses)]
        args += list(self.cmdline)
        return args


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])  # state, process group


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == pgid and st[0] != "Z":
                out.append(int(entry))
    return out


def running_pgid(config: GuestConfig) -> int | None:
    """The guest's process group if it is on, else None."""
    try:
        pgid = int(config.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    marker = f"umid={config.umid} "
    for pid in group_members(pgid):
        if marker in _cmdline(pid) + " ":
            return pgid
    return None


def start(config: GuestConfig) -> int:
    """Power on: start the guest in its own session; returns its process group id."""
    existing = running_pgid(config)
    if existing is not None:
        return existing
    d = Path(config.directory)
    config.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # `ip netns exec` execs in place (same pid), so the pid is the guest's and its taps are there
    prefix = ["ip", "netns", "exec", config.netns] if config.netns else []
    pid = spawn_detached([*prefix, *config.command()], d / "console.log")
    config.pidfile.write_text(f"{pid}\n")
    return pid


def spawn_detached(command: list[str], log: Path) -> int:
    """Start ``command`` in a new session (its own process group), output appended to ``log``;
    returns its pid. The caller's exit does not stop it."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def kill(config: GuestConfig, timeout: float = 20.0) -> bool:
    """Power off hard. Returns True if the guest was on."""
    pgid = running_pgid(config)
    if pgid is None:
        return False

    def gone() -> bool | None:
        if not group_members(pgid):
            return True
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        _reap()
        return None

    poll_until(gone, timeout=timeout, interval=0.1)
    _reap()
    return True


def _reap() -> None:
    # Guests started by this process are its children; collect them so none stays a zombie.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
