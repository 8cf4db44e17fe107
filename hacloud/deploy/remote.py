"""SSH transport to the cluster nodes (paramiko, imported only when a connection is made).

Contracts:
- Host keys: the first contact records the node's key in ``known_hosts`` (in the cluster's
  state directory) and reports its fingerprint; every later contact must present the same key
  or the connection is refused with a remedy. Nothing is accepted silently.
- ``run`` has a timeout, captures output, and raises :class:`RemoteError` (with the output)
  when ``check`` and the command fails. A non-root user runs commands through ``sudo -n``.
- ``put`` writes a file atomically with its mode and owner; the content travels over SFTP and
  is never readable by others at any moment (the temporary file is 0600 before data goes in).
  Secrets therefore never appear on a command line.
- Nodes inside a network namespace (the lab) are reached through a socket opened in that
  namespace, so no route into the namespace is needed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import posixpath
import secrets as _rand
import shlex
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hacloud.errors import HacloudError
from hacloud.provision.endpoint import Endpoint  # providers make it (provision stage)

if TYPE_CHECKING:
    import paramiko

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class RemoteError(HacloudError):
    """A remote command failed; ``output`` holds what it printed."""

    code = "HAC400"

    def __init__(self, node: str, command: str, rc: int, output: str) -> None:
        short = command if len(command) < 120 else command[:117] + "..."
        super().__init__(
            f"{node}: `{short}` failed (exit {rc}):\n{output.strip()[-2000:]}",
            "fix the cause shown above, then run the command again; hacloud resumes where it stopped",
        )
        self.node = node
        self.rc = rc
        self.output = output


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def socket_in_namespace(namespace: str | None, make: Callable[[], socket.socket]) -> socket.socket:
    """The socket ``make`` creates from inside network ``namespace`` (None: this one). A socket
    keeps the namespace it was made in, and ``setns`` moves only the calling thread: a helper
    thread enters, makes it and ends. Raises the OSError of entering or of ``make``."""
    result: dict[str, Any] = {}

    def worker() -> None:
        try:
            if namespace is not None:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
            result["sock"] = make()
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=worker, name=f"netns-{namespace or 'host'}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


def connect_in_namespace(namespace: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made from inside ``namespace``."""
    return socket_in_namespace(namespace, lambda: socket.create_connection((address, port), timeout=timeout))


def fingerprint(key: paramiko.PKey) -> str:
    import base64

    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


#: first contacts of one process record host keys one at a time (see Connection._record)
_RECORD_LOCK = threading.Lock()


