"""The CLI's exit codes, confirmations, locks and file handling (issue 16, items 8-14 and the
CLI conventions), run as a user runs it: subprocesses with no terminal, real files, FIFOs,
devices and a pseudo-terminal where a terminal is needed."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import need, onprem_doc


def hacloud(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """No terminal: stdin is /dev/null, as under cron, CI or `ssh host hacloud ...`."""
    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_onprem(root: Path) -> Path:
    """An on-prem spec whose two nodes are loopback addresses where no sshd listens."""
    doc = onprem_doc()
    port = _closed_port()
    for i, node in enumerate(doc["nodes"]):
        node["address"] = f"127.0.0.{i + 1}"
        node["links"] = [f"127.0.0.{i + 1}"]
        node["ssh"] = {"port": port}
    spec = root / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(doc))
    for name in ("node1", "node2"):
        secret = root / f"bmc-{name}.secret"
        secret.write_text("pw\n")
        secret.chmod(0o600)
    return spec


# ---------------------------------------------------------------- 8. status


def test_status_json_and_text_agree_and_unknown_is_not_off(tmp_path: Path) -> None:
    unreachable_onprem(tmp_path)
    text = hacloud(tmp_path, "status")
    as_json = hacloud(tmp_path, "status", "--json")
    assert text.returncode == as_json.returncode == 1, (text.stderr, as_json.stderr)
    st = json.loads(as_json.stdout)
    assert st["healthy"] is False
    assert st["fencing_enabled"] is None and st["quorum"] is None  # unknown, not off
    assert "fencing unknown" in text.stdout and "fencing OFF" not in text.stdout
    assert "quorum unknown" in text.stdout
    for node in ("node1", "node2"):  # why: each node's own reason
        assert any(r.startswith(f"not reachable: {node}: cannot log in") for r in st["reasons"]), st[
            "reasons"
        ]
        assert f"not reachable: {node}: cannot log in" in text.stdout


# ---------------------------------------------------------------- 9. check


def test_check_json_lists_the_problems_of_an_invalid_spec(tmp_path: Path) -> None:
    (tmp_path / "hacloud.yaml").write_text("version: 1\ncluster: {name: demo}\nbogus: 1\n")
    proc = hacloud(tmp_path, "check", "--json")
    assert proc.returncode == 2
    problems = json.loads(proc.stdout)
    assert problems and all(p["severity"] == "error" for p in problems)
    bogus = next(p for p in problems if p["path"] == "bogus")
    assert bogus["line"] == 3 and bogus["file"] == "hacloud.yaml" and bogus["remedy"]
    assert "problem" in proc.stderr  # the human report stays on stderr


def test_check_shows_the_warnings_render_shows(tmp_path: Path) -> None:
    assert hacloud(tmp_path, "init", "--provider", "lab").returncode == 0
    render = hacloud(tmp_path, "render", "--out", "out")
    warned = [line[len("warning: ") :] for line in render.stderr.splitlines() if line.startswith("warning: ")]
    assert any("no BMC password for node1" in w for w in warned), render.stderr
    text = hacloud(tmp_path, "check")
    as_json = json.loads(hacloud(tmp_path, "check", "--json").stdout)
    for warning in warned:
        assert f"WARNING  {warning}" in text.stdout
        assert {
            "code": None,
            "severity": "warning",
            "message": warning,
            "remedy": "",
            "source": "render",
        } in as_json


# ---------------------------------------------------------------- 10. init --out --force


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_init_force_overwrites_regular_files_only(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "spec.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
        (target / "keep").write_text("mine")
    else:
        (tmp_path / "real").write_text("mine")
        target.symlink_to(tmp_path / "real")
    before = target.lstat()
    proc = hacloud(tmp_path, "init", "--out", str(target), "--force")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "regular files" in proc.stderr
    after = target.lstat()
    assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"spec.yaml", *(["real"] if kind == "symlink" else [])}
    )


def test_init_force_refuses_a_device_node(tmp_path: Path) -> None:
    """A real character device (a copy of /dev/null's node, made in the test's directory: a
    regression must never get the chance to replace the machine's /dev/null)."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    before = device.lstat()
    proc = hacloud(tmp_path, "init", "--out", str(device), "--force")
    assert proc.returncode == 2 and "character device" in proc.stderr, proc.stderr
    after = device.lstat()
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino and after.st_rdev == before.st_rdev
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left


def test_init_force_replaces_a_regular_file_atomically(tmp_path: Path) -> None:
    (tmp_path / "hacloud.yaml").write_text("mine\n")
    assert hacloud(tmp_path, "init", "--force").returncode == 0
    assert (tmp_path / "hacloud.yaml").read_text().startswith("# hacloud cluster spec")
    assert [p.name for p in tmp_path.iterdir()] == ["hacloud.yaml"]  # no temporary file left


# ---------------------------------------------------------------- 12. down takes the lock


def test_down_waits_for_no_one_it_refuses_while_another_run_holds_the_lock(tmp_path: Path) -> None:
    unreachable_onprem(tmp_path)
    lock = tmp_path / ".hacloud" / "test" / "lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running `up` or `fence-test` holds it
        proc = hacloud(tmp_path, "down", "-y")
    finally:
        os.close(fd)
    assert proc.returncode == 1 and "another hacloud run is working on this cluster" in proc.stderr, (
        proc.stderr
    )


# ---------------------------------------------------------------- 13. -y without a terminal


@pytest.mark.parametrize(
    "args",
    [["down"], ["down", "--delete-volumes"], ["down", "--purge"], ["failover"], ["fence-test"]],
    ids=" ".join,
)
def test_destructive_commands_need_yes_without_a_terminal(tmp_path: Path, args: list[str]) -> None:
    unreachable_onprem(tmp_path)
    proc = hacloud(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert "no terminal to confirm on" in proc.stderr and "-y" in proc.stderr
    assert not (tmp_path / ".hacloud").exists()  # nothing done: not even the lock taken


def _on_terminal(cwd: Path, args: list[str], answer: bytes) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: hacloud with a terminal on stdin/stdout/stderr
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "hacloud", *args])  # noqa: S606
    out = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"[y/N]" in out:
            os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_on_a_terminal_the_question_is_asked(tmp_path: Path) -> None:
    unreachable_onprem(tmp_path)
    rc, shown = _on_terminal(tmp_path, ["down"], b"n\n")
    assert "Stop the cluster" in shown and "nothing done" in shown and rc == 1, shown


