"""Spec loading: valid examples load; bad input yields every problem with path, line and fix,
never a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import REPO, onprem_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacloud.errors import SpecError
from hacloud.spec.load import parse_spec
from hacloud.spec.model import PROVIDER_KINDS, json_schema

EXAMPLES = REPO / "templates" / "init"


def problems(text: str) -> list[tuple[str, int | None, str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "t.yaml")
    return [(p.path, p.line, p.message, p.remedy) for p in info.value.problems]


@pytest.mark.parametrize("provider", PROVIDER_KINDS)
def test_examples_load_and_match_the_json_schema(provider: str) -> None:
    text = (EXAMPLES / f"{provider}.yaml").read_text()
    spec = parse_spec(text, f"{provider}.yaml")
    assert spec.provider.kind == provider
    # An independent validator (jsonschema) agrees with pydantic on the published schema.
    jsonschema.Draft202012Validator(json_schema()).validate(yaml.safe_load(text))


def test_every_problem_is_reported_at_once_with_lines() -> None:
    text = """\
version: 1
cluster: {name: Bad_Name}
provider: {kind: onprem, colour: blue}
nodes:
  - {name: a, address: 192.0.2.1, volumes: {r0: /dev/sdb}}
  - {name: a, address: not-an-ip, volumes: {r0: /dev/sdb}}
vip: {kind: IPaddr2, address: 192.0.2.50, cidr_netmask: 64}
fencing:
  - {kind: fence_ipmilan, nodes: {a: {ip: 192.0.2.9, username: u}}}
