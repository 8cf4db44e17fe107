"""Benchmark: the AWS box's core (issue 18, WP1): daemon start to ready, API latency over TLS
(p50/p99), a throttled call absorbed by botocore, and the daemon's memory. Prints numbers,
asserts nothing. Talks to 127.0.0.1 only.

Run: .venv/bin/python bench/aws_box.py [STARTS] [CALLS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from boxtools import REGION, Box  # noqa: E402
from hacloud_aws.box import daemon  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed_calls(call: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    starts = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as tmp:
        ready, inside = [], []
        for n in range(starts):
            t0 = time.perf_counter()
            proc = daemon.launch(daemon.BoxConfig(Path(tmp) / f"s{n}", REGION))
            ready.append(time.perf_counter() - t0)
            inside.append(proc.info["startup_s"])
            daemon.stop(proc)
        med, top, own = statistics.median(ready), max(ready), statistics.median(inside)
        print(f"start to ready (launch, incl. Python + moto import): median {med:.2f} s, max {top:.2f} s")
        print(
            f"  over {starts} starts; inside the daemon (moto import, PKI, account, listeners): {own:.2f} s"
        )
        box = Box(daemon.launch(daemon.BoxConfig(Path(tmp) / "api", REGION)))
        try:
            ec2 = box.client("ec2")
            iids = [box.run_instance("a"), box.run_instance("b")]
            warm = timed_calls(lambda: ec2.describe_instances(InstanceIds=iids), calls)
            print(f"DescribeInstances over TLS, kept-alive connection, {calls} calls: "
                  f"p50 {pct(warm, 0.5):.1f} ms, p99 {pct(warm, 0.99):.1f} ms")  # fmt: skip
            fresh = timed_calls(lambda: box.client("ec2").describe_instances(InstanceIds=iids), calls // 4)
            print(f"DescribeInstances over TLS, new client + TLS handshake each, {calls // 4} calls: "
                  f"p50 {pct(fresh, 0.5):.1f} ms, p99 {pct(fresh, 0.99):.1f} ms")  # fmt: skip
            stops = timed_calls(
                lambda: (ec2.stop_instances(InstanceIds=iids[:1]), ec2.start_instances(InstanceIds=iids[:1])),
                calls // 4,
            )
            p50, p99 = pct(stops, 0.5), pct(stops, 0.99)
            print(f"StopInstances + StartInstances pair: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            box.control(op="fault", kind="throttle", action="StopInstances", count=2)
            t0 = time.perf_counter()
            ec2.stop_instances(InstanceIds=iids[:1])
            took = time.perf_counter() - t0
            print(f"StopInstances throttled twice, absorbed by botocore's retries: {took:.2f} s")
            print(f"daemon RSS after {len(box.actions())} requests: {rss_mib(box.info['pid']):.0f} MiB")
        finally:
            daemon.stop(box.process)


if __name__ == "__main__":
    main()