# ---------------------------------------------------------------- 14. secret files


def test_a_bmc_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    assert hacloud(tmp_path, "init", "--provider", "lab").returncode == 0
    secrets = tmp_path / ".hacloud" / "demo"
    secrets.mkdir(parents=True)
    for name in ("node1", "node2"):
        (secrets / f"bmc-{name}.secret").write_text("pw\n")
        (secrets / f"bmc-{name}.secret").chmod(0o600)
    (secrets / "bmc-node2.secret").chmod(0o640)
    for args in (["render", "--out", "out"], ["check"]):
        proc = hacloud(tmp_path, *args)
        assert proc.returncode != 0 and "readable by other users (mode 640)" in proc.stderr, proc.stderr
        assert "chmod 600" in proc.stderr and "bmc-node2.secret" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_git_add_all_next_to_the_spec_commits_no_secret(tmp_path: Path) -> None:
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    tmp_path = tmp_path / "repo"
    tmp_path.mkdir()
    assert hacloud(tmp_path, "init", "--provider", "lab").returncode == 0
    assert hacloud(tmp_path, "render", "--out", "../review").returncode == 0
    assert (tmp_path / ".hacloud" / "demo" / "secrets.json").exists()
    git: Any = lambda *a: subprocess.run(  # noqa: E731
        ["git", *a], cwd=tmp_path, capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    git("init", "-q")
    git("add", "-A")
    staged = git("diff", "--cached", "--name-only").stdout.split()
    assert staged == ["hacloud.yaml"], staged


# ---------------------------------------------------------------- 11. render --out


@pytest.fixture
def lab_spec(tmp_path: Path) -> Path:
    assert hacloud(tmp_path, "init", "--provider", "lab").returncode == 0
    return tmp_path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["file", "fifo", "dev-null", "unwritable-parent"])