overrides: {corosync.tokn: 1}
"""
    found = problems(text)
    paths = {p for p, *_ in found}
    assert {
        "cluster.name",
        "provider.colour",
        "nodes[1].address",
        "nodes[1].name",
        "vip.cidr_netmask",
        "overrides.corosync.tokn",
        "fencing[0].nodes.a",
    } <= paths
    lines = {p: line for p, line, *_ in found}
    assert lines["cluster.name"] == 2 and lines["provider.colour"] == 3 and lines["vip.cidr_netmask"] == 7
    for path, _, message, remedy in found:
        assert message and remedy, path
    colour = next(r for p, _, _, r in found if p == "provider.colour")
    assert "valid keys here: kind" in colour


def test_unknown_key_suggests_the_close_one() -> None:
    doc = onprem_doc()
    doc["vip"]["adress"] = doc["vip"].pop("address")
    found = problems(yaml.safe_dump(doc))
    assert any(p == "vip.adress" and "did you mean `address`" in r for p, _, _, r in found)
    assert any(p == "vip.address" and "add `address:`" in r for p, _, _, r in found)


def test_duplicate_keys_are_an_error() -> None:
    text = yaml.safe_dump(onprem_doc()) + "cluster: {name: other}\n"
    found = problems(text)
    assert any("duplicate key" in m for _, _, m, _ in found)


@pytest.mark.parametrize("text", ["", "just a string", "- a\n- b\n", "a: [1,\n", "\t- x: :\n", "{"])
def test_malformed_documents(text: str) -> None:
    found = problems(text)
    assert found and all(r for *_, r in found)


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (lambda d: d["nodes"].pop(), "nodes", "exactly two"),
        (lambda d: d["nodes"][0].pop("address"), "nodes[0]", "address"),
        (lambda d: d.update(fencing=[d["fencing"][0], d["fencing"][0]]), "fencing[1].kind", "twice"),
        (lambda d: d["fencing"][0]["nodes"].pop("node2"), "fencing[0].nodes", "node2"),
        (lambda d: d["nodes"][1]["volumes"].clear(), "nodes[1]", "r0"),
        (lambda d: d.update(vip={"kind": "IPaddr2", "address": "192.0.2.11"}), "vip.address", "free address"),
        (
            lambda d: d.update(fencing=[{"kind": "sbd", "devices": ["/dev/a", "/dev/b"]}]),
            "fencing[0].devices",
            "three",
        ),
        (
            lambda d: d["volumes"].append({"name": "r0", "mount_point": "/srv/x"}),
            "volumes[1].name",
            "own name",
        ),
        (lambda d: d["volumes"][0].update(mount_point="/var"), "volumes[0].mount_point", "own directory"),
        (lambda d: d.update(overrides={"corosync.token": "fast"}), "overrides.corosync.token", "5000"),
        (lambda d: d["nodes"][1].update(links=["192.0.2.12"]), "nodes[1].links", "same order"),
        (
            lambda d: d["fencing"][0]["nodes"]["node1"].update(password_env="X"),
            "fencing[0].nodes.node1",
            "exactly one",
        ),
    ],
)
def test_cross_field_rules(mutate: Any, path: str, fragment: str) -> None:
    doc = onprem_doc()
    mutate(doc)
    found = problems(yaml.safe_dump(doc))
    assert any(p == path and (fragment in m or fragment in r) for p, _, m, r in found), found


@pytest.mark.parametrize(
    ("provider", "fencing", "vip", "path"),
    [
        ("aws", "fence_ipmilan", "aws-vpc-move-ip", "fencing[0].kind"),
        ("azure", "fence_azure_arm", "IPaddr2", "vip.kind"),
        ("lab", "fence_aws", "IPaddr2", "fencing[0].kind"),
    ],
)
def test_kinds_must_fit_the_provider(provider: str, fencing: str, vip: str, path: str) -> None:
    from conftest import fencing_block, vip_block

    doc = yaml.safe_load((EXAMPLES / f"{provider}.yaml").read_text())
    doc["fencing"] = [fencing_block(fencing)]
    doc["vip"] = vip_block(vip)
    assert path in {p for p, *_ in problems(yaml.safe_dump(doc))}


def test_lab_addresses_stay_in_the_lab_networks() -> None:
    doc = yaml.safe_load((EXAMPLES / "lab.yaml").read_text())
    doc["nodes"][0]["links"][1] = "192.0.2.99"
    doc["vip"]["address"] = "10.0.0.1"
    paths = {p for p, *_ in problems(yaml.safe_dump(doc))}
    assert {"nodes[0].links[1]", "vip.address"} <= paths


def test_cli_bad_spec_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "hacloud.yaml"
    bad.write_text("version: 1\ncluster: {name: x}\nnodes: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", "check", "-f", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "hacloud.yaml:3: nodes:" in proc.stderr


def test_schema_command_prints_the_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", "schema"], capture_output=True, text=True, timeout=60
    )
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) >= {"cluster", "provider", "nodes", "vip", "fencing"}


# ---------------------------------------------------------------- fuzzing

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=12)
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
BASE = onprem_doc()


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


PATHS = [p for p in _paths(BASE) if p]


def _load_or_report(text: str) -> None:
    try:
        parse_spec(text, "fuzz.yaml")
    except SpecError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.message and p.remedy
            assert p.line is None or p.line >= 1
        assert exc.report()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), trees, st.booleans())
def test_fuzz_mutated_specs_never_traceback(path: tuple[Any, ...], value: Any, delete: bool) -> None:
    doc = copy.deepcopy(BASE)
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    _load_or_report(yaml.safe_dump(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_never_tracebacks(text: str) -> None:
    _load_or_report(text)


@settings(max_examples=200, deadline=None)
@given(trees)
def test_fuzz_arbitrary_documents_never_traceback(tree: Any) -> None:
    _load_or_report(yaml.safe_dump(tree))


@pytest.mark.parametrize(("region", "bad"), [("eu-west-1", True), ("eu-central-1", False), (None, False)])
def test_fence_aws_region_must_be_the_providers(region: str | None, bad: bool) -> None:
    """fence_aws finds the instances only in the region they live in (provider.options.region):
    a different fencing region is refused naming both fields and the fix (issue 15 item 12)."""
    doc = yaml.safe_load((EXAMPLES / "aws.yaml").read_text())
    if region:
        doc["fencing"][0]["region"] = region
    if not bad:
        assert parse_spec(yaml.safe_dump(doc), "t.yaml").fencing[0].kind == "fence_aws"
        return
    found = [(m, r) for p, _, m, r in problems(yaml.safe_dump(doc)) if p == "fencing[0].region"]
    assert len(found) == 1, found
    message, remedy = found[0]
    assert "eu-west-1" in message and "provider.options.region" in message and "eu-central-1" in message
    assert "remove `region:`" in remedy


def test_cli_refuses_a_region_mismatch_with_exit_2(tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "aws.yaml").read_text())
    doc["fencing"][0]["region"] = "us-east-1"
    spec = tmp_path / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", "check", "-f", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "fencing[0].region" in proc.stderr and "provider.options.region" in proc.stderr
