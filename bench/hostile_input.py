"""Benchmark: how long hacloud takes to refuse each malformed or hostile input of the audit's
classes (issue 16, item 7), in-process (no interpreter start-up): load the spec, the inventory
or the Terraform input exactly as `hacloud render` does, until the SpecError/UsageError.

Run: .venv/bin/python bench/hostile_input.py [ROUNDS]   (prints the max and median per case, ms)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile import (  # noqa: E402
    AWS_STATE,
    AZURE_CASES,
    AZURE_STATE,
    INVENTORY_CHANGES,
    INVENTORY_RAW,
    SPEC_CASES,
    TERRAFORM_CASES,
)

from hacloud.errors import HacloudError  # noqa: E402
from hacloud.ops.prepare import prepare  # noqa: E402
from hacloud.provision.terraform import TerraformSource  # noqa: E402


def timed(rounds: int, attempt: object) -> tuple[float, float, str]:
    times: list[float] = []
    outcome = "accepted"
    for _ in range(rounds):
        start = time.perf_counter()
        try:
            attempt()  # type: ignore[operator]
            outcome = "ACCEPTED"
        except HacloudError as exc:
            outcome = f"exit {exc.exit_code}"
        times.append((time.perf_counter() - start) * 1000)
    return max(times), statistics.median(times), outcome


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lab = root / "lab.yaml"
        lab.write_text((ROOT / "templates/init/lab.yaml").read_text())
        aws = root / "aws.yaml"
        aws.write_text((ROOT / "templates/init/aws.yaml").read_text())
        good_inventory = json.loads(prepare(lab, None, create_secrets=False).inventory.to_json())
        rows: list[tuple[str, tuple[float, float, str]]] = []
        for name, content, _ in SPEC_CASES:
            bad = root / f"spec-{name}.yaml"
            bad.write_bytes(content)
            rows.append((f"spec {name}", timed(rounds, lambda b=bad: prepare(b, None, create_secrets=False))))
        inventories = [(n, c) for n, c, _ in INVENTORY_RAW]
        for name, change, _ in INVENTORY_CHANGES:
            doc = json.loads(json.dumps(good_inventory))
            change(doc)
            inventories.append((name, json.dumps(doc).encode()))
        for name, content in inventories:
            bad = root / f"inventory-{name}.json"
            bad.write_bytes(content)
            rows.append(
                (f"inventory {name}", timed(rounds, lambda b=bad: prepare(lab, b, create_secrets=False)))
            )
        good_state = root / "state-good.json"
        good_state.write_text(json.dumps(AWS_STATE))
        for name, content in [
            ("(well-formed)", good_state.read_bytes()),
            *[(n, c) for n, c, _ in TERRAFORM_CASES],
        ]:
            bad = root / f"state-{name}.json"
            bad.write_bytes(content)
            source = TerraformSource(bad)
            rows.append(
                (
                    f"terraform {name}",
                    timed(rounds, lambda s=source: prepare(aws, None, create_secrets=False, terraform=s)),
                )
            )
        azure = root / "azure.yaml"
        azure.write_text((ROOT / "templates/init/azure.yaml").read_text())
        (root / "admin.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench\n")
        for name, content in [
            ("(well-formed)", json.dumps(AZURE_STATE).encode()),
            *[(n, c) for n, c, _ in AZURE_CASES],
        ]:
            bad = root / f"azure-state-{name}.json"
            bad.write_bytes(content)
            source = TerraformSource(bad)
            rows.append(
                (
                    f"terraform azurerm {name}",
                    timed(rounds, lambda s=source: prepare(azure, None, create_secrets=False, terraform=s)),
                )
            )
    width = max(len(n) for n, _ in rows)
    print(f"{'input':{width}} {'max ms':>8} {'median ms':>10}  outcome   (rounds: {rounds})")
    for name, (worst, median, outcome) in rows:
        print(f"{name:{width}} {worst:8.1f} {median:10.1f}  {outcome}")
    print(f"slowest refusal: {max(r[1][0] for r in rows if r[1][2] != 'ACCEPTED'):.1f} ms")


if __name__ == "__main__":
    main()