def test_render_out_that_is_not_a_directory_is_refused(lab_spec: Path, where: str) -> None:
    out = {
        "file": lab_spec / "notes.txt",
        "fifo": lab_spec / "pipe",
        "dev-null": Path("/dev/null"),
        "unwritable-parent": Path("/proc/hacloud-render-out"),  # /proc: no one can create there
    }[where]
    if where == "file":
        out.write_text("mine\n")
    elif where == "fifo":
        os.mkfifo(out)
    before = sorted(p.name for p in lab_spec.iterdir())
    proc = hacloud(lab_spec, "render", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert str(out) in proc.stderr and "fix:" in proc.stderr
    assert sorted(p.name for p in lab_spec.iterdir()) == before  # no temporary directory left
    if where == "file":
        assert out.read_text() == "mine\n"
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_render_never_deletes_what_it_did_not_write(lab_spec: Path) -> None:
    unrelated = lab_spec / ".out.old"
    unrelated.mkdir()
    (unrelated / "mine").write_text("keep me\n")
    assert hacloud(lab_spec, "render", "--out", "out").returncode == 0
    (lab_spec / "out" / "notes.txt").write_text("my review notes\n")
    (lab_spec / "out" / "node1" / "mine").mkdir()
    proc = hacloud(lab_spec, "render", "--out", "out")
    assert proc.returncode == 2 and "notes.txt" in proc.stderr and "node1/mine" in proc.stderr, proc.stderr
    assert (lab_spec / "out" / "notes.txt").read_text() == "my review notes\n"
    assert (unrelated / "mine").read_text() == "keep me\n"
    # the manifest lists exactly what the render wrote, and a clean directory renders again
    (lab_spec / "out" / "notes.txt").unlink()
    (lab_spec / "out" / "node1" / "mine").rmdir()
    manifest = (lab_spec / "out" / ".hacloud-render").read_text().splitlines()
    assert sorted(line for line in manifest if not line.startswith("#")) == sorted(_tree(lab_spec / "out"))
    first = _tree(lab_spec / "out")
    assert hacloud(lab_spec, "render", "--out", "out").returncode == 0
    assert _tree(lab_spec / "out") == first
    assert sorted(p.name for p in lab_spec.iterdir()) == [".hacloud", ".out.old", "hacloud.yaml", "out"]


def test_render_into_a_symlinked_directory_follows_it_every_time(lab_spec: Path) -> None:
    (lab_spec / "real").mkdir()
    (lab_spec / "link").symlink_to("real")
    for _ in range(3):
        proc = hacloud(lab_spec, "render", "--out", "link")
        assert proc.returncode == 0, proc.stderr
        assert "symbolic link" in proc.stderr
        assert (lab_spec / "link").is_symlink() and os.readlink(lab_spec / "link") == "real"
        assert (lab_spec / "real" / "cib.xml").is_file()
    assert sorted(p.name for p in lab_spec.iterdir()) == [".hacloud", "hacloud.yaml", "link", "real"]


def test_a_render_output_is_ignored_by_git(lab_spec: Path) -> None:
    assert hacloud(lab_spec, "render", "--out", "review").returncode == 0
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    subprocess.run(["git", "init", "-q"], cwd=lab_spec, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=lab_spec, check=True, env=env)
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only"], cwd=lab_spec, capture_output=True, text=True, env=env
    ).stdout.split()
    assert staged == ["hacloud.yaml"]


