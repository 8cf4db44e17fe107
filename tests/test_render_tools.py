"""Rendered DRBD and corosync files are accepted by drbdadm and corosync themselves."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import FIXED_SECRETS, PROFILES, need, onprem_doc, render_doc, spec_of
from tools import DRBDADM84, run, write_files

from hacloud.deploy import LOGDIR_PROBE, node_facts, parse_facts
from hacloud.model import NodeFacts
from hacloud.profiles import load_profile
from hacloud.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all


def _drbd_conf(node_dir: Path) -> Path:
    conf = node_dir / "drbd.conf"
    d = node_dir / "etc" / "drbd.d"
    conf.write_text(f'include "{d}/global_common.conf";\ninclude "{d}/*.res";\n')
    return conf


def _drbdadm(version: str) -> list[str]:
    return [DRBDADM84] if version == "8.4" else ["drbdadm"]


@pytest.mark.tools
@pytest.mark.parametrize("version", ["8.4", "9"])
@pytest.mark.parametrize("profile", PROFILES)
def test_drbd_dump_and_dry_run_up(version: str, profile: str, tmp_path: Path) -> None:
    need("drbdadm", DRBDADM84, "unshare")
    doc = onprem_doc(profile=profile)
    doc["targets"] = {"drbd": version}
    doc["volumes"].append({"name": "r1", "mount_point": "/srv/logs", "filesystem": "xfs"})
    for i, node in enumerate(doc["nodes"]):
        node["volumes"]["r1"] = f"/dev/disk/by-id/wwn-0x60000000000000{i}"
        node["replication_address"] = f"198.51.100.{11 + i}"
    _, bundle = render_doc(doc)
    for node in ("node1", "node2"):
        conf = _drbd_conf(write_files(bundle, node, tmp_path))
        dump = run([*_drbdadm(version), "-c", str(conf), "dump", "all"]).stdout
        assert "protocol" in dump and "C;" in dump
        for res, port in (("r0", 7789), ("r1", 7790)):
            # -d: print what `up` would run, as this node (drbdadm picks its section by host name)
            proc = run(
                [
                    "unshare",
                    "-u",
                    "sh",
                    "-c",
                    f'hostname {node} && exec "$@"',
                    "sh",
                    *_drbdadm(version),
                    "-c",
                    str(conf),
                    "-d",
                    "up",
                    res,
                ]
            )
            own = "198.51.100.11" if node == "node1" else "198.51.100.12"
            assert f"{own}:{port}" in proc.stdout
            assert "resource-and-stonith" in proc.stdout
            assert "--protocol=C" in proc.stdout


@pytest.mark.tools
def test_drbdadm_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator can fail: a wrong keyword in a rendered file is caught."""
    need("drbdadm")
    doc = onprem_doc()
    doc["targets"] = {"drbd": "9"}
    _, bundle = render_doc(doc)
    conf = _drbd_conf(write_files(bundle, "node1", tmp_path))
    common = tmp_path / "node1" / "etc" / "drbd.d" / "global_common.conf"
    common.write_text(common.read_text().replace("ko-count", "ko-cuont"))
    assert run(["drbdadm", "-c", str(conf), "dump", "all"], check=False).returncode != 0


