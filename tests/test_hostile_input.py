"""Malformed and hostile specs, inventories and Terraform inputs (issue 16, item 7): each one is a
listed problem naming where it is, exit 2, no traceback, quickly -- run as a user runs the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile import AZURE_CASES, INVENTORY_CHANGES, INVENTORY_RAW, SPEC_CASES, TERRAFORM_CASES

from hacloud.errors import SpecError
from hacloud.spec.load import parse_spec

#: Generous: the CLI's own start-up is ~0.4 s here; bench/hostile_input.py has the numbers.
BOUND = 5.0


def hacloud(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HACLOUD_TERRAFORM": "/nonexistent"},
    )
    return proc, time.monotonic() - start


def refused(proc: subprocess.CompletedProcess[str], seconds: float, filename: str, mention: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert filename in proc.stderr and mention in proc.stderr, proc.stderr
    assert "fix:" in proc.stderr
    assert seconds < BOUND


@pytest.mark.parametrize(("name", "content", "mention"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_hostile_spec_is_a_listed_problem(tmp_path: Path, name: str, content: bytes, mention: str) -> None:
    (tmp_path / "bad.yaml").write_bytes(content)
    for command in ("check", "render"):
        extra = ["--out", str(tmp_path / "out")] if command == "render" else []
        proc, seconds = hacloud(tmp_path, command, "-f", "bad.yaml", *extra)
        refused(proc, seconds, "bad.yaml", mention)
    assert not (tmp_path / "out").exists()


def test_alias_bomb_costs_milliseconds_not_minutes() -> None:
    """Ten lines, 9**10 values once expanded: refused from the node graph, never expanded."""
    bomb = next(c for n, c, _ in SPEC_CASES if n == "alias-bomb").decode()
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        parse_spec(bomb)
    assert time.perf_counter() - start < 1.0
    assert err.value.problems[0].line is not None


def test_aliases_that_do_not_explode_still_work() -> None:
    """A legitimate anchor reused a few times is fine (and duplicate keys under it are found once)."""
    text = (Path(__file__).parent.parent / "templates/init/lab.yaml").read_text()
    text += "\nx-common: &c {a: 1, a: 2}\nx-more: [*c, *c, *c]\n"
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    messages = [p.message for p in err.value.problems]
    assert sum("duplicate key" in m for m in messages) == 1, messages


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("inv")
    assert hacloud(root, "init", "--provider", "lab")[0].returncode == 0
    proc, _ = hacloud(root, "render", "--out", "out")
    assert proc.returncode == 0, proc.stderr
    return root, json.loads((root / "out/inventory.json").read_text())


@pytest.mark.parametrize(
    ("name", "change", "mention"), INVENTORY_CHANGES, ids=[c[0] for c in INVENTORY_CHANGES]
)
def test_malformed_inventory_is_a_listed_problem(
    lab_inventory: tuple[Path, dict[str, Any]], tmp_path: Path, name: str, change: Any, mention: str
) -> None:
    root, good = lab_inventory
    doc = json.loads(json.dumps(good))
    change(doc)
    (tmp_path / "inv.json").write_text(json.dumps(doc))
    proc, seconds = hacloud(
        root, "render", "--out", str(tmp_path / "out"), "--inventory", str(tmp_path / "inv.json")
    )
    refused(proc, seconds, "inv.json" if name != "facts-version" else "inventory", mention)


@pytest.mark.parametrize(("name", "content", "mention"), INVENTORY_RAW, ids=[c[0] for c in INVENTORY_RAW])
def test_hostile_inventory_file_is_a_listed_problem(
    lab_inventory: tuple[Path, dict[str, Any]], tmp_path: Path, name: str, content: bytes, mention: str
) -> None:
    root, _ = lab_inventory
    (tmp_path / "inv.json").write_bytes(content)
    proc, seconds = hacloud(root, "check", "--inventory", str(tmp_path / "inv.json"))
    refused(proc, seconds, "inv.json", mention)


def test_invalid_version_override_is_a_listed_problem(tmp_path: Path) -> None:
    assert hacloud(tmp_path, "init", "--provider", "lab")[0].returncode == 0
    spec = tmp_path / "hacloud.yaml"
    spec.write_text(spec.read_text() + '\noverrides: {platform.pacemaker: "2.x"}\n')
    proc, seconds = hacloud(tmp_path, "check")
    refused(proc, seconds, "", "platform.pacemaker")


@pytest.fixture(scope="module")
def aws_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tf")
    assert hacloud(root, "init", "--provider", "aws")[0].returncode == 0
    return root


def test_the_well_formed_state_is_read(aws_spec: Path, tmp_path: Path) -> None:
    """The cases below differ from this one by one malformation each."""
    from hostile import AWS_STATE

    (tmp_path / "state.json").write_text(json.dumps(AWS_STATE))
    proc, _ = hacloud(
        aws_spec, "render", "--out", str(tmp_path / "out"), "--from-terraform", str(tmp_path / "state.json")
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("name", "content", "mention"), TERRAFORM_CASES, ids=[c[0] for c in TERRAFORM_CASES])
def test_malformed_terraform_input_is_a_listed_problem(
    aws_spec: Path, tmp_path: Path, name: str, content: bytes, mention: str
) -> None:
    (tmp_path / "state.json").write_bytes(content)
    proc, seconds = hacloud(
        aws_spec, "render", "--out", str(tmp_path / "out"), "--from-terraform", str(tmp_path / "state.json")
    )
    refused(proc, seconds, "state.json", mention)


@pytest.fixture(scope="module")
def azure_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tfaz")
    assert hacloud(root, "init", "--provider", "azure")[0].returncode == 0
    (root / "admin.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHacloudTestKeyOnlyForParsingxxxxxxxxxxxxx test\n"
    )
    return root


def test_the_well_formed_azure_state_is_read(azure_spec: Path, tmp_path: Path) -> None:
    from hostile import AZURE_STATE

    (tmp_path / "state.json").write_text(json.dumps(AZURE_STATE))
    proc, _ = hacloud(
        azure_spec, "render", "--out", str(tmp_path / "out"), "--from-terraform", str(tmp_path / "state.json")
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("name", "content", "mention"), AZURE_CASES, ids=[c[0] for c in AZURE_CASES])
def test_malformed_azure_state_attributes_are_a_listed_problem(
    azure_spec: Path, tmp_path: Path, name: str, content: bytes, mention: str
) -> None:
    (tmp_path / "state.json").write_bytes(content)
    proc, seconds = hacloud(
        azure_spec, "render", "--out", str(tmp_path / "out"), "--from-terraform", str(tmp_path / "state.json")
    )
    refused(proc, seconds, "state.json", mention)
