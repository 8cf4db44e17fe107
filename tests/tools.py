"""Drive the real HA tools on rendered output (used by several test modules)."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from hacloud.render import Bundle

DRBDADM84 = "/usr/lib/drbd/drbdadm-84"


def run(
    cmd: list[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    import os

    full = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def with_quorum(cib: str) -> str:
    # A CIB built offline has no quorum; every action would be blocked (testbed.md §2).
    return cib.replace("<cib ", '<cib have-quorum="1" ', 1)


def write_files(bundle: Bundle, node: str, root: Path) -> Path:
    for f in bundle.files[node]:
        target = root / node / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
    return root / node


def crm_mon_placement(cib_file: Path) -> dict[str, list[tuple[str, str]]]:
    """resource id -> [(role, node)] from crm_mon's XML view of a CIB file; the key
    ``@online`` lists the online nodes as ("online", name)."""
    out = run(["crm_mon", "-1", "--output-as=xml"], env={"CIB_file": str(cib_file)}).stdout
    root = ET.fromstring(out)
    placed: dict[str, list[tuple[str, str]]] = {"@online": []}
    for node in root.iterfind("./nodes/node"):
        if node.get("online") == "true":
            placed["@online"].append(("online", node.get("name", "")))
    for res in root.iter("resource"):
        rid = res.get("id", "")
        for node in res.iter("node"):
            placed.setdefault(rid, []).append((res.get("role", ""), node.get("name", "")))
    return placed


def simulate_failover(cib: str, tmp: Path) -> tuple[str, str, str, dict[str, list[tuple[str, str]]]]:
    """Bring both nodes up, let DRBD report UpToDate on both, start everything, fail the node
    running the service. Returns (active, survivor, transition summary, final placement)."""
    tmp.mkdir(parents=True, exist_ok=True)
    base = tmp / "cib.xml"
    base.write_text(with_quorum(cib))
    names = re.findall(r'<node id="\d+" uname="([^"]+)"/>', cib)
    run(["crm_simulate", "-x", str(base), "-u", names[0], "-u", names[1], "-O", str(tmp / "s0.xml")])
    run(["crm_verify", "-x", str(tmp / "s0.xml")])
    run(["crm_simulate", "-x", str(tmp / "s0.xml"), "-S", "-O", str(tmp / "s1.xml")])
    drbd = re.findall(r'<primitive id="(drbd_[a-z0-9_]+)"', cib)
    for rid in drbd:
        for node in names:
            # what ocf:linbit:drbd reports for an UpToDate disk (crm_master)
            run(
                ["crm_attribute", "-N", node, "-n", f"master-{rid}", "-v", "10000", "-l", "reboot"],
                env={"CIB_file": str(tmp / "s1.xml")},
            )
    run(["crm_simulate", "-x", str(tmp / "s1.xml"), "-S", "-O", str(tmp / "s2.xml")])
    before = crm_mon_placement(tmp / "s2.xml")
    fs = [rid for rid in before if rid.startswith("fs_")]
    active = before[fs[0]][0][1] if fs and before[fs[0]] else ""
    if not active:
        raise AssertionError(f"service did not start: {before}")
    survivor = names[1] if active == names[0] else names[0]
    proc = run(
        ["crm_simulate", "-x", str(tmp / "s2.xml"), "--node-fail", active, "-S", "-O", str(tmp / "s3.xml")]
    )
    summary = proc.stdout.split("Transition Summary:", 1)[-1].split("Executing Cluster Transition", 1)[0]
    (tmp / "executed.txt").write_text(proc.stdout.split("Executing Cluster Transition", 1)[-1])
    return active, survivor, summary, crm_mon_placement(tmp / "s3.xml")


def executed_order(tmp: Path, survivor: str) -> list[str]:
    """The actions of the failover transition, in the order the simulator ran them:
    'fence', 'promote <rsc>', 'start <rsc>'."""
    steps: list[str] = []
    for line in (tmp / "executed.txt").read_text().splitlines():
        if re.search(r"\* Fencing \S+", line):
            steps.append("fence")
        m = re.search(rf"Resource action: (\S+)\s+(promote|start) on {survivor}$", line)
        if m:
            steps.append(f"{m.group(2)} {m.group(1)}")
    return steps
