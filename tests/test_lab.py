"""The lab, for real: build the image from nothing, boot two user-mode Linux guests with the
DRBD module, reach them over SSH inside the lab's namespace, and fence them through their
virtual BMCs with ipmitool and the stock fence_ipmilan agent. Then `down` must leave nothing.

One module-scoped lab (cluster ``citest``) serves every test here, in file order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import run_hacloud, write_lab_spec
from hacloud_lab import guest, image, kernel, net
from hacloud_lab.lab import LabProvider

from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace

pytestmark = pytest.mark.lab
CLUSTER = "citest"
NS = net.namespace_name(CLUSTER)


def _require_lab() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    if not kernel.SYSTEM_KERNEL.exists():
        problems.append("user-mode-linux missing")
    if shutil.which("mmdebstrap") is None or shutil.which("ipmitool") is None:
        problems.append("mmdebstrap/ipmitool missing")
    if problems:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS") == "1":
            pytest.fail(f"the lab cannot run: {problems}; .ci/run installs what it needs")
        pytest.skip(f"the lab cannot run here: {problems}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    _require_lab()
    root = tmp_path_factory.mktemp("lab")
    data = root / "data"  # a fresh image cache: the image is built from nothing
    spec_path, _ = write_lab_spec(root, CLUSTER)
    env = {**os.environ, "HACLOUD_DATA_DIR": str(data)}
    state: dict[str, object] = {"root": root, "spec": spec_path, "env": env, "data": data}
    yield state
    subprocess.run(
        [sys.executable, "-m", "hacloud", "down", "-y", "--purge", "-f", str(spec_path)],
        env=env,
        capture_output=True,
        timeout=120,
    )


def hacloud(lab: dict[str, object], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    spec, env = lab["spec"], lab["env"]
    assert isinstance(spec, Path) and isinstance(env, dict)
    result: subprocess.CompletedProcess[str] = run_hacloud(spec, env, *args, timeout=timeout)
    return result


def ws_of(lab: dict[str, object]) -> Workspace:
    path = lab["spec"]
    assert isinstance(path, Path)
    return Workspace(load_spec(path), path)


def guest_pgid(lab: dict[str, object], node: str) -> int | None:
    cfg = guest.GuestConfig.load(LabProvider.lab_dir(ws_of(lab)) / node / "guest.json")
    return guest.running_pgid(cfg)


def wait_ssh(lab: dict[str, object], node: str, timeout: float = 120) -> float:
    provider = LabProvider()
    ws = ws_of(lab)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if provider.ssh(ws, node, "true", timeout=10).returncode == 0:
                return time.monotonic() - start
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)
    raise AssertionError(f"{node} did not answer SSH in {timeout} s")


def on_guest(lab: dict[str, object], node: str, command: str) -> subprocess.CompletedProcess[str]:
    return LabProvider().ssh(ws_of(lab), node, command)


def lab_exec(lab: dict[str, object], *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`hacloud lab exec -- COMMAND`: run on the host side, inside the lab's network."""
    spec, env = lab["spec"], lab["env"]
    assert isinstance(spec, Path) and isinstance(env, dict)
    return subprocess.run(
        [sys.executable, "-m", "hacloud", "lab", "exec", "-f", str(spec), "--", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def onprem_spec_over(lab: dict[str, object], cluster: str) -> Path:
    """An on-prem spec naming the lab's guests, disks and keys as existing servers, written next
    to the lab spec (same state directory: secrets and recorded host keys)."""
    doc, root = lab["doc"], lab["root"]
    assert isinstance(doc, dict) and isinstance(root, Path)
    key = str(root / ".hacloud" / cluster / "lab" / "id_ed25519")
    onprem = {
        **doc,
        "provider": {"kind": "onprem"},
        "profile": "lab",
        "nodes": [
            {**n, "ssh": {"user": "root", "key": key}, "volumes": {"r0": "/dev/ubdb"}} for n in doc["nodes"]
        ],
    }
    spec = root / "onprem.yaml"
    spec.write_text(yaml.safe_dump(onprem))
    # the same cluster on purpose: share its state directory the way an operator would
    owner = root / ".hacloud" / cluster / "owner"
    if spec.name not in owner.read_text().split():
        with owner.open("a") as fh:
            fh.write(f"{spec.name}\n")
    return spec


def hacloud_in_lab_network(
    lab: dict[str, object], cluster: str, spec: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`hacloud ARGS -f SPEC` run from inside the lab's network, where an on-prem admin host sits."""
    env = lab["env"]
    assert isinstance(env, dict)
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"hacloud-{cluster}",
            sys.executable,
            "-m",
            "hacloud",
            *args,
            "-f",
            str(spec),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cluster_lab(factory: pytest.TempPathFactory, cluster: str) -> Iterator[dict[str, object]]:
    """A module's lab cluster sharing the cached image; its disks are deleted at the end."""
    _require_lab()
    root = factory.mktemp(cluster)
    spec, doc = write_lab_spec(root, cluster)
    env = {**os.environ, "HACLOUD_DATA_DIR": os.environ.get("HACLOUD_TEST_DATA_DIR", str(root / "data"))}
    yield {"root": root, "spec": spec, "env": env, "doc": doc}
    subprocess.run(
        # --delete-volumes, not --purge: the image cache is shared and stays
        [sys.executable, "-m", "hacloud", "down", "-y", "--delete-volumes", "-f", str(spec)],
        env=env,
        capture_output=True,
        timeout=180,
    )


def test_up_from_nothing(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "up", "-y", "--nodes-only")
    assert proc.returncode == 0, proc.stderr
    assert "image" in proc.stderr and "built in" in proc.stderr  # progress shown while building
    assert "node1: 192.0.2.11" in proc.stderr and "BMC 192.0.2.201" in proc.stderr
    for node in ("node1", "node2"):
        out = on_guest(lab, node, "hostname; lsmod | grep -c '^drbd '; cat /proc/drbd | head -1")
        assert out.returncode == 0, out.stderr
        name, loaded, version = out.stdout.splitlines()[:3]
        assert name == node and loaded == "1" and "8.4" in version


def test_image_is_cached(lab: dict[str, object]) -> None:
    env = lab["env"]
    assert isinstance(env, dict)
    os.environ["HACLOUD_DATA_DIR"] = env["HACLOUD_DATA_DIR"]
    try:
        started = time.monotonic()
        path = image.ensure_image(image.select_kernel())
        assert time.monotonic() - started < 5
    finally:
        del os.environ["HACLOUD_DATA_DIR"]
    assert path.parent.parent == Path(str(env["HACLOUD_DATA_DIR"])) / "images"


def test_guests_reach_each_other_on_every_link_and_nothing_else(lab: dict[str, object]) -> None:
    for src, dst in (("node1", "2"), ("node2", "1")):
        for net_prefix in ("192.0.2.1", "198.51.100.1"):
            out = on_guest(lab, src, f"ping -c1 -W2 {net_prefix}{dst}")
            assert out.returncode == 0, out.stdout
        # no route out: the kernel refuses without sending a packet
        out = on_guest(lab, src, "ip route get 203.0.113.1 2>&1; ip route show default | wc -l")
        assert "unreachable" in out.stdout and out.stdout.strip().endswith("0")
    assert set(net.interfaces(NS)) == {"lo", "br0", "br1", "tap0-0", "tap0-1", "tap1-0", "tap1-1"}
    assert not [r for r in net.routes(NS) if r.startswith("default")]
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not re.search(r"\btap\d-\d\b", host_links)  # no lab interface in the host's namespace


def test_second_up_reuses_running_guests(lab: dict[str, object]) -> None:
    before = {n: guest_pgid(lab, n) for n in ("node1", "node2")}
    started = time.monotonic()
    proc = hacloud(lab, "up", "-y", "--nodes-only")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 15
    assert {n: guest_pgid(lab, n) for n in ("node1", "node2")} == before


def test_status_and_lab_exec(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "lab", "power", "node1")
    assert proc.stdout.strip() == "node1: on", proc.stdout + proc.stderr
    proc = hacloud(lab, "status")  # no cluster configured yet: not healthy, but nodes and BMCs shown
    assert proc.returncode == 1
    assert re.search(r"node1\s+no\s+192\.0\.2\.11 .* 192\.0\.2\.201", proc.stdout), proc.stdout + proc.stderr
    proc = lab_exec(lab, "ip", "-o", "addr", "show", "br0")
    assert proc.returncode == 0 and "192.0.2.254/24" in proc.stdout


def _ipmitool(lab: dict[str, object], bmc: str, pwfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            NS,
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            bmc,
            "-U",
            "admin",
            "-f",
            str(pwfile),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ipmitool_controls_real_power(lab: dict[str, object]) -> None:
    root = lab["root"]
    assert isinstance(root, Path)
    pw = root / ".hacloud" / CLUSTER / "bmc-node2.secret"
    assert oct(pw.stat().st_mode & 0o777) == "0o600"
    assert "Chassis Power is on" in _ipmitool(lab, "192.0.2.202", pw, "chassis", "power", "status").stdout
    pgid = guest_pgid(lab, "node2")
    assert pgid is not None
    assert _ipmitool(lab, "192.0.2.202", pw, "chassis", "power", "off").returncode == 0
    assert guest.group_members(pgid) == []  # every process of the guest is gone at once
    assert "Chassis Power is off" in _ipmitool(lab, "192.0.2.202", pw, "chassis", "power", "status").stdout
    wrong = root / "wrong.pw"
    wrong.write_text("not-the-password\n")
    assert _ipmitool(lab, "192.0.2.202", wrong, "chassis", "power", "on").returncode != 0
    assert guest_pgid(lab, "node2") is None
    assert _ipmitool(lab, "192.0.2.202", pw, "chassis", "power", "on").returncode == 0
    boot = wait_ssh(lab, "node2")
    print(f"\nboot to SSH after power on: {boot:.1f} s")


def test_fence_ipmilan_from_the_peer(lab: dict[str, object]) -> None:
    """The cluster's own path: node1 runs the stock fence_ipmilan against node2's BMC."""
    root = lab["root"]
    assert isinstance(root, Path)
    secret = (root / ".hacloud" / CLUSTER / "bmc-node2.secret").read_text()
    put = subprocess.run(
        [
            *LabProvider().ssh_command(ws_of(lab)),
            "root@192.0.2.11",
            "umask 077; cat > /root/bmc-node2.secret",
        ],
        input=secret,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert put.returncode == 0, put.stderr
    agent = (
        "fence_ipmilan --ip 192.0.2.202 --username admin --lanplus "
        "--password-script 'cat /root/bmc-node2.secret' -o {}"
    )
    assert "Status: ON" in on_guest(lab, "node1", agent.format("status")).stdout
    pgid = guest_pgid(lab, "node2")
    assert pgid is not None
    started = time.monotonic()
    off = on_guest(lab, "node1", agent.format("off"))
    assert off.returncode == 0 and "Powered OFF" in off.stdout, off.stdout + off.stderr
    print(f"\nfence_ipmilan -o off: {time.monotonic() - started:.1f} s")
    assert guest.group_members(pgid) == []
    assert LabProvider().power(ws_of(lab), "node2") == "off"  # confirmed through the BMC too
    assert on_guest(lab, "node1", agent.format("on")).returncode == 0
    wait_ssh(lab, "node2")
    assert LabProvider().power(ws_of(lab), "node2") == "on"


def test_down_leaves_nothing_and_up_reuses_the_disks(lab: dict[str, object]) -> None:
    marker = "hacloud-lab-marker-" + str(time.time())
    out = on_guest(
        lab, "node1", f"echo {marker} | dd of=/dev/ubdb bs=512 count=1 conv=fsync 2>/dev/null; sync"
    )
    assert out.returncode == 0
    proc = hacloud(lab, "down", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not net.namespace_exists(NS)
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    live = [
        line
        for line in ps.splitlines()
        if not line.startswith("Z") and (f"umid={CLUSTER}-" in line or "hacloud_lab.bmc" in line)
    ]
    assert live == []
    assert not re.search(
        r"\btap\d-\d\b", subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    )
    mounts = Path("/proc/mounts").read_text()
    assert str(lab["root"]) not in mounts
    # disks kept; a second up boots from them
    proc = hacloud(lab, "up", "-y", "--nodes-only")
    assert proc.returncode == 0, proc.stderr
    assert marker in on_guest(lab, "node1", "head -c 100 /dev/ubdb").stdout


def test_purge_removes_disks_and_image(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "down", "-y", "--purge")
    assert proc.returncode == 0, proc.stderr
    root = lab["root"]
    data = lab["data"]
    assert isinstance(root, Path) and isinstance(data, Path)
    assert not (root / ".hacloud" / CLUSTER / "lab").exists()
    assert not (data / "images").exists()
    assert (root / ".hacloud" / CLUSTER / "bmc-node1.secret").exists()  # the spec's files stay


def test_not_root_is_a_clear_error(lab: dict[str, object]) -> None:
    """`hacloud up` as an unprivileged user: a clear error with the fix, exit 1, no traceback.

    The CLI runs in a forked child that drops to nobody after hacloud is imported, so the test
    does not depend on the checkout being readable by other users (a 0700 clone is not)."""
    import json
    import tempfile

    import hacloud_lab.lab  # noqa: F401  (the lazy imports the command needs, loaded before dropping root)
    from typer.testing import CliRunner

    import hacloud.ops.converge
    from hacloud.cli import app
    from hacloud.provision.provider import get_provider

    del hacloud.ops.converge
    # the installed providers are read from the venv's metadata once per process: read them
    # here, as root, since nobody may not be able to read a 0700 checkout's venv
    get_provider("lab")
    # pytest's own tmp directories are 0700: the unprivileged user could not even read the spec.
    where = Path(tempfile.mkdtemp(prefix="hacloud-nonroot-"))
    where.chmod(0o755)
    spec = where / "hacloud.yaml"
    spec.write_text(Path(str(lab["spec"])).read_text())
    spec.chmod(0o644)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, run the real command, report, exit
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = CliRunner().invoke(app, ["up", "-y", "-f", str(spec)])
            report = {
                "code": result.exit_code,
                "output": result.output,
                "exception": type(result.exception).__name__ if result.exception else None,
            }
        except BaseException as exc:  # report anything, never return into pytest
            report = {"code": -1, "output": repr(exc), "exception": type(exc).__name__}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        report = json.loads(fh.read() or b"{}")
    os.waitpid(pid, 0)
    shutil.rmtree(where)
    assert report["code"] == 1, report
    assert report["exception"] in (None, "SystemExit"), report
    assert "needs root" in report["output"] and "fix:" in report["output"], report
    assert "Traceback" not in report["output"]
