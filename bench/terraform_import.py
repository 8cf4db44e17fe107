"""Benchmark: `--from-terraform` import time per kind of PATH (saved outputs, state file,
directory through the terraform binary) and for a state read by resources, on fixtures the
real Terraform binary applies first (prints numbers, asserts nothing).

Run: .venv/bin/python bench/terraform_import.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import tftools  # noqa: E402
from test_terraform import WORLD  # noqa: E402

from hacloud.provision.provider import get_provider  # noqa: E402
from hacloud.provision.terraform import TerraformSource, import_inventory  # noqa: E402
from hacloud.spec.load import load_spec  # noqa: E402


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "world.json").write_text(json.dumps(WORLD))
        env = tftools.setup_mirror(root)
        env["HACLOUD_TFSTANDIN_WORLD"] = str(root / "world.json")
        shutil.copytree(ROOT / "terraform" / "modules", root / "modules")
        applied = {}
        for name in ("aws-module", "aws-plain"):
            shutil.copytree(ROOT / "tests" / "data" / "terraform" / name, root / name)
            start = time.perf_counter()
            applied[name] = tftools.apply(env, root / name)
            print(f"terraform init+apply {name:11}: {time.perf_counter() - start:6.2f} s")
        doc = yaml.safe_load((ROOT / "templates" / "init" / "aws.yaml").read_text())
        doc["provider"]["options"]["region"] = "eu-central-1"
        doc["vip"].update(address="198.51.100.10", route_tables=["rtb-0aaaaaaaaaaaaaaa1"])
        spec_path = root / "hacloud.yaml"
        spec_path.write_text(yaml.safe_dump(doc))
        spec = load_spec(spec_path)
        ids = [
            i["attributes"]["id"]
            for r in json.loads(applied["aws-plain"][1].read_text())["resources"]
            if r["type"] == "aws_instance" and r["name"] == "db"
            for i in r["instances"]
        ]
        doc["nodes"] = [{"name": f"node{k + 1}", "id": ids[k]} for k in range(2)]
        (root / "plain.yaml").write_text(yaml.safe_dump(doc))
        plain = load_spec(root / "plain.yaml")
        os.environ.update(
            TF_CLI_CONFIG_FILE=env["TF_CLI_CONFIG_FILE"], HACLOUD_TERRAFORM=str(tftools.terraform())
        )
        provider = get_provider("aws")
        cases = {
            "module outputs.json": (spec, applied["aws-module"][0]),
            "module terraform.tfstate": (spec, applied["aws-module"][1]),
            "module dir (terraform output)": (spec, root / "aws-module"),
            "plain state, 3 instances": (plain, applied["aws-plain"][1]),
        }
        for label, (s, path) in cases.items():
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                import_inventory(s, TerraformSource(path), provider)
                times.append(time.perf_counter() - start)
            med, top = statistics.median(times) * 1000, max(times) * 1000
            print(f"import {label:30}: median {med:7.1f} ms  max {top:7.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