# ---------------------------------------------------------------- CLI conventions


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    proc = hacloud(Path.cwd(), "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"hacloud {version('hacloud')}"


COMMANDS = [
    [],
    ["init"],
    ["up"],
    ["plan"],
    ["render"],
    ["check"],
    ["status"],
    ["down"],
    ["failover"],
    ["fence-test"],
    ["ssh"],
    ["profile"],
    ["schema"],
    ["lab"],
    ["lab", "power"],
    ["lab", "exec"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hacloud")
def test_dash_h_is_help(tmp_path: Path, command: list[str]) -> None:
    env = {"COLUMNS": "120"}
    short = hacloud(tmp_path, *command, "-h", env=env)
    assert short.returncode == 0 and "Usage:" in short.stdout, short.stderr
    assert short.stdout == hacloud(tmp_path, *command, "--help", env=env).stdout


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    """The installed `hacloud` script offers typer's completion; the script bash gets is valid."""
    script = Path(sys.executable).parent / "hacloud"
    proc = subprocess.run(
        [str(script), "--show-completion", "bash"], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0 and "_HACLOUD_COMPLETE" in proc.stdout, proc.stdout
    (tmp_path / "completion.bash").write_text(proc.stdout)
    assert subprocess.run(["bash", "-n", str(tmp_path / "completion.bash")], check=False).returncode == 0
    # and it completes: bash asks with these variables set, as its completion function does
    env = {
        **os.environ,
        "_HACLOUD_COMPLETE": "complete_bash",
        "COMP_WORDS": "hacloud fence-test --method p",
        "COMP_CWORD": "3",
    }
    words = subprocess.run(
        [str(script)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    ).stdout
    assert set(words.split()) == {"power", "partition"}, words


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["init", "--provider", "gcp"], "lab|onprem|aws|azure"),
        (["up", "--provider", "gcp"], "lab|onprem|aws|azure"),
        (["fence-test", "--method", "unplug"], "fence|power|crash|partition"),
        (["lab", "power", "node1", "reboot"], "on|off|status"),
        (["profile", "gcp"], "lab|onprem|aws|azure"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_choices_are_shown_and_checked_before_any_question(
    tmp_path: Path, args: list[str], choices: str
) -> None:
    command = [a for a in args if not a.startswith("-")][:1]
    if args[0] == "lab":
        command = ["lab", "power"]
    shown = hacloud(tmp_path, *command, "--help", env={"COLUMNS": "200"}).stdout
    assert choices in shown, shown
    unreachable_onprem(tmp_path)
    rc, out = _on_terminal(tmp_path, args, b"y\n")  # a terminal: a question would be asked
    assert rc == 2 and "Invalid value" in out and "[y/N]" not in out, out
    assert not (tmp_path / ".hacloud").exists()


@pytest.mark.parametrize("command", ["down", "plan", "fence-test"])
def test_help_paragraphs_are_not_broken_where_the_source_wraps(tmp_path: Path, command: str) -> None:
    """At 400 columns every paragraph of a command's help is one line: the source's line breaks
    (the docstring wrapped at 100 columns) must not reach the terminal."""
    import inspect

    from hacloud import cli

    callback = next(
        c.callback
        for c in cli.app.registered_commands
        if (c.name or c.callback.__name__.replace("_", "-")) == command
    )  # type: ignore[union-attr]
    doc = inspect.getdoc(callback) or ""
    assert "\n" in doc  # the source wraps it
    shown = hacloud(tmp_path, command, "--help", env={"COLUMNS": "400"}).stdout
    for paragraph in doc.split("\n\n"):
        joined = " ".join(paragraph.split())
        assert any(joined in " ".join(line.split()) for line in shown.splitlines()), (joined, shown)
    # and in the list of commands (`hacloud --help` shows the first paragraph of each)
    listing = hacloud(tmp_path, "--help", env={"COLUMNS": "400"}).stdout
    first = " ".join(doc.split("\n\n")[0].split())
    assert any(first in " ".join(line.split()) for line in listing.splitlines()), (first, listing)


def test_render_json_lists_what_is_on_disk(lab_spec: Path) -> None:
    proc = hacloud(lab_spec, "render", "--out", "out", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    on_disk = {p for p in _tree(lab_spec / "out") if not p.startswith(".")}
    assert {w.split("  (")[0] for w in report["written"]} == on_disk
    assert any("no BMC password" in w for w in report["warnings"])
    bad = hacloud(lab_spec, "render", "--out", "hacloud.yaml", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)[0]["severity"] == "error"


def test_plan_json_is_json_even_when_it_fails(tmp_path: Path) -> None:
    unreachable_onprem(tmp_path)
    proc = hacloud(tmp_path, "plan", "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)
    assert "cannot log in" in problems[0]["message"] and problems[0]["remedy"]


# ---------------------------------------------------------------- 15. Ctrl-C


def test_ctrl_c_during_parallel_remote_steps_stops_at_once(tmp_path: Path) -> None:
    """Both nodes answer SSH (a real sshd on loopback) but every command hangs (ForceCommand
    sleep 600, as a long package install would): SIGINT must end `hacloud status` at once with
    exit 130 and a message, not after the steps' timeouts."""
    from test_remote import SSHD, Sshd

    need(SSHD, "ssh-keygen")
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd runs as root")
    (tmp_path / "sshd").mkdir()
    server = Sshd(tmp_path / "sshd")
    server.config.write_text(server.config.read_text() + "ListenAddress 127.0.0.2\nForceCommand sleep 600\n")
    server.start()
    try:
        spec = unreachable_onprem(tmp_path)
        doc = yaml.safe_load(spec.read_text())
        for node in doc["nodes"]:
            node["ssh"] = {"port": server.port, "key": str(server.client_key)}
        spec.write_text(yaml.safe_dump(doc))
        proc = subprocess.Popen(
            [sys.executable, "-m", "hacloud", "status"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        known = tmp_path / ".hacloud" / "test" / "known_hosts"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (known.exists() and known.read_text().count("\n") >= 2):
            time.sleep(0.2)  # both logins done: the fact-gathering commands now hang
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - started
    finally:
        server.stop()
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err, err
    assert stopped < 5, stopped


@pytest.mark.parametrize("method", ["power", "crash", "fence", "partition"])
def test_an_interrupted_fence_test_says_which_node_and_how_to_bring_it_back(
    lab_spec: Path, method: str
) -> None:
    """The advice after Ctrl-C names the victim and gives command lines the CLI accepts."""
    import re

    from hacloud.deploy.session import workspace
    from hacloud.errors import InterruptedWork
    from hacloud.provision.provider import get_provider
    from hacloud.verify.fencetest.runner import interrupted_after_fault

    lab = get_provider("lab")
    err = interrupted_after_fault(workspace(lab_spec / "hacloud.yaml"), lab, method, "node2")
    assert isinstance(err, InterruptedWork) and err.exit_code == 130
    assert "node2" in err.message and method in err.message
    commands = re.findall(r"`hacloud ([^`]+)`", err.remedy)
    assert any(c.startswith("lab power node2 ") for c in commands), err.remedy
    for command in commands:  # each one parses (with -h: shown, not run)
        proc = hacloud(lab_spec, *command.split(), "-h")
        assert proc.returncode == 0, (command, proc.stderr)