class Connection:
    """One SSH connection to a node; safe to use from one thread at a time."""

    def __init__(
        self,
        endpoint: Endpoint,
        known_hosts: Path,
        log: Callable[[str], None],
        verbose: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.endpoint = endpoint
        self.known_hosts = known_hosts
        self.log = log
        self.verbose = verbose
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None

    # ------------------------------------------------------------ connect

    def _record(self, host: str, key: paramiko.PKey) -> None:
        """First contact: record the node's key (never overwrite one already recorded). Both
        nodes are reached at once: the file is read, added to and written under a lock (this
        process's threads, and other processes through flock on its directory), else the
        last writer drops the other node's key and the next strict login is refused."""
        import fcntl

        import paramiko

        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.known_hosts.parent, os.O_RDONLY)
        try:
            with _RECORD_LOCK:
                fcntl.flock(fd, fcntl.LOCK_EX)
                keys = paramiko.HostKeys()
                if self.known_hosts.exists():
                    keys.load(str(self.known_hosts))
                if keys.lookup(host) is not None:
                    raise HacloudError(
                        f"{self.endpoint.name} ({host}) offered a key type that was not recorded",
                        f"if the node was rebuilt on purpose, delete its line from {self.known_hosts}",
                        code="HAC401",
                    )
                keys.add(host, key.get_name(), key)
                keys.save(str(self.known_hosts))
                os.chmod(self.known_hosts, 0o600)
        finally:
            os.close(fd)  # releases the flock
        self.log(
            f"{self.endpoint.name}: first contact, recorded host key {fingerprint(key)} in {self.known_hosts}"
        )

    def _new_client(self) -> paramiko.SSHClient:
        """An SSH client that checks the recorded host keys itself, before authenticating: an
        unknown host is recorded (first contact) and reported, a different key refused."""
        import logging

        import paramiko

        # paramiko's transport thread logs a dying peer ("Socket exception: ...") through the
        # root logger's last-resort handler; the failure reaches the caller as an exception.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

        outer = self

        class RecordFirstContact(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
                outer._record(hostname, key)

        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(RecordFirstContact())
        return client

    def _open(self, address: str, port: int, user: str, sock: Any) -> paramiko.SSHClient:
        import paramiko

        client = self._new_client()
        key_filename = str(Path(self.endpoint.key_file).expanduser()) if self.endpoint.key_file else None
        if key_filename is not None and Path(key_filename).exists():
            from hacloud.spec.secrets import check_private

            # OpenSSH refuses such a key ("UNPROTECTED PRIVATE KEY FILE"); so does hacloud
            check_private(Path(key_filename), "the SSH private key", "the key exposed and replace it")
        try:
            client.connect(
                address,
                port=port,
                username=user,
                key_filename=key_filename,
                sock=sock,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                look_for_keys=key_filename is None,
                allow_agent=key_filename is None,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HacloudError(
                f"{self.endpoint.name} ({address}:{port}) presented host key {fingerprint(exc.key)}, "
                "which is not the one recorded at first contact",
                f"if the node was rebuilt on purpose, delete its line from {self.known_hosts}; "
                "otherwise someone may be intercepting the connection: do not proceed",
                code="HAC402",
            ) from None
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise HacloudError(
                f"{self.endpoint.name}: cannot log in to {user}@{address}:{port}: {exc}",
                "check the node's address, that sshd runs, and the key in nodes[].ssh.key",
                code="HAC403",
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        return client

    def connect(self) -> Connection:
        ep = self.endpoint
        sock: Any = None
        if ep.jump:
            user, _, rest = ep.jump.rpartition("@")
            host, _, port = rest.partition(":")
            jport = int(port or 22)
            jsock = connect_in_namespace(ep.namespace, host, jport, self.timeout) if ep.namespace else None
            self._jump = self._open(host, jport, user or ep.user, jsock)
            sock = self._through_jump(host)
        elif ep.namespace:
            try:
                sock = connect_in_namespace(ep.namespace, ep.address, ep.port, self.timeout)
            except OSError as exc:
                raise HacloudError(
                    f"{ep.name}: cannot reach {ep.address}:{ep.port} in {ep.namespace}: {exc}",
                    "is the lab up? run `hacloud up`",
                    code="HAC404",
                ) from None
        self._client = self._open(ep.address, ep.port, ep.user, sock)
        return self

    def _through_jump(self, jump_host: str) -> Any:
        """A direct-tcpip channel from the jump host to the node, opened within ``timeout``
        (paramiko's default wait is an hour); any failure is a HacloudError saying where."""
        import paramiko

        ep = self.endpoint
        assert self._jump is not None
        transport = self._jump.get_transport()
        try:
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the jump host's SSH session is not active")
            return transport.open_channel(
                "direct-tcpip", (ep.address, ep.port), ("127.0.0.1", 0), timeout=self.timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HacloudError(
                f"{ep.name}: the jump host {jump_host} could not open a connection to "
                f"{ep.address}:{ep.port} within {self.timeout:.0f} s: {exc or type(exc).__name__}",
                "check that the jump host can reach the node's SSH port and allows TCP forwarding "
                "(AllowTcpForwarding in its sshd_config)",
                code="HAC405",
            ) from None

    def close(self) -> None:
        for client in (self._client, self._jump):
            if client is not None:
                client.close()
        self._client = self._jump = None

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client

    # ------------------------------------------------------------ commands

    def _wrap(self, command: str) -> str:
        if self.endpoint.user == "root":
            return command
        return f"sudo -n sh -c {shlex.quote(command)}"

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120.0, stdin: bytes | None = None
    ) -> Result:
        import paramiko

        if self.verbose:
            self.log(f"{self.endpoint.name}$ {command}")
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(self._wrap(command), timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
                chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            rc = chan_out.channel.recv_exit_status()
        except TimeoutError:
            raise HacloudError(
                f"{self.endpoint.name}: `{command[:80]}` did not finish in {timeout:.0f} s",
                "check the node's load and logs; then run the command again",
                code="HAC406",
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # SSHException: the transport died (e.g. "SSH session not active") before or while
            # the channel opened
            self.close()
            raise HacloudError(
                f"{self.endpoint.name}: the SSH connection broke during `{command[:80]}`: "
                f"{exc or type(exc).__name__}",
                "run the command again: hacloud re-reads the node and resumes",
                code="HAC407",
            ) from None
        if check and rc != 0:
            raise RemoteError(self.endpoint.name, command, rc, out + err)
        return Result(rc, out, err)

    def put(self, path: str, content: bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        """Write ``content`` to ``path`` atomically with ``mode`` and ``owner``."""
        import paramiko

        if self.verbose:
            self.log(f"{self.endpoint.name}: write {path} ({len(content)} bytes, {mode:04o}, {owner})")
        tmp_name = f".hacloud-{_rand.token_hex(6)}"
        try:
            sftp = self.client.open_sftp()
        except (paramiko.SSHException, OSError) as exc:
            raise HacloudError(
                f"{self.endpoint.name}: SFTP unavailable: {exc}",
                "enable the sftp subsystem in the node's sshd",
                code="HAC408",
            ) from None
        try:
            if self.endpoint.user == "root":
                directory = posixpath.dirname(path)
                self.run(f"mkdir -p {shlex.quote(directory)}")
                staged = posixpath.join(directory, tmp_name)
            else:
                # The login user's home, as SFTP sees it (under sudo, $HOME is root's).
                staged = posixpath.join(sftp.normalize("."), tmp_name)
            try:
                with sftp.open(staged, "wb") as fh:
                    sftp.chmod(staged, 0o600)  # before any byte of content arrives
                    fh.write(content)
            except OSError as exc:
                raise HacloudError(
                    f"{self.endpoint.name}: cannot stage {path} at {staged}: {exc}",
                    "check that the SSH user can write its home directory",
                    code="HAC409",
                ) from None
            q = shlex.quote
            self.run(
                f"mkdir -p {q(posixpath.dirname(path))} && chown {q(owner)} {q(staged)} && "
                f"chmod {mode:o} {q(staged)} && mv -f {q(staged)} {q(path)}"
            )
        finally:
            sftp.close()

    def read(self, path: str) -> bytes | None:
        result = self.run(f"test -f {shlex.quote(path)} && base64 -w0 {shlex.quote(path)}", check=False)
        if result.rc != 0:
            return None
        import base64

        return base64.b64decode(result.stdout)


def parallel(fn: Callable[[Any], T], items: list[Any]) -> list[T]:
    """``fn`` over ``items`` in threads, results in order. On Ctrl-C (or any error) the pool is
    not waited for: running steps can take up to the package timeout (1800 s), so the caller
    gets the exception at once and closes the connections, which ends those steps."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(1, len(items)))
    try:
        results = list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
