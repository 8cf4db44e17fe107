"""The CLI end to end, as a user runs it (subprocesses, real files)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PROVIDERS = ["lab", "onprem", "aws", "azure"]


def hacloud(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert hacloud("init", "--provider", "lab", cwd=tmp_path).returncode == 0
    before = (tmp_path / "hacloud.yaml").read_text()
    (tmp_path / "hacloud.yaml").write_text("mine\n")
    proc = hacloud("init", "--provider", "aws", cwd=tmp_path)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (tmp_path / "hacloud.yaml").read_text() == "mine\n"
    assert hacloud("init", "--provider", "lab", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "hacloud.yaml").read_text() == before
    assert hacloud("init", "--provider", "gcp", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_init_render_check_for_each_provider(provider: str, tmp_path: Path) -> None:
    spec = tmp_path / f"{provider}.yaml"
    assert hacloud("init", "--provider", provider, "--out", str(spec), cwd=tmp_path).returncode == 0
    proc = hacloud("render", "-f", str(spec), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert (out / "cib.xml").read_text().startswith("<!-- Managed by hacloud")
    inventory = json.loads((out / "inventory.json").read_text())
    assert [n["name"] for n in inventory["nodes"]] == ["node1", "node2"] or provider == "onprem"
    for node in inventory["nodes"]:
        root = out / node["name"]
        assert stat.S_IMODE((root / "etc/corosync/authkey").stat().st_mode) == 0o400
        assert stat.S_IMODE((root / "etc/drbd.d/r0.res").stat().st_mode) == 0o600
        assert (root / "etc/corosync/corosync.conf").read_text().startswith("# Managed by hacloud")
    check = hacloud("check", "-f", str(spec), "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert all(f["severity"] != "error" for f in json.loads(check.stdout))


def test_secrets_never_reach_the_terminal(tmp_path: Path) -> None:
    hacloud("init", "--provider", "lab", cwd=tmp_path)
    bmc = tmp_path / ".hacloud" / "demo"
    bmc.mkdir(parents=True)
    for node in ("node1", "node2"):
        (bmc / f"bmc-{node}.secret").write_text(f"bmc-password-{node}\n")
        (bmc / f"bmc-{node}.secret").chmod(0o600)  # hacloud refuses a password others can read
    proc = hacloud("render", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    secrets = json.loads((bmc / "secrets.json").read_text())
    assert stat.S_IMODE((bmc / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(bmc.stat().st_mode) == 0o700
    shown = proc.stdout + proc.stderr + hacloud("check", cwd=tmp_path).stdout
    for secret in (secrets["drbd_secret"], secrets["corosync_authkey"], "bmc-password-node1"):
        assert secret not in shown
    # ...but they are where the nodes need them, and only there.
    node1 = tmp_path / "out" / "node1"
    assert secrets["drbd_secret"] in (node1 / "etc/drbd.d/r0.res").read_text()
    pw = node1 / "etc/hacloud/fencing/node2.secret"
    assert pw.read_text() == "bmc-password-node2\n" and stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert "bmc-password" not in (tmp_path / "out" / "cib.xml").read_text()
    # a second render reuses the same secrets: byte-identical output
    first = (node1 / "etc/corosync/authkey").read_bytes()
    assert hacloud("render", "--out", str(tmp_path / "out"), cwd=tmp_path).returncode == 0
    assert (node1 / "etc/corosync/authkey").read_bytes() == first


def test_render_refuses_foreign_directory_and_keeps_old_output(tmp_path: Path) -> None:
    hacloud("init", "--provider", "onprem", cwd=tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = hacloud("render", "--out", str(foreign), cwd=tmp_path)
    assert proc.returncode == 2 and (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    assert hacloud("render", "--out", str(out), cwd=tmp_path).returncode == 0
    cib = (out / "cib.xml").read_text()
    # A spec that no longer validates leaves the previous render untouched.
    (tmp_path / "hacloud.yaml").write_text((tmp_path / "hacloud.yaml").read_text() + "bogus: 1\n")
    assert hacloud("render", "--out", str(out), cwd=tmp_path).returncode == 2
    assert (out / "cib.xml").read_text() == cib
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_secrets_file_with_loose_mode_is_refused(tmp_path: Path) -> None:
    hacloud("init", "--provider", "onprem", cwd=tmp_path)
    assert hacloud("render", "--out", str(tmp_path / "o"), cwd=tmp_path).returncode == 0
    secrets = tmp_path / ".hacloud" / "prod-db" / "secrets.json"
    secrets.chmod(0o644)
    proc = hacloud("render", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 1 and "chmod 600" in proc.stderr


def test_render_with_an_inventory(tmp_path: Path) -> None:
    hacloud("init", "--provider", "aws", cwd=tmp_path)
    assert hacloud("render", "--out", str(tmp_path / "plan"), cwd=tmp_path).returncode == 0
    inv = json.loads((tmp_path / "plan" / "inventory.json").read_text())
    for i, node in enumerate(inv["nodes"]):
        node.update(
            id=f"i-0abc{i}def012345678",  # i- and 17 hex digits, as EC2 ids are
            ssh_address=f"192.0.2.{31 + i}",
            links=[f"192.0.2.{31 + i}"],
            replication_address=f"192.0.2.{31 + i}",
            volumes={"r0": f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc{i}"},
            zone=f"eu-central-1{'ab'[i]}",
            placeholder=False,
        )
    (tmp_path / "inv.json").write_text(json.dumps(inv))
    proc = hacloud("render", "--inventory", "inv.json", "--out", str(tmp_path / "real"), cwd=tmp_path)
    assert proc.returncode == 0 and "placeholder" not in proc.stderr
    cib = (tmp_path / "real" / "cib.xml").read_text()
    assert 'value="node1:i-0abc0def012345678"' in cib
    assert "vol0abc1" in (tmp_path / "real/node2/etc/drbd.d/r0.res").read_text()
    # a wrong inventory is a clear error naming the path
    inv["nodes"][0]["name"] = "other"
    inv["nodes"][1]["links"] = "x"
    (tmp_path / "bad.json").write_text(json.dumps(inv))
    proc = hacloud("render", "--inventory", "bad.json", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert proc.returncode == 2 and "nodes[1].links" in proc.stderr


def test_profile_command_shows_sources(tmp_path: Path) -> None:
    proc = hacloud("profile", "aws", "--json", cwd=tmp_path)
    values = json.loads(proc.stdout)
    assert values["corosync.token"]["value"] == 30000 and values["corosync.token"]["source"]
    assert hacloud("profile", "nope", cwd=tmp_path).returncode == 2  # a bad command line


def test_inventory_schema_file_is_current() -> None:
    from hacloud.spec.inventory import inventory_json_schema

    committed = json.loads((REPO / "docs" / "inventory.schema.json").read_text())
    assert committed == inventory_json_schema(), (
        "run: hacloud schema --inventory > docs/inventory.schema.json"
    )
