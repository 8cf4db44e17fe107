"""Rendered DRBD and corosync files are accepted by drbdadm and corosync themselves."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXED_SECRETS, PROFILES, need, onprem_doc, render_doc, spec_of
from tools import DRBDADM84, run, write_files

from hacloud.deploy.facts import LOGDIR_PROBE, node_facts, parse_facts
from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import NodeFacts
from hacloud.spec.profiles import load_profile


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


def _cloud_bundle(provider: str) -> Any:
    """The example spec of a cloud provider rendered for an inventory like the one `up` returns:
    link 0 the primary address, link 1 the secondary one the provider added (in os_links)."""
    import yaml
    from conftest import FIXED_SECRETS, REPO, spec_of

    from hacloud.render import effective_profile, render_all
    from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
    from hacloud.spec.profiles import load_profile

    spec = spec_of(yaml.safe_load((REPO / f"templates/init/{provider}.yaml").read_text()))
    nodes = tuple(
        NodeInfo(
            name,
            f"i-0123456789abcdef{i}" if provider == "aws" else name,
            primary,
            (primary, secondary),
            primary,
            {"r0": "/dev/xvdf"},
            zone=str(i + 1),
            # a Debian node (corosync logs to /var/log/corosync, the directory this host has)
            facts=NodeFacts(os_family="debian"),
            extra={"os_links": secondary},
        )
        for i, (name, primary, secondary) in enumerate(
            [("node1", "192.0.2.11", "192.0.2.21"), ("node2", "192.0.2.75", "192.0.2.85")]
        )
    )
    inventory = Inventory(1, spec.cluster.name, provider, (nodes[0], nodes[1]), NetworkInfo())
    return render_all(spec, inventory, effective_profile(spec, load_profile(provider)), FIXED_SECRETS)


BIND_LINK1 = (
    "python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    's.bind(("192.0.2.21", 5406))\''
)


@pytest.mark.tools
@pytest.mark.parametrize("provider", ["aws", "azure"])
def test_cloud_link1_address_is_brought_up_and_corosync_takes_two_links(
    provider: str, tmp_path: Path
) -> None:
    """On a node where cloud-init configured only the primary address (Debian), the rendered
    script adds link 1's address to the interface holding link 0 (idempotently), so knet can
    bind link 1 (a UDP bind on its port fails before, works after); corosync -t accepts the
    two-link config; the corosync drop-in runs the script before corosync starts."""
    need("corosync", "ip", "python3")
    bundle = _cloud_bundle(provider)
    root = write_files(bundle, "node1", tmp_path)
    script = root / "usr/local/lib/hacloud/corosync-links.sh"
    dropin = (root / "etc/systemd/system/corosync.service.d/hacloud-links.conf").read_text()
    assert "ExecStartPre=/usr/local/lib/hacloud/corosync-links.sh" in dropin.splitlines()
    conf = root / "etc/corosync/corosync.conf"
    text = conf.read_text()
    assert "linknumber: 1" in text and "ring1_addr: 192.0.2.21" in text and "ring1_addr: 192.0.2.85" in text
    conf.write_text(text.replace("keyfile: /etc/corosync/authkey", f"keyfile: {root}/etc/corosync/authkey"))
    ns = f"hacloud-t-{uuid.uuid4().hex[:8]}"
    steps = [
        "ip link set lo up",
        "ip link add eth0 type veth peer name eth0p",
        "ip link set eth0 up",
        "ip link set eth0p up",
        "ip addr add 192.0.2.11/26 dev eth0",  # what cloud-init brings up: the primary only
        f"{BIND_LINK1} 2>/dev/null && echo bind-before=ok || echo bind-before=fail",
        f"sh {script} && echo script=ok",
        f"sh {script} && echo again=ok",
        "ip -4 -o addr show dev eth0",
        f"{BIND_LINK1} && echo bind-after=ok",
        f"corosync -t -c {conf} >/dev/null 2>&1 && echo corosync=ok",
    ]
    run(["ip", "netns", "add", ns])
    try:
        out = run(["ip", "netns", "exec", ns, "sh", "-c", "; ".join(steps)], check=False).stdout
    finally:
        run(["ip", "netns", "del", ns], check=False)
    for marker in ("bind-before=fail", "script=ok", "again=ok", "bind-after=ok", "corosync=ok"):
        assert marker in out, out
    assert out.count("192.0.2.21/32") == 1, out  # once, on the interface of link 0


def test_cloud_link_script_refuses_when_link0_is_missing(tmp_path: Path) -> None:
    need("ip")
    root = write_files(_cloud_bundle("aws"), "node1", tmp_path)
    ns = f"hacloud-t-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    try:
        proc = run(
            ["ip", "netns", "exec", ns, "sh", str(root / "usr/local/lib/hacloud/corosync-links.sh")],
            check=False,
        )
    finally:
        run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode != 0 and "no interface holds 192.0.2.11" in proc.stderr


def _link_status(ns: str) -> dict[int, str]:
    """link number -> node 2's status on it, as node 1's running corosync reports it."""
    out = run(["ip", "netns", "exec", ns, "corosync-cfgtool", "-s"], check=False).stdout
    status: dict[int, str] = {}
    link = -1
    for line in out.splitlines():
        if line.startswith("LINK ID"):
            link = int(line.split()[2])
        elif "nodeid:" in line and line.split()[1].rstrip(":") == "2":
            status[link] = line.split()[-1]
    return status


def _one_link(conf: str) -> str:
    """A rendered two-link corosync.conf as an earlier hacloud rendered it: link 0 only."""
    import re

    conf = re.sub(r"\n    interface \{\n        linknumber: 1\n        mcastport: \d+\n    \}\n", "\n", conf)
    return re.sub(r"\n\s*ring1_addr: \S+", "", conf)


def _two_nodes(
    tmp_path: Path, bring_up_link1: bool, wait: float, upgrade: bool = False
) -> list[dict[int, str]]:
    """Two namespaces joined by a veth pair (one L2, no route out), each with the primary
    address only, as cloud-init leaves a Debian node; optionally the rendered links script;
    then both nodes' corosync with the rendered two-link config. Returns node 1's view of
    node 2 per link, sampled every second for ``wait`` seconds. ``upgrade``: start with one
    link, then do what `up` does on a running pair (write the two-link file, run the script,
    ``corosync-cfgtool -R``) once link 0 is connected."""
    import os
    import signal
    import time

    bundle = _cloud_bundle("aws")
    tag = uuid.uuid4().hex[:6]
    nss = {"node1": f"hacloud-c1-{tag}", "node2": f"hacloud-c2-{tag}"}
    primary = {"node1": "192.0.2.11", "node2": "192.0.2.75"}
    procs: list[subprocess.Popen[bytes]] = []
    samples: list[dict[int, str]] = []
    for ns in nss.values():
        run(["ip", "netns", "add", ns])
    try:
        run(["ip", "link", "add", f"hc1{tag}", "type", "veth", "peer", "name", f"hc2{tag}"])
        for i, (node, ns) in enumerate(nss.items(), start=1):
            root = write_files(bundle, node, tmp_path / node)
            conf = root / "etc/corosync/corosync.conf"
            conf.write_text(
                conf.read_text().replace(
                    "keyfile: /etc/corosync/authkey", f"keyfile: {root}/etc/corosync/authkey"
                )
            )
            if upgrade:
                (root / "two-links.conf").write_text(conf.read_text())
                conf.write_text(_one_link(conf.read_text()))
            dev = f"hc{i}{tag}"
            run(["ip", "link", "set", dev, "netns", ns])
            setup = f"ip link set lo up; ip link set {dev} up; ip addr add {primary[node]}/24 dev {dev}"
            if bring_up_link1:
                setup += f"; sh {root}/usr/local/lib/hacloud/corosync-links.sh"
            run(["ip", "netns", "exec", ns, "sh", "-c", setup])
            # private /run, state and log directories: two daemons on one host
            daemon = (
                "mount -t tmpfs none /run && mount -t tmpfs none /var/lib/corosync && "
                "mkdir -p /var/log/corosync && mount -t tmpfs none /var/log/corosync && "
                f"exec corosync -f -c {conf}"
            )
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, "sh", "-c", daemon],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(1)
            samples.append(_link_status(nss["node1"]))
            if upgrade and samples[-1] == {0: "connected"}:
                upgrade = False
                for node, ns in nss.items():
                    root = tmp_path / node / node
                    (root / "etc/corosync/corosync.conf").write_text((root / "two-links.conf").read_text())
                    run(["ip", "netns", "exec", ns, "sh", f"{root}/usr/local/lib/hacloud/corosync-links.sh"])
                run(["ip", "netns", "exec", nss["node1"], "corosync-cfgtool", "-R"])
                continue
            if samples[-1] == {0: "connected", 1: "connected"}:
                break
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        for ns in nss.values():
            run(["ip", "netns", "del", ns], check=False)
    return samples


@pytest.mark.tools
def test_two_corosyncs_run_link1_only_when_the_node_has_the_address(tmp_path: Path) -> None:
    """Two real corosync daemons with the rendered two-link config: with the rendered script
    run first (as the corosync drop-in does), node 1 sees node 2 connected on link 0 and link 1;
    without it (a Debian node with only its primary address) link 0 connects and link 1 never
    does (knet binds the missing address with IP_FREEBIND, so corosync starts and says nothing)."""
    need("corosync", "corosync-cfgtool", "ip")
    with_script = _two_nodes(tmp_path / "with", True, 60)
    assert with_script[-1] == {0: "connected", 1: "connected"}, with_script[-5:]
    without = _two_nodes(tmp_path / "without", False, len(with_script) + 15)
    assert any(s.get(0) == "connected" for s in without), without  # the pair itself works
    assert all(s.get(1) != "connected" for s in without), without


@pytest.mark.tools
def test_a_running_one_link_pair_takes_link1_on_reload(tmp_path: Path) -> None:
    """What `up` does to a pair an earlier hacloud deployed with one link: the new corosync.conf,
    the links script (deploy runs it when it changes), then corosync-cfgtool -R: link 1 comes
    up without restarting corosync."""
    need("corosync", "corosync-cfgtool", "ip")
    samples = _two_nodes(tmp_path, False, 90, upgrade=True)
    assert {0: "connected"} in samples, samples  # it ran with one link first
    assert samples[-1] == {0: "connected", 1: "connected"}, samples[-5:]
