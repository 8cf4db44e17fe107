"""Judge rendered artefacts with the real tools and independent parsers (issue 16: injection).

Every judge here reads only the artefact, never the code that made it: ``crm_verify`` and
ElementTree for the CIB, ``drbdadm dump`` for DRBD, ``corosync -t`` plus a brace parser for
corosync.conf, a procps-style line parser for sysctl.d, configparser for the AWS config, and
``sh -n`` plus a sandboxed run (no network, a scratch directory, a marker file that any
injected command would create) for shell scripts.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from tools import run, with_quorum, write_files

from hacloud.render import Bundle

# Hostile text: every character that ends a value, a line, a directive, an XML attribute or a
# shell word in one of the languages hacloud writes, and commands that leave a marker.
MARKER_NAME = "INJECTED"
PAYLOADS = (
    "&",
    "a&b<c>\"d'e",
    '" name="pcmk_host_list" value="node1',
    "x\n  pcmk_host_list=node1",
    "disconnect; protocol A; allow-two-primaries yes",
    "10\nkernel.core_pattern = |/bin/sh -c id",
    "eu-central-1\ncredential_process = /bin/sh -c id",
    "192.0.2.11:7789;\n    }\n    on evil {\n        disk /dev/sdz;\n        address 192.0.2.99",
    "$(touch INJECTED)",
    "`touch INJECTED`",
    "'; touch INJECTED; '",
    '"; touch INJECTED; "',
    "/srv/data/../../etc",
    "--",
    "]]>",
    "\nEND\ntouch INJECTED\n",
    "a}b{c#d",
    "\\",
    "\t",
    "\r",
    "\x00",
    "\x1b[2J",
)


# ---------------------------------------------------------------- CIB


def cib_tree(cib: str) -> ET.Element:
    return ET.fromstring(cib)


def cib_shape(root: ET.Element) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every element as (tag, id, sorted attribute names), in document order: what an
    injection would change (a new element, a new nvpair, a new attribute)."""
    return [(e.tag, e.get("id", ""), tuple(sorted(e.attrib))) for e in root.iter()]


def nvpairs(root: ET.Element, set_id: str) -> list[tuple[str, str]]:
    for attrs in root.iter():
        if attrs.get("id") == set_id:
            return [(nv.get("name", ""), nv.get("value", "")) for nv in attrs.iterfind("nvpair")]
    raise AssertionError(f"no attribute set {set_id}")


def crm_verify(cib: str, tmp: Path) -> None:
    """crm_verify accepts the CIB once both nodes are up (offline, an unknown node state only
    warns that the nodes will be fenced)."""
    tmp.mkdir(parents=True, exist_ok=True)
    base = tmp / f"cib-{uuid.uuid4().hex[:6]}.xml"
    base.write_text(with_quorum(cib))
    names = [n.get("uname", "") for n in cib_tree(cib).iter("node")]
    up = base.with_suffix(".up.xml")
    run(["crm_simulate", "-x", str(base), "-u", names[0], "-u", names[1], "-O", str(up)])
    run(["crm_verify", "-x", str(up)])


# ---------------------------------------------------------------- DRBD


def drbd_dump(bundle: Bundle, node: str, tmp: Path, drbdadm: str = "drbdadm") -> str:
    root = write_files(bundle, node, tmp / uuid.uuid4().hex[:6])
    conf = root / "drbd.conf"
    d = root / "etc" / "drbd.d"
    conf.write_text(f'include "{d}/global_common.conf";\ninclude "{d}/*.res";\n')
    return run([drbdadm, "-c", str(conf), "dump", "all"]).stdout


def drbd_structure(dump: str) -> dict[str, object]:
    """Resources, hosts, disks, addresses and every option name of a ``drbdadm dump`` (one
    directive per line; a quoted string is one word, whatever it holds)."""
    body = r'(?:"(?:[^"\\\n]|\\.)*"|[^{};"\n])*'  # words and quoted strings, on one line
    return {
        "resources": re.findall(r"^resource[ \t]+(\S+)", dump, re.M),
        "hosts": re.findall(r"^[ \t]+on[ \t]+(\S+)[ \t]*\{", dump, re.M),
        "disks": re.findall(rf"^[ \t]+disk[ \t]+({body});[ \t]*$", dump, re.M),
        "addresses": re.findall(rf"^[ \t]+address[ \t]+({body});[ \t]*$", dump, re.M),
        "options": sorted(set(re.findall(rf"^[ \t]+([a-z][a-z0-9-]*)[ \t]+{body};[ \t]*$", dump, re.M))),
        "two_primaries": re.search(r"^[ \t]+allow-two-primaries[ \t;]", dump, re.M) is not None,
        "protocols": re.findall(r"^[ \t]+protocol[ \t]+(\S+);", dump, re.M),
    }


