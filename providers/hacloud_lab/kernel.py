"""The user-mode Linux kernel the lab guests run, chosen for this machine's CPU.

Why there can be more than one: Debian 12's UML kernel (6.1) and Debian 13's (6.12) restore
a guest process's FPU state with ``PTRACE_SETREGSET NT_X86_XSTATE`` using a fixed buffer. On a
CPU with AMX the host kernel's XSAVE area is larger, the call fails with EFAULT ("userspace -
ptrace set fp regs failed, errno = 14") and the guest's init dies with SIGSEGV. Later UML
kernels size the buffer from the host. So:

1. ``$HACLOUD_UML_KERNEL`` (a ``linux.uml`` with ``modules/<version>/`` beside it), if set;
2. the system's ``/usr/bin/linux.uml`` when a probe boot shows it runs processes here and it
   has a seccomp mode (ptrace-only kernels, like Debian 12's 6.1, run, but so slowly that a
   lab failover missed the lab profile's 20 s agent timeouts; see ``select``);
3. otherwise the newest ``user-mode-linux`` from Debian unstable, fetched with apt into the
   data directory (``uml/<package version>/``) with the C library it was built for (the
   binary's ELF interpreter and library path point at that copy; the host's libc is left
   alone), and probed the same way before use.

The probe boots the kernel with this machine's own root directory read-only over hostfs and
``init=/bin/true``: init exits 0 when processes run, and dies by SIGSEGV when FPU state
cannot be restored. It takes about a second and is cached per kernel binary.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from hacloud.errors import HacloudError

SYSTEM_KERNEL = Path("/usr/bin/linux.uml")
SYSTEM_MODULES = Path("/usr/lib/uml/modules")
UNSTABLE_SUITE = "unstable"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Kernel:
    binary: str
    modules: str  # directory holding <version>/
    version: str
    network: str  # "tuntap" (legacy transport, eth0...) or "vector" (vec0...)
    origin: str
    seccomp: bool = False  # intercepts guest syscalls with seccomp instead of ptrace

    @property
    def interface_prefix(self) -> str:
        return "eth" if self.network == "tuntap" else "vec"


def _module_version(modules: Path) -> str | None:
    versions = sorted(p.name for p in modules.iterdir()) if modules.is_dir() else []
    return versions[-1] if versions else None


def _features(binary: Path) -> tuple[str, bool]:
    """(network transport, seccomp support) read from the kernel binary in one pass.

    The legacy tuntap transport was removed from later kernels; the vector driver replaced it.
    Later kernels can also trap guest system calls with seccomp (`seccomp=on`): in the lab a
    fork+exec costs 8.8 ms instead of 14 ms with ptrace, and resource agents fork a lot."""
    data = binary.read_bytes()
    network = "tuntap" if b"tuntap_open_tramp" in data else "vector"
    return network, b"Invalid seccomp option" in data


def _kernel(binary: Path, modules: Path, version: str, origin: str) -> Kernel:
    network, seccomp = _features(binary)
    return Kernel(str(binary), str(modules), version, network, origin, seccomp)


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def probe(binary: Path, cache: Path) -> bool:
    """True when ``binary`` runs guest processes on this CPU (cached per binary)."""
    key = cache / f"probe-{_sha(binary)}.json"
    try:
        return bool(json.loads(key.read_text())["runs"])
    except (OSError, ValueError, KeyError):
        pass
    with tempfile.TemporaryDirectory(prefix="hacloud-uml-probe-") as tmp:
        cmd = [
            str(binary),
            "umid=hacloud-probe",
            f"uml_dir={tmp}",
            "mem=64M",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            "init=/bin/true",
            "con0=null,fd:1",
            "con=null",
            "ssl=null",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=60, start_new_session=True)
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") + (exc.stderr or b"")
    runs = b"exitcode=0x00000000" in out
    cache.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps({"binary": str(binary), "runs": runs}))
    return runs


def _system() -> Kernel | None:
    version = _module_version(SYSTEM_MODULES)
    if not SYSTEM_KERNEL.exists() or version is None:
        return None
    return _kernel(SYSTEM_KERNEL, SYSTEM_MODULES, version, "system")


def select(data_dir: Path, progress: Progress, mirror: str) -> Kernel:
    """The kernel the guests run here; fetches one when the system's cannot run, or runs
    without seccomp (then falling back on it when the fetch fails)."""
    cache = data_dir / "uml"
    override = os.environ.get("HACLOUD_UML_KERNEL")
    if override:
        binary = Path(override)
        version = _module_version(binary.parent / "modules")
        if not binary.exists() or version is None:
            raise HacloudError(
                f"HACLOUD_UML_KERNEL={override}: no kernel with a modules/<version>/ directory beside it",
                "unset HACLOUD_UML_KERNEL to let hacloud choose the kernel",
                code="HAC634",
            )
        return _kernel(binary, binary.parent / "modules", version, "override")
    system = _system()
    if system is None:
        raise HacloudError(
            "user-mode Linux is not installed",
            "run `apt-get install user-mode-linux` (or `bash .ci/setup`)",
            code="HAC635",
        )
    runs = probe(Path(system.binary), cache)
    if runs and system.seccomp:
        return system
    for saved in sorted(cache.glob("*/kernel.json"), reverse=True):
        raw = json.loads(saved.read_text())
        if Path(raw["binary"]).exists():
            return _kernel(Path(raw["binary"]), Path(raw["modules"]), raw["version"], raw["origin"])
    if runs:
        # It works, but traps every guest system call with ptrace. On a 2-core machine with
        # Debian 12's 6.1 a CI run of the fence-test lab tests measured an RTO of 60.6 s and
        # agents missing the lab profile's 20 s timeouts; with 7.2 in seccomp mode the same
        # tests pass with RTOs of 12-19 s. Without network, keep the system's.
        progress(
            f"lab kernel: the system's UML {system.version} has no seccomp mode (slow); "
            "fetching the newest user-mode-linux from Debian unstable"
        )
        try:
            return _fetch_unstable(cache, mirror, progress)
        except (HacloudError, subprocess.TimeoutExpired) as exc:
            progress(f"lab kernel: {getattr(exc, 'message', exc)}; using the system's UML {system.version}")
            return system
    progress(
        f"lab kernel: the system's UML {system.version} cannot run processes on this CPU "
        "(XSAVE area too large, e.g. AMX); fetching the newest user-mode-linux from Debian unstable"
    )
    return _fetch_unstable(cache, mirror, progress)


def _fetch_unstable(cache: Path, mirror: str, progress: Progress) -> Kernel:
    for tool in ("apt-get", "dpkg-deb", "patchelf"):
        if shutil.which(tool) is None:
            raise HacloudError(
                f"{tool} is missing", "run `apt-get install patchelf` (or `bash .ci/setup`)", code="HAC636"
            )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apt-", dir=cache) as tmp:
        root = Path(tmp)
        (root / "lists" / "partial").mkdir(parents=True)
        (root / "archives" / "partial").mkdir(parents=True)
        (root / "sources.list").write_text(f"deb {mirror} {UNSTABLE_SUITE} main\n")
        apt = private_apt_options(root)
        _run(["apt-get", *apt, "update", "-q"], "apt-get update (Debian unstable)", 300)
        _run(["apt-get", *apt, "download", "user-mode-linux", "libc6"], "apt-get download", 600, cwd=root)
        debs = {p.name.split("_")[0]: p for p in root.glob("*.deb")}
        if set(debs) != {"user-mode-linux", "libc6"}:
            raise HacloudError(
                "apt did not download user-mode-linux and libc6", "check the mirror", code="HAC637"
            )
        package_version = debs["user-mode-linux"].name.split("_")[1]
        target = cache / package_version.replace(":", "_")
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
        for deb in debs.values():
            _run(["dpkg-deb", "-x", str(deb), str(staging)], "dpkg-deb -x", 300)
    libdir = target / "usr" / "lib" / "x86_64-linux-gnu"
    binary = staging / "usr" / "bin" / "linux.uml"
    _run(
        [
            "patchelf",
            "--set-interpreter",
            str(libdir / "ld-linux-x86-64.so.2"),
            "--set-rpath",
            str(libdir),
            str(binary),
        ],
        "patchelf",
        120,
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    binary = target / "usr" / "bin" / "linux.uml"
    modules = target / "usr" / "lib" / "uml" / "modules"
    version = _module_version(modules)
    if version is None or not probe(binary, cache):
        raise HacloudError(
            f"the UML kernel from Debian unstable ({package_version}) cannot run processes here either",
            "run the lab on another machine, or set HACLOUD_UML_KERNEL to a UML kernel that works here",
            code="HAC638",
        )
    kernel = _kernel(binary, modules, version, f"Debian unstable {package_version}")
    (target / "kernel.json").write_text(json.dumps(asdict(kernel), indent=2))
    progress(f"lab kernel: UML {version} ({kernel.origin}) runs here")
    return kernel


def private_apt_options(root: Path) -> list[str]:
    """apt-get options for a private configuration under ``root`` (``sources.list``, ``lists/``,
    ``archives/``): the machine's own sources, lists and package state stay untouched."""
    return [
        "-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::Cache={root}",
        "-o", "Dir::State::status=/var/lib/dpkg/status",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def _run(cmd: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise HacloudError(
            f"{what} failed: {(proc.stderr or proc.stdout).strip()[-800:]}",
            "check that this machine reaches its Debian mirror (apt-get update)",
            code="HAC639",
        )
