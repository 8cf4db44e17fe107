"""Stable error codes of the spec, render and invariant stages (HAC205-HAC249).

Every raise site of a HacloudError (or a subclass) in hacloud/spec, hacloud/render and the
invariants carries its own code from the stage's range; each code below is provoked the way a
user meets it (real files, real permissions, the real loader and renderer) and asserted by code,
not by wording.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from conftest import REPO, onprem_doc, spec_of

from hacloud.errors import HacloudError
from hacloud.provision.provider import get_provider
from hacloud.render import env
from hacloud.render.resources import vip_interface
from hacloud.render.versions import parse_version, resolve_targets
from hacloud.spec.inventory import Inventory
from hacloud.spec.inventory_file import load_inventory
from hacloud.spec.load import load_spec, parse_spec
from hacloud.spec.profiles import load_profile
from hacloud.spec.secrets import check_private, load_or_create, read_secret_file
from hacloud.spec.workspace import check_owner

STAGE_FILES = [
    *sorted((REPO / "hacloud/spec").glob("*.py")),
    *sorted((REPO / "hacloud/render").glob("*.py")),
    *sorted((REPO / "hacloud/verify/invariants").glob("*.py")),
    REPO / "hacloud/verify/drbdconf.py",
]
ERRORS = {"HacloudError", "SpecError", "UsageError", "UnsafeValue", "ProviderUnavailable", "_refuse"}
RANGE = re.compile(r"^HAC2(0[5-9]|[1-4]\d)$")


def _code_sites() -> tuple[list[str], list[tuple[str, str]]]:
    """(raise sites without a code, (site, literal code) of every coded site) in STAGE_FILES."""
    missing: list[str] = []
    coded: list[tuple[str, str]] = []
    for path in STAGE_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            call = node.exc if isinstance(node, ast.Raise) else node if isinstance(node, ast.Call) else None
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            site = f"{path.relative_to(REPO)}:{call.lineno}"
            if call.func.id == "_guard":  # an escaper's refusal: its code is the 4th argument
                arg = call.args[3] if len(call.args) > 3 else None
                coded.append((site, arg.value if isinstance(arg, ast.Constant) else ""))
                continue
            if not isinstance(node, ast.Raise) or call.func.id not in ERRORS:
                continue
            code = next((k.value for k in call.keywords if k.arg == "code"), None)
            if code is None:
                missing.append(site)
            elif isinstance(code, ast.Constant):
                coded.append((site, str(code.value)))
            elif ast.unparse(code) not in ("exc.code", "code"):
                # a re-raise keeps the caught error's code; `code` is a parameter whose literal
                # values are checked where it is passed (the _guard calls)
                missing.append(f"{site} (code is {ast.unparse(code)})")
    return missing, coded


def test_every_raise_site_has_its_own_code_from_the_stage_range() -> None:
    missing, coded = _code_sites()
    assert not missing, f"raise sites without a code: {missing}"
    assert len(coded) >= 20, coded  # the scan found the sites (a broken scan finds none)
    outside = [(s, c) for s, c in coded if not RANGE.match(c)]
    assert not outside, f"codes outside HAC205-HAC249: {outside}"
    codes = [c for _, c in coded]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    assert not twice, f"codes used by more than one site: {twice}"


# ---------------------------------------------------------------- spec and its inputs


def _code(excinfo: pytest.ExceptionInfo[HacloudError]) -> str:
    return excinfo.value.code


def test_spec_file_errors_carry_their_codes(tmp_path: Path) -> None:
    with pytest.raises(HacloudError) as missing:
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(HacloudError) as unreadable:
        load_spec(tmp_path)  # a directory: read_text raises IsADirectoryError
    with pytest.raises(HacloudError) as empty:
        parse_spec("", "empty.yaml")
    with pytest.raises(HacloudError) as listed:
        parse_spec("- a\n- b\n", "list.yaml")
    with pytest.raises(HacloudError) as invalid:
        parse_spec("version: 1\ncluster: {name: t}\nbogus: 1\n", "bad.yaml")
    assert [_code(e) for e in (missing, unreadable, empty, listed, invalid)] == [
        "HAC208",
        "HAC209",
        "HAC205",
        "HAC206",
        "HAC207",
    ]
    assert all(e.value.exit_code == 2 for e in (missing, unreadable, empty, listed, invalid))


def test_inventory_errors_carry_their_codes(tmp_path: Path) -> None:
    with pytest.raises(HacloudError) as unreadable:
        load_inventory(tmp_path / "absent.json")
    assert unreadable.value.code == "HAC210"
    from hacloud.spec.inventory_file import check_inventory_matches

    spec = spec_of(onprem_doc())
    inv = get_provider("onprem").planned_inventory(spec)
    other = dataclasses.replace(inv, cluster="another")
    with pytest.raises(HacloudError) as mismatch:
        check_inventory_matches(spec, other, "inv.json")
    assert mismatch.value.code == "HAC211"


def test_secret_file_errors_carry_their_codes(tmp_path: Path) -> None:
    shared = tmp_path / "shared.secret"
    shared.write_text("pw\n")
    shared.chmod(0o644)  # the real mode bits, as stat(2) reports them
    with pytest.raises(HacloudError) as exposed:
        check_private(shared, "a BMC password", "it exposed")
    binary = tmp_path / "binary.secret"
    binary.write_bytes(b"\xff\xfe\x00")
    binary.chmod(0o600)
    with pytest.raises(HacloudError) as unreadable:
        read_secret_file(binary, "a BMC password")
    state = tmp_path / "state"
    state.mkdir()
    damaged = state / "secrets.json"
    damaged.write_text("{not json")
    damaged.chmod(0o600)
    with pytest.raises(HacloudError) as broken:
        load_or_create(state)
    assert [_code(e) for e in (exposed, unreadable, broken)] == ["HAC213", "HAC214", "HAC215"]
    assert damaged.read_text() == "{not json"  # never overwritten


def test_state_dir_of_another_spec_is_HAC216(tmp_path: Path) -> None:
    from hacloud.spec.workspace import record_owner

    state = tmp_path / ".hacloud" / "test"
    state.mkdir(parents=True)
    record_owner(state, tmp_path / "first.yaml")
    with pytest.raises(HacloudError) as other:
        check_owner(state, tmp_path / "second.yaml")
    assert other.value.code == "HAC216"


# ---------------------------------------------------------------- render


def _inventory_with(spec_doc: dict[str, object], **facts: object) -> tuple[object, Inventory]:
    spec = spec_of(spec_doc)
    inv = get_provider("onprem").planned_inventory(spec)
    nodes = tuple(
        dataclasses.replace(n, facts=dataclasses.replace(n.facts, **{k: v[i] for k, v in facts.items()}))  # type: ignore[index]
        for i, n in enumerate(inv.nodes)
    )
    return spec, dataclasses.replace(inv, nodes=nodes)


def test_target_errors_carry_their_codes() -> None:
    with pytest.raises(HacloudError) as version:
        parse_version("2.x", "targets.pacemaker")
    spec, mixed = _inventory_with(onprem_doc(), drbd=("8.4", "9"))
    with pytest.raises(HacloudError) as generations:
        resolve_targets(spec, mixed, load_profile("onprem"))  # type: ignore[arg-type]
    spec, old = _inventory_with(onprem_doc(), pacemaker=("2.0.3", "2.1.5"))
    with pytest.raises(HacloudError) as too_old:
        resolve_targets(spec, old, load_profile("onprem"))  # type: ignore[arg-type]
    assert [_code(e) for e in (version, generations, too_old)] == ["HAC220", "HAC221", "HAC222"]


def test_differing_primary_interfaces_are_HAC223() -> None:
    spec, inv = _inventory_with(onprem_doc(vip="aws-vpc-move-ip"), primary_interface=("ens5", "eth0"))
    with pytest.raises(HacloudError) as differ:
        vip_interface(spec, inv)  # type: ignore[arg-type]
    assert differ.value.code == "HAC223"


@pytest.mark.parametrize(
    ("escape", "value", "code"),
    [
        (env.xml_text, "a\x01b", "HAC225"),
        (env.drbd_string, "a\nb", "HAC226"),
        (env.comment, "a\nb", "HAC227"),
        (env.sh_quote, "a\x00b", "HAC228"),
    ],
)
def test_each_escaper_refuses_with_its_code(escape: object, value: str, code: str) -> None:
    with pytest.raises(HacloudError) as refused:
        escape(value)  # type: ignore[operator]
    assert refused.value.code == code
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(
    ("dialect", "value", "code"),
    [("shell", "a;b", "HAC229"), ("drbd", "a; b", "HAC230"), ("line", "a\nb", "HAC231")],
)
def test_each_template_dialect_refuses_with_its_code(dialect: str, value: str, code: str) -> None:
    with pytest.raises(HacloudError) as refused:
        env.environment(dialect).from_string("x {{ v }}").render(v=value)
    assert refused.value.code == code


def test_a_template_refusal_keeps_its_code() -> None:
    with pytest.raises(HacloudError) as refused:  # a real template, a value no grammar allowed
        env.render_template(
            "os/sysctl.conf.j2", profile="lab", sysctl=[("kernel.x", "1\nkernel.core_pattern = |/bin/sh")]
        )
    assert refused.value.code == "HAC231"
    assert refused.value.message.startswith("os/sysctl.conf.j2: ")
