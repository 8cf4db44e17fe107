"""Benchmark: how long spec loading, rendering and checking take (prints numbers, asserts nothing).

Run: .venv/bin/python bench/render.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import yaml

from hacloud.provision.provider import get_provider
from hacloud.render import effective_profile, render_all
from hacloud.spec.load import parse_spec
from hacloud.spec.profiles import load_profile
from hacloud.spec.secrets import ClusterSecrets
from hacloud.verify.invariants import run_checks

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    secrets = ClusterSecrets.generate()
    print(f"{'example':8} {'load ms':>9} {'render ms':>10} {'check ms':>9}  (median of {rounds})")
    for name in ("lab", "onprem", "aws", "azure"):
        text = (ROOT / "templates/init" / f"{name}.yaml").read_text()
        yaml.safe_load(text)
        load, render, check = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            spec = parse_spec(text, name)
            t1 = time.perf_counter()
            inventory = get_provider(spec.provider.kind).planned_inventory(spec)
            profile = effective_profile(spec, load_profile(spec.profile_name))
            bundle = render_all(spec, inventory, profile, secrets)
            t2 = time.perf_counter()
            run_checks(spec, inventory, profile, bundle)
            t3 = time.perf_counter()
            load.append(t1 - t0)
            render.append(t2 - t1)
            check.append(t3 - t2)
        print(
            f"{name:8} {statistics.median(load) * 1e3:9.2f} {statistics.median(render) * 1e3:10.2f} "
            f"{statistics.median(check) * 1e3:9.2f}"
        )


if __name__ == "__main__":
    main()
