"""Benchmark: AWS in a box end to end. From nothing to a healthy emulated AWS pair (seconds, API
calls by caller), then fence-test per method with the AWS profile's timers and with the lab's,
side by side, with the stage breakdown and the AWS path of each fence (where fence_aws's time goes).

Run as root: .venv/bin/python bench/aws_box_e2e.py [--rounds K] [--methods power,fence,...]
    [--profiles aws,lab] [--vip aws-vpc-move-ip|awseip]
Each profile gets its own emulated cluster ("benchaws"), built with `hacloud init --provider aws
--emulated` + `up` inside a namespace with only loopback, and removed with `down
--delete-volumes` afterwards. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "providers"))

from hacloud.verify.fencetest.analysis import summary  # noqa: E402

CLUSTER = "benchaws"


class Cluster:
    def __init__(self, work: Path, profile: str, vip: str) -> None:
        self.work, self.profile = work, profile
        self.netns = f"hacbench-{os.getpid()}"
        self.spec = work / "hacloud.yaml"
        self.box = work / ".hacloud" / CLUSTER / "aws-box"
        self.vip = vip

    def hacloud(self, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m", "hacloud", *args]
        if args[0] != "init":
            argv += ["-f", str(self.spec)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.work)

    def api_log(self, since: float, until: float = float("inf")) -> list[dict[str, Any]]:
        path = self.box / "api.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [e for e in entries if since <= e["t"] <= until]

    def events(self, since: float) -> list[dict[str, Any]]:
        path = self.box / "events.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [e for e in entries if e.get("t", 0) >= since]

    def up(self) -> None:
        from hacloud_lab import image  # the guest image: built here, where the mirror is reachable

        image.ensure_image(image.select_kernel())
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self.hacloud("init", "--provider", "aws", "--emulated", "--out", str(self.spec))
        doc = yaml.safe_load(self.spec.read_text())
        doc["cluster"]["name"] = CLUSTER
        for node in doc["nodes"]:
            node["ssh"]["key"] = f".hacloud/{CLUSTER}/aws-box/id_ed25519"
        if self.profile != "aws":  # with the AWS VIP agents' own op timeouts (not IPaddr2's)
            doc["profile"] = self.profile
            ops = {"start_timeout": 180, "stop_timeout": 180, "monitor_interval": 60, "monitor_timeout": 60}
            doc["overrides"] = {f"ops.vip.{k}": v for k, v in ops.items()}
        if self.vip == "awseip":
            text = (ROOT / "templates/init/aws-emulated.yaml").read_text()
            alloc = text.split("allocation_id: ")[1].split()[0]
            doc["vip"] = {"kind": "awseip", "elastic_ip": "198.51.100.200", "allocation_id": alloc}
        self.spec.write_text(yaml.safe_dump(doc))
        started, wall = time.time(), time.monotonic()
        proc = self.hacloud("up", "-y")
        if proc.returncode != 0:
            sys.exit(f"hacloud up failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        took = time.monotonic() - wall
        calls = self.api_log(started)
        by = collections.Counter(
            "hacloud" if e["listener"] == "host" else f"node agents ({e['caller'].rsplit('/', 1)[-1]})"
            for e in calls
        )
        print(f"[{self.profile}] up from nothing: {took:.0f} s, {len(calls)} API calls: {dict(by)}")
        first = [e for e in calls if e["action"] == "RunInstances"]
        if first:
            print(f"[{self.profile}]   RunInstances at +{first[0]['t'] - started:.1f} s")
        wall = time.monotonic()
        again = self.hacloud("up", "-y")
        print(f"[{self.profile}] second up: {time.monotonic() - wall:.1f} s, {again.stdout.splitlines()[:1]}")

    def down(self) -> None:
        self.hacloud("down", "-y", "--delete-volumes", timeout=600)
        subprocess.run(["ip", "netns", "del", self.netns], check=False)


def fence_path(cluster: Cluster, since: float, until: float) -> str:
    """The AWS side of the fence: the acting StopInstances and the instance's power, in seconds
    after the first acting StopInstances."""
    stops = [
        e
        for e in cluster.api_log(since, until)
        if e["action"] == "StopInstances" and str(e["params"].get("DryRun", "")).lower() != "true"
    ]
    if not stops:
        return "no StopInstances"
    t0 = stops[0]["t"]
    who = stops[0]["caller"].rsplit("/", 1)[-1] or "hacloud"
    marks = [f"StopInstances by {who} ({len(stops)} call(s), {stops[0]['ms']:.0f} ms)"]
    for e in cluster.events(since):
        if e.get("t", 0) <= until and e.get("t", 0) >= t0 - 1:
            marks.append(f"{e.get('event')} +{e['t'] - t0:.1f}")
    return ", ".join(marks)


def rounds(cluster: Cluster, method: str, count: int) -> tuple[str, list[str]]:
    started, wall = time.time(), time.monotonic()
    proc = cluster.hacloud("fence-test", "-y", "--json", "--method", method, "--rounds", str(count))
    ended = time.time()
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rto = [r["rto_seconds"] for r in results if r["rto_seconds"] is not None]
    s = summary(rto)
    floor = results[0]["floor_seconds"] if results else "-"
    proved = (
        f"{sum(r['passed'] for r in results)}/{len(results)} passed, lost {sum(r['lost'] for r in results)}, "
        f"{time.monotonic() - wall:.0f} s wall"
    )
    if proc.returncode != 0 and len(results) < count:
        proved += f"; stopped: {proc.stderr.strip().splitlines()[-2:]}"
    line = (
        f"{cluster.profile:5} {method:10} {len(results):>6} {s.get('min', '-'):>6} "
        f"{s.get('median', '-'):>6} {s.get('p95', '-'):>6} {floor:>6}  {proved}"
    )
    detail = []
    names: dict[str, list[float]] = {}
    for r in results:
        for name, at in r["stages"].items():
            names.setdefault(name, []).append(at)
    medians = sorted((statistics.median(v), k) for k, v in names.items())
    detail.append(f"{cluster.profile:5} {method:10} stages: " + ", ".join(f"{k} {m:.1f}" for m, k in medians))
    detail.append(f"{cluster.profile:5} {method:10} AWS path: {fence_path(cluster, started, ended)}")
    return line, detail


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="power,fence,crash,partition")
    parser.add_argument("--profiles", default="lab,aws")
    parser.add_argument("--vip", default="aws-vpc-move-ip", choices=["aws-vpc-move-ip", "awseip"])
    args = parser.parse_args()
    lines, details = [], []
    for profile in args.profiles.split(","):
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="hacloud-bench-box-")), profile, args.vip)
        try:
            cluster.up()
            for method in args.methods.split(","):
                line, detail = rounds(cluster, method, args.rounds)
                print(line, flush=True)
                lines.append(line)
                details += detail
        finally:
            cluster.down()
    print(f"{'prof':5} {'method':10} {'rounds':>6} {'min':>6} {'median':>6} {'p95':>6} {'floor':>6}  proved")
    for line in lines:
        print(line)
    for line in details:
        print(line)


if __name__ == "__main__":
    main()