def _corosync_test(
    conf_text: str, key: Path, addresses: list[str], tmp_path: Path, log_dirs: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`corosync -t` on a node's file in a throwaway network namespace holding its addresses, with
    a private, empty /var/log holding only ``log_dirs`` (default: the directory the file logs to),
    as a fresh node of one family has it."""
    conf = tmp_path / f"corosync-{uuid.uuid4().hex[:6]}.conf"
    conf.write_text(conf_text.replace("keyfile: /etc/corosync/authkey", f"keyfile: {key}"))
    if log_dirs is None:
        logfile = re.search(r"^\s*logfile:\s*(\S+)", conf_text, re.MULTILINE)
        log_dirs = [logfile.group(1).rpartition("/")[0]] if logfile else []
    ns = f"hacloud-t-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    try:
        # A throwaway namespace with no route out holds the node's addresses on lo; unshare -m
        # gives a private mount namespace, so the tmpfs over /var/log hides the host's.
        setup = "ip link set lo up; " + "; ".join(f"ip addr add {a}/32 dev lo" for a in addresses)
        logs = "mount -t tmpfs hacloud-test /var/log" + "".join(f" && mkdir -p {d}" for d in log_dirs)
        script = f"{setup}; {logs} && corosync -t -c {conf}"
        return run(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script], check=False)
    finally:
        run(["ip", "netns", "del", ns], check=False)


@pytest.mark.tools
@pytest.mark.parametrize("links", [1, 2])
@pytest.mark.parametrize("profile", PROFILES)
def test_corosync_accepts_config(profile: str, links: int, tmp_path: Path) -> None:
    need("corosync", "ip")
    _, bundle = render_doc(onprem_doc(profile=profile, links=links))
    for i, node in enumerate(("node1", "node2")):
        root = write_files(bundle, node, tmp_path)
        text = (root / "etc/corosync/corosync.conf").read_text()
        addrs = [f"192.0.2.{11 + i}"] + ([f"198.51.100.{11 + i}"] if links == 2 else [])
        proc = _corosync_test(text, root / "etc/corosync/authkey", addrs, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"ring{links - 1}_addr" in text and f"ring{links}_addr" not in text


@pytest.mark.tools
def test_corosync_rejects_a_broken_file(tmp_path: Path) -> None:
    need("corosync", "ip")
    _, bundle = render_doc(onprem_doc())
    root = write_files(bundle, "node1", tmp_path)
    text = (root / "etc/corosync/corosync.conf").read_text()
    key = root / "etc/corosync/authkey"
    good = _corosync_test(text, key, ["192.0.2.11", "198.51.100.11"], tmp_path)
    bad = _corosync_test(
        text.replace("token: 5000", "token: five"), key, ["192.0.2.11", "198.51.100.11"], tmp_path
    )
    assert good.returncode == 0 and bad.returncode != 0


# Where each family's corosync package logs: Debian's ships /var/log/corosync (`dpkg -L
# corosync` on this machine), RHEL's corosync.spec and SUSE's package create /var/log/cluster.
PACKAGE_LOG_DIRS = {"debian": "/var/log/corosync", "rhel": "/var/log/cluster", "suse": "/var/log/cluster"}


def _facts_render(doc: dict[str, object], facts: NodeFacts) -> Bundle:
    spec = spec_of(doc)
    inv = get_provider("onprem").planned_inventory(spec)
    nodes = [dataclasses.replace(n, facts=facts) for n in inv.nodes]
    inv = dataclasses.replace(inv, nodes=(nodes[0], nodes[1]))
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return render_all(spec, inv, profile, FIXED_SECRETS, {})


@pytest.mark.tools
@pytest.mark.parametrize("family", ["debian", "rhel", "suse"])
def test_corosync_logs_where_the_nodes_package_does(family: str, tmp_path: Path) -> None:
    """A node of each family has only its package's log directory: the file rendered for it
    starts there (`corosync -t` 0) and the other family's layout, the directory absent, exits 7."""
    need("corosync", "ip", "unshare")
    if family == "debian" and shutil.which("dpkg"):
        assert PACKAGE_LOG_DIRS["debian"] in run(["dpkg", "-L", "corosync"]).stdout.split()
    bundle = _facts_render(onprem_doc(), NodeFacts(os_family=family))  # type: ignore[arg-type]
    root = write_files(bundle, "node1", tmp_path)
    text = (root / "etc/corosync/corosync.conf").read_text()
    addrs = ["192.0.2.11", "198.51.100.11"]
    own = PACKAGE_LOG_DIRS[family]
    other = next(d for d in PACKAGE_LOG_DIRS.values() if d != own)
    present = _corosync_test(text, root / "etc/corosync/authkey", addrs, tmp_path, [own])
    absent = _corosync_test(text, root / "etc/corosync/authkey", addrs, tmp_path, [other])
    assert present.returncode == 0, present.stdout + present.stderr
    assert absent.returncode == 7 and "Can't open logfile" in absent.stdout + absent.stderr


@pytest.mark.tools
def test_the_log_directory_read_from_the_node_wins(tmp_path: Path) -> None:
    """The facts script's probe, run in a node-like /var/log (a Debian-family node whose corosync
    logs to /var/log/cluster), decides the rendered path over the family's default."""
    need("corosync", "ip", "unshare")
    script = f"mount -t tmpfs hacloud-test /var/log && mkdir -p /var/log/cluster && {{ {LOGDIR_PROBE}; }}"
    out = run(["unshare", "-m", "sh", "-c", script]).stdout
    host = parse_facts("node1", out)
    assert host.log_dirs == ["/var/log/cluster"]
    spec = spec_of(onprem_doc())
    facts = node_facts(
        dataclasses.replace(host, family="debian"), get_provider("onprem").planned_inventory(spec).nodes[0]
    )
    assert facts.corosync_log_dir == "/var/log/cluster"
    root = write_files(_facts_render(onprem_doc(), facts), "node1", tmp_path)
    text = (root / "etc/corosync/corosync.conf").read_text()
    key, addrs = root / "etc/corosync/authkey", ["192.0.2.11", "198.51.100.11"]
    assert _corosync_test(text, key, addrs, tmp_path, ["/var/log/cluster"]).returncode == 0
    assert _corosync_test(text, key, addrs, tmp_path, ["/var/log/corosync"]).returncode == 7
