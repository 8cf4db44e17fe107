"""Benchmark: ARM requests and time of `up` (infrastructure), a no-op re-run, discover, live
checks and teardown, and of drop-in mode on two VMs Terraform made (the fence role added where
none covers fencing, a re-run, its removal), against the spec-judged fake ARM (prints
numbers, asserts nothing).

ARM throttles per subscription and principal (429 + Retry-After), so a re-run that only reads
is what lets many clusters share a subscription.

Run: .venv/bin/python bench/azure_infra.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from azuretools import KEY, StaticToken, someone_elses_vm  # noqa: E402
from fakearm import RG, SUBNET_ID, SUBSCRIPTION, FakeArm  # noqa: E402
from hacloud_azure import api  # noqa: E402

from hacloud.provision.provider import get_provider  # noqa: E402
from hacloud.spec.load import load_spec  # noqa: E402
from hacloud.spec.workspace import Workspace  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    api.CREDENTIAL_FACTORY = StaticToken
    with tempfile.TemporaryDirectory() as tmp:
        fake = FakeArm(Path(tmp))
        os.environ["REQUESTS_CA_BUNDLE"] = str(fake.cert)
        provider = get_provider("azure")
        times: dict[str, list[float]] = {}
        calls: dict[str, Counter[str]] = {}
        for r in range(rounds):
            fake.reset()
            doc = yaml.safe_load((ROOT / "templates/init/azure.yaml").read_text())
            doc["provider"]["options"].update(
                subscription_id=SUBSCRIPTION,
                resource_group=RG,
                subnet_id=SUBNET_ID,
                arm_endpoint=fake.url,
                ssh_public_key="admin.pub",
            )
            doc["vip"]["address"] = "192.0.2.100"
            doc["fencing"][0]["cloud"] = "public"  # the fake stands in for public ARM
            where = Path(tmp) / f"r{r}"
            where.mkdir()
            (where / "admin.pub").write_text(KEY)
            (where / "hacloud.yaml").write_text(yaml.safe_dump(doc))
            ws = Workspace(load_spec(where / "hacloud.yaml"), where / "hacloud.yaml")
            steps = {
                "up (create)": lambda ws=ws: provider.ensure_nodes(ws),
                "up (re-run, 0 changes)": lambda ws=ws: provider.ensure_nodes(ws),
                "discover": lambda ws=ws: provider.discover(ws),
                "check --live": lambda ws=ws: provider.live_audit(ws, provider.ensure_nodes(ws)),
                "down": lambda ws=ws: provider.teardown(ws, delete_volumes=True),
            }
            dropin = Path(tmp) / f"d{r}"
            dropin.mkdir()
            (dropin / "admin.pub").write_text(KEY)
            doc["nodes"] = [{"name": "node1", "id": "tf1"}, {"name": "node2", "id": "tf2"}]
            (dropin / "hacloud.yaml").write_text(yaml.safe_dump(doc))
            dws = Workspace(load_spec(dropin / "hacloud.yaml"), dropin / "hacloud.yaml")
            inv = provider.planned_inventory(dws.spec)
            steps.update(
                {
                    "drop-in: Terraform's VMs": lambda: [
                        someone_elses_vm(fake, n, z, identity=True) for n, z in (("tf1", "1"), ("tf2", "2"))
                    ],
                    "drop-in adopt (role)": lambda ws=dws, inv=inv: provider.adopt(ws, inv),
                    "drop-in adopt (re-run)": lambda ws=dws, inv=inv: provider.adopt(ws, inv),
                    "drop-in release": lambda ws=dws, inv=inv: provider.release(ws, inv),
                }
            )
            for name, step in steps.items():
                fake.requests.clear()
                start = time.perf_counter()
                step()
                times.setdefault(name, []).append(time.perf_counter() - start)
                calls[name] = Counter(f"{q.method} {q.op_id}" for q in fake.requests)
        fake.close()
    print(
        f"{'step':24} {'median s':>9} {'requests':>9} {'writes':>7}  (fake ARM on loopback, {rounds} rounds)"
    )
    for name, values in times.items():
        writes = sum(n for k, n in calls[name].items() if not k.startswith("GET"))
        print(f"{name:24} {statistics.median(values):9.3f} {sum(calls[name].values()):9d} {writes:7d}")


if __name__ == "__main__":
    main()
