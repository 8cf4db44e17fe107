"""Benchmark: client-measured failover time (RTO) per fault method, on the lab.

Run as root: .venv/bin/python bench/failover.py [--rounds K] [--methods power,crash,...] [--spec FILE]
Without --spec it builds its own lab cluster ("benchfo") in a temporary directory and takes
it down afterwards (the image cache stays). Each method runs `hacloud fence-test --rounds K
--json`; prints min/median/p95 RTO next to the floor the configured timers allow, the median
of every stage, and what each round proved (RPO, fenced node off, recovery). Prints numbers
only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hacloud.verify.fencetest.analysis import summary  # noqa: E402


def hacloud(spec: Path, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args, "-f", str(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def own_cluster(work: Path) -> Path:
    doc = yaml.safe_load((ROOT / "templates/init/lab.yaml").read_text())
    doc["cluster"]["name"] = "benchfo"
    for target in doc["fencing"][0]["nodes"].values():
        target["password_file"] = target["password_file"].replace("/demo/", "/benchfo/")
    spec = work / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(doc))
    started = time.monotonic()
    proc = hacloud(spec, "up", "-y")
    if proc.returncode != 0:
        sys.exit(f"hacloud up failed:\n{proc.stderr[-3000:]}")
    print(f"lab cluster up in {time.monotonic() - started:.0f} s")
    return spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--methods", default="power,crash,fence,partition")
    parser.add_argument("--spec", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hacloud-bench-"))
    spec = args.spec or own_cluster(work)
    print(f"{'method':10} {'rounds':>6} {'min':>6} {'median':>6} {'p95':>6} {'floor':>6}  proved")
    stage_lines = []
    try:
        for method in args.methods.split(","):
            started = time.monotonic()
            proc = hacloud(
                spec, "fence-test", "-y", "--json", "--method", method, "--rounds", str(args.rounds)
            )
            rounds = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            rto = [r["rto_seconds"] for r in rounds if r["rto_seconds"] is not None]
            s = summary(rto)
            floor = rounds[0]["floor_seconds"] if rounds else None
            resync = statistics.median([r["resync_seconds"] or 0 for r in rounds]) if rounds else "-"
            proved = (
                f"{sum(r['passed'] for r in rounds)}/{len(rounds)} passed, "
                f"lost {sum(r['lost'] for r in rounds)}, "
                f"off {sum(r['fenced_confirmed_off'] for r in rounds)}, "
                f"resync median {resync} s, {time.monotonic() - started:.0f} s wall"
            )
            print(
                f"{method:10} {len(rounds):>6} {s.get('min', '-'):>6} {s.get('median', '-'):>6} "
                f"{s.get('p95', '-'):>6} {floor if floor is not None else '-':>6}  {proved}",
                flush=True,
            )
            if proc.returncode != 0 and len(rounds) < args.rounds:
                print(f"  stopped early: {proc.stderr.strip().splitlines()[-3:]}", flush=True)
            names: dict[str, list[float]] = {}
            for r in rounds:
                for name, at in r["stages"].items():
                    names.setdefault(name, []).append(at)
            medians = sorted((statistics.median(v), k) for k, v in names.items())
            stage_lines.append(f"{method:10} " + ", ".join(f"{k} {m:.1f}" for m, k in medians))
        print("median stage times (seconds after the fault):")
        for line in stage_lines:
            print(f"  {line}")
    finally:
        if args.spec is None:
            hacloud(spec, "down", "-y", "--delete-volumes", timeout=300)


if __name__ == "__main__":
    main()
