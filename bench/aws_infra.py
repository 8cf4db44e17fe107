"""Benchmark: AWS API calls and time of `up` (infrastructure), a no-op re-run, discover,
live checks and teardown, against a local moto server (prints numbers, asserts nothing).

API calls matter more than seconds on AWS: EC2 throttles per account, so a re-run that makes
few calls is what keeps a fleet of clusters from tripping RequestLimitExceeded.

Run: .venv/bin/python bench/aws_infra.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from awstools import REGION, RecordingProxy, aws_env, aws_spec_doc, byo_vpc, moto_server, reset  # noqa: E402

from hacloud.provision.provider import get_provider  # noqa: E402
from hacloud.spec.load import load_spec  # noqa: E402
from hacloud.spec.workspace import Workspace  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp) / "moto.log") as moto:
        proxy = RecordingProxy(moto)
        os.environ.update(aws_env(proxy.url))
        provider = get_provider("aws")
        times: dict[str, list[float]] = {}
        calls: dict[str, Counter[str]] = {}
        for r in range(rounds):
            reset(moto)
            account = byo_vpc(boto3.client("ec2", region_name=REGION))
            spec_path = Path(tmp) / f"r{r}" / "hacloud.yaml"
            spec_path.parent.mkdir()
            spec_path.write_text(yaml.safe_dump(aws_spec_doc(account)))
            ws = Workspace(load_spec(spec_path), spec_path)
            steps = {
                "up (create)": lambda ws=ws: provider.ensure_nodes(ws),
                "up (re-run, 0 changes)": lambda ws=ws: provider.ensure_nodes(ws),
                "discover": lambda ws=ws: provider.discover(ws),
                "check --live": lambda ws=ws: provider.live_audit(ws, provider.ensure_nodes(ws)),
                "down": lambda ws=ws: provider.teardown(ws, delete_volumes=True),
            }
            for name, step in steps.items():
                proxy.calls.clear()
                start = time.perf_counter()
                step()
                times.setdefault(name, []).append(time.perf_counter() - start)
                calls[name] = Counter(a for a, _ in proxy.calls)
        proxy.close()
    print(f"{'step':24} {'median s':>9} {'API calls':>10}  (moto on loopback, {rounds} rounds)")
    for name, values in times.items():
        print(f"{name:24} {statistics.median(values):9.3f} {sum(calls[name].values()):10d}")
    print("\nre-run calls by action:", dict(sorted(calls["up (re-run, 0 changes)"].items())))


if __name__ == "__main__":
    main()