# ---------------------------------------------------------------- corosync


def corosync_tree(text: str) -> list[tuple[int, str, str]]:
    """(depth, key, value) of every directive, parsed as corosync's line-based parser does:
    ``name {`` opens a section, ``}`` closes it, ``key: value`` is a directive."""
    out: list[tuple[int, str, str]] = []
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            out.append((depth, line[:-1].strip(), "{"))
            depth += 1
        elif line == "}":
            depth -= 1
        else:
            key, _, value = line.partition(":")
            out.append((depth, key.strip(), value.strip()))
    assert depth == 0, f"unbalanced braces:\n{text}"
    return out


def corosync_log_dir(text: str) -> str | None:
    """The directory of a corosync.conf's ``logfile:`` (None without one)."""
    m = re.search(r"^[ \t]*logfile:[ \t]*(\S+)[ \t]*$", text, re.M)
    return m.group(1).rpartition("/")[0] if m else None


def corosync_test(
    text: str, key: Path, addresses: list[str], tmp: Path, log_dir: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``corosync -t`` in a throwaway network namespace holding the node's addresses on lo,
    with a private, empty /var/log (a tmpfs in a private mount namespace) holding only
    ``log_dir``, as a fresh node's corosync package leaves it (Debian /var/log/corosync,
    RHEL/SUSE /var/log/cluster): ``corosync -t`` refuses a logfile whose directory is missing.
    ``log_dir`` defaults to the directory the file itself logs to."""
    conf = tmp / f"corosync-{uuid.uuid4().hex[:6]}.conf"
    conf.write_text(text.replace("keyfile: /etc/corosync/authkey", f"keyfile: {key}"))
    if log_dir is None:
        log_dir = corosync_log_dir(text)
    ns = f"hacloud-i-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    try:
        # quoted: the addresses and the log directory come from the file under test (this
        # harness must not be injectable)
        setup = "ip link set lo up; " + "; ".join(
            f"ip addr add {shlex.quote(a + '/32')} dev lo" for a in addresses
        )
        logs = "mount -t tmpfs hacloud-fuzz /var/log" + (
            f" && mkdir -p -- {shlex.quote(log_dir)}" if log_dir and log_dir.startswith("/var/log/") else ""
        )
        script = f"{setup}; {logs} && corosync -t -c {shlex.quote(str(conf))}"
        return run(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script], check=False)
    finally:
        run(["ip", "netns", "del", ns], check=False)


# ---------------------------------------------------------------- sysctl, ini


def sysctl_settings(text: str) -> dict[str, str]:
    """What ``sysctl -p`` would set (procps: ``#``/``;`` lines are comments, ``key = value``)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"sysctl -p would reject {line!r}"
        out[key.strip().lstrip("-")] = value.strip()
    return out


def aws_config(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {s: dict(parser[s]) for s in parser.sections()}


# ---------------------------------------------------------------- shell


def sh_syntax_ok(script: str) -> None:
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def sandboxed(script: str, args: list[str], tmp: Path, path_dirs: tuple[Path, ...] = ()) -> tuple[str, bool]:
    """Run ``script`` with ``args`` in a scratch directory, without network (unshare -n) and
    with an empty environment; returns (stdout, whether the injection marker appeared
    anywhere under the scratch directory or in /tmp)."""
    work = tmp / f"sandbox-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    file = work / "script.sh"
    file.write_text(script)
    env = {
        "PATH": ":".join([*map(str, path_dirs), "/usr/sbin:/usr/bin:/sbin:/bin"]),
        "HOME": str(work),
        # an OCF agent's files stay in the scratch directory too
        "OCF_RESKEY_pidfile": str(work / "agent.pid"),
        "OCF_RESKEY_logfile": str(work / "agent.log"),
    }
    cmd = ["unshare", "-n", "sh", str(file), *args] if os.geteuid() == 0 else ["sh", str(file), *args]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=30)
    planted = any(p.name == MARKER_NAME for p in work.rglob("*")) or Path("/tmp", MARKER_NAME).exists()
    return proc.stdout, planted
