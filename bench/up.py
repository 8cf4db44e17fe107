"""Benchmark: wall time of `hacloud up` on fresh lab nodes, and of the no-op re-run.

Run as root: .venv/bin/python bench/up.py [WORKDIR]
Prints: node provisioning (boot to SSH), cluster bootstrap (fresh nodes -> healthy pair with
the service answering on the VIP), no-op re-run, planned failover. Tears the lab down after
(keeping the image cache). Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str], spec: Path) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", *args, "-f", str(spec)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        sys.exit(f"`hacloud {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="hacloud-bench-"))
    doc = yaml.safe_load((ROOT / "templates/init/lab.yaml").read_text())
    doc["cluster"]["name"] = "bench"
    for target in doc["fencing"][0]["nodes"].values():
        target["password_file"] = target["password_file"].replace("/demo/", "/bench/")
    spec = work / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(doc))
    sys.path[:0] = [str(ROOT), str(ROOT / "providers")]
    from hacloud_lab.lab import LabProvider

    from hacloud.spec.load import load_spec
    from hacloud.spec.workspace import Workspace

    try:
        started = time.monotonic()
        LabProvider().ensure_nodes(Workspace(load_spec(spec), spec))
        provision = time.monotonic() - started
        bootstrap, summary = timed(["up", "-y"], spec)
        noop, noop_summary = timed(["up", "-y"], spec)
        failover, _ = timed(["failover", "-y"], spec)
        print(f"nodes (image cached, boot to SSH):      {provision:6.1f} s")
        print(f"hacloud up on fresh nodes (bootstrap):  {bootstrap:6.1f} s   ({summary.split(';')[0]})")
        print(f"hacloud up again (no-op):               {noop:6.1f} s   ({noop_summary.split(';')[0]})")
        print(f"hacloud failover (planned switchover):  {failover:6.1f} s")
        print("baseline recorded in testbed.md on the same kind of guests, not re-measured here:")
        print(
            f"  pcs host auth + cluster setup --start --wait: 124 s to both nodes online "
            f"(hacloud: {bootstrap:.0f} s to a fenced pair serving on the VIP, ratio {bootstrap / 124:.2f})"
        )
        print(
            "  crmsh `crm cluster init -y`: 132.7 s for the first node; `crm cluster join` fails on Debian 12"
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "hacloud", "down", "-y", "--delete-volumes", "-f", str(spec)],
            capture_output=True,
            timeout=300,
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
