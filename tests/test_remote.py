"""The SSH transport against a real sshd on loopback (testbed.md §6): host keys recorded at
first contact and enforced after, atomic uploads with mode, timeouts, errors with output."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need

from hacloud.deploy.remote import Connection, RemoteError
from hacloud.errors import HacloudError
from hacloud.provision.endpoint import Endpoint

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        auth = root / "authorized_keys"
        auth.write_text(self.client_key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {auth}\nPidFile {root / 'sshd.pid'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nStrictModes no\nUsePAM no\n"
            "Subsystem sftp internal-sftp\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=subprocess.DEVNULL)
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("sshd did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def connection(self, known: Path, log: list[str] | None = None) -> Connection:
        ep = Endpoint("node1", "127.0.0.1", self.port, "root", str(self.client_key))
        return Connection(ep, known, (log if log is not None else []).append, timeout=10)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    need(SSHD, "ssh-keygen")
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd runs as root")
    server = Sshd(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.tools
def test_first_contact_records_then_enforces(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "state" / "known_hosts"
    log: list[str] = []
    conn = sshd.connection(known, log).connect()
    assert conn.run("echo hi").stdout == "hi\n"
    conn.close()
    assert any("first contact, recorded host key ssh-ed25519 SHA256:" in line for line in log)
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    recorded = known.read_text()
    # second contact: same key, nothing new recorded
    log.clear()
    sshd.connection(known, log).connect().close()
    assert not log and known.read_text() == recorded
    # the server's key changes (a rebuilt node, or an attacker): refused before logging in
    sshd.stop()
    sshd.host_key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(sshd.host_key)], check=True)
    sshd.start()
    with pytest.raises(HacloudError) as info:
        sshd.connection(known).connect()
    assert "not the one recorded" in info.value.message and str(known) in info.value.remedy
    assert known.read_text() == recorded


@pytest.mark.tools
def test_put_is_atomic_with_mode_and_never_on_a_command_line(sshd: Sshd, tmp_path: Path) -> None:
    conn = sshd.connection(tmp_path / "kh", log := []).connect()
    conn.verbose = True
    target = tmp_path / "remote" / "etc" / "secret.key"
    conn.put(str(target), b"top-secret-value\n", 0o600)
    assert target.read_bytes() == b"top-secret-value\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".hacloud-")]
    assert not any("top-secret-value" in line for line in log)  # the -v log shows no content
    conn.put(str(target), b"v2\n", 0o644)
    assert target.read_bytes() == b"v2\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert conn.read(str(target)) == b"v2\n" and conn.read(str(tmp_path / "nope")) is None
    conn.close()


@pytest.mark.tools
def test_errors_carry_output_and_timeouts_fire(sshd: Sshd, tmp_path: Path) -> None:
    conn = sshd.connection(tmp_path / "kh").connect()
    with pytest.raises(RemoteError) as info:
        conn.run("echo broken-thing >&2; exit 3")
    assert info.value.rc == 3 and "broken-thing" in info.value.message
    assert conn.run("exit 4", check=False).rc == 4
    started = time.monotonic()
    with pytest.raises(HacloudError) as timeout:
        conn.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10 and "did not finish" in timeout.value.message
    conn.close()


@pytest.mark.tools
def test_unreachable_node_is_a_clear_error(tmp_path: Path) -> None:
    ep = Endpoint("node9", "127.0.0.1", _free_port(), "root", None)
    with pytest.raises(HacloudError) as info:
        Connection(ep, tmp_path / "kh", lambda _m: None, timeout=3).connect()
    assert "cannot log in" in info.value.message and info.value.remedy


@pytest.mark.tools
def test_a_dead_transport_is_a_clear_error_not_an_sshexception(sshd: Sshd, tmp_path: Path) -> None:
    conn = sshd.connection(tmp_path / "kh").connect()
    transport = conn.client.get_transport()
    assert transport is not None
    transport.close()  # the session dies under hacloud (node rebooted, NAT dropped it...)
    with pytest.raises(HacloudError) as info:
        conn.run("true")
    assert "SSH connection broke" in info.value.message and info.value.remedy


def _jump_endpoint(sshd: Sshd, port: int) -> Endpoint:
    return Endpoint(
        "node1", "127.0.0.1", port, "root", str(sshd.client_key), jump=f"root@127.0.0.1:{sshd.port}"
    )


@pytest.mark.tools
def test_jump_host_that_cannot_reach_the_node_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    conn = Connection(_jump_endpoint(sshd, _free_port()), tmp_path / "kh", lambda _m: None, timeout=5)
    with pytest.raises(HacloudError) as info:
        conn.connect()
    assert "jump host" in info.value.message and "AllowTcpForwarding" in info.value.remedy


@pytest.mark.tools
def test_jump_channel_open_times_out(sshd: Sshd, tmp_path: Path) -> None:
    """The node's port drops SYNs (a listener whose accept queue is full, so the jump host's
    connect hangs as it does to a firewalled address): hacloud gives up after its timeout,
    not paramiko's hour."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue; later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    conn = Connection(
        _jump_endpoint(sshd, listener.getsockname()[1]), tmp_path / "kh", lambda _m: None, timeout=3
    )
    started = time.monotonic()
    try:
        with pytest.raises(HacloudError) as info:
            conn.connect()
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert time.monotonic() - started < 20
    assert "within 3 s" in info.value.message, info.value.message


@pytest.mark.tools
def test_a_private_key_others_can_read_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    sshd.client_key.chmod(0o644)
    with pytest.raises(HacloudError) as info:
        sshd.connection(tmp_path / "kh").connect()
    assert "readable by other users (mode 644)" in info.value.message and "chmod 600" in info.value.remedy
    assert not (tmp_path / "kh").exists()  # refused before any contact


def test_first_contacts_at_once_keep_every_key(tmp_path: Path) -> None:
    """`up` reaches both nodes at once: each first contact reads, adds and writes known_hosts.
    Without a lock the last writer dropped the other's key (seen on the emulated AWS: the next
    strict `hacloud ssh` was refused). Real keys, real file, 16 threads at once."""
    import threading

    import paramiko

    known = tmp_path / "state" / "known_hosts"
    hosts = [f"192.0.2.{i}" for i in range(10, 26)]
    keys = {h: paramiko.ECDSAKey.generate() for h in hosts}
    start = threading.Barrier(len(hosts))

    def contact(host: str) -> None:
        conn = Connection(Endpoint(host, host, 22, "root", None, None), known, lambda _m: None)
        start.wait()
        conn._record(host, keys[host])  # type: ignore[arg-type]

    threads = [threading.Thread(target=contact, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = paramiko.HostKeys(str(known))
    assert all(recorded.lookup(h) is not None for h in hosts), [
        h for h in hosts if recorded.lookup(h) is None
    ]
    assert stat.S_IMODE(os.stat(known).st_mode) == 0o600
