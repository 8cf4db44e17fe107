"""Each cross-layer invariant: one input that breaks it, one that satisfies it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import onprem_doc, render_doc

from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile
from hacloud.spec.inventory import RenderedFile
from hacloud.spec.profiles import load_profile
from hacloud.verify.invariants import run_checks

Mutation = Callable[[Bundle], Bundle]


def findings(doc: dict[str, Any], mutate: Mutation | None = None) -> dict[str, set[str]]:
    spec, bundle = render_doc(doc)
    if mutate:
        bundle = mutate(bundle)
    inventory = get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    out: dict[str, set[str]] = {}
    for f in run_checks(spec, inventory, profile, bundle):
        assert f.message and f.source
        assert f.severity == "ok" or f.remedy
        out.setdefault(f.code, set()).add(f.severity)
    return out


def cib(fn: Callable[[str], str]) -> Mutation:
    return lambda b: dataclasses.replace(b, cib=fn(b.cib))


def node_file(suffix: str, fn: Callable[[str], str]) -> Mutation:
    def apply(b: Bundle) -> Bundle:
        files = {
            node: tuple(
                dataclasses.replace(f, content=fn(f.content.decode()).encode())
                if f.path.endswith(suffix)
                else f
                for f in fs
            )
            for node, fs in b.files.items()
        }
        return dataclasses.replace(b, files=files)

    return apply


def doc_with(**changes: Any) -> dict[str, Any]:
    doc = onprem_doc(
        changes.pop("fencing", "fence_ipmilan"),
        changes.pop("vip", "IPaddr2"),
        changes.pop("profile", None),
        changes.pop("links", 2),
    )
    doc.update(changes)
    return doc


CASES: list[tuple[str, str, dict[str, Any], Mutation | None, dict[str, Any]]] = [
    # code, severity when broken, broken spec changes, mutation, fixed spec changes
    ("HAC001", "error", {"overrides": {"corosync.consensus": 5500}}, None, {}),
    (
        "HAC002",
        "warning",
        {"profile": "aws", "overrides": {"corosync.token": 5000, "corosync.consensus": 6000}},
        None,
        {"profile": "aws"},
    ),
    ("HAC010", "error", {"overrides": {"pacemaker.priority_fencing_delay": 9}}, None, {}),
    ("HAC011", "error", {"overrides": {"pacemaker.stonith_timeout": 60}}, None, {}),
    (
        "HAC012",
        "error",
        {
            "fencing": "sbd",
            "overrides": {
                "pacemaker.stonith_timeout_sbd": 60,
                "pacemaker.stonith_timeout": 60,
                "fencing.reboot_timeout": 60,
            },
        },
        None,
        {"fencing": "sbd"},
    ),
    ("HAC013", "error", {"fencing": "sbd", "overrides": {"sbd.msgwait": 20}}, None, {"fencing": "sbd"}),
    (
        "HAC014",
        "error",
        {"fencing": "sbd"},
        node_file(
            "sbd.service.d/hacloud.conf", lambda t: re.sub(r"TimeoutStartSec=\d+", "TimeoutStartSec=10", t)
        ),
        {"fencing": "sbd"},
    ),
    (
        "HAC020",
        "error",
        {},
        node_file("global_common.conf", lambda t: t.replace("resource-and-stonith", "resource-only")),
        {},
    ),
    (
        "HAC020",
        "error",
        {},
        cib(
            lambda c: c.replace('name="stonith-enabled" value="true"', 'name="stonith-enabled" value="false"')
        ),
        {},
    ),
    (
        "HAC021",
        "error",
        {"targets": {"drbd": "9"}},
        node_file("global_common.conf", lambda t: re.sub(r".*unfence-peer .*\n", "", t)),
        {"targets": {"drbd": "9"}},
    ),
    (
        "HAC021",
        "error",
        {"targets": {"drbd": "9"}},
        node_file("global_common.conf", lambda t: t.replace("unfence-peer", "after-resync-target")),
        {"targets": {"drbd": "9"}},
    ),
    (
        "HAC021",
        "error",
        {"targets": {"drbd": "8.4"}},
        node_file("global_common.conf", lambda t: re.sub(r".*after-resync-target .*\n", "", t)),
        {"targets": {"drbd": "8.4"}},
    ),
    (
        "HAC022",
        "error",
        {},
        node_file("global_common.conf", lambda t: t.replace("protocol C;", "protocol A;")),
        {},
    ),
    ("HAC023", "error", {"overrides": {"drbd.timeout": 100}}, None, {}),
    (
        "HAC030",
        "error",
        {},
        cib(lambda c: c.replace('<group id="g_service">', "").replace("</group>", "")),
        {},
    ),
    ("HAC031", "error", {}, cib(lambda c: re.sub(r"\s*<rsc_colocation[^>]*/>", "", c)), {}),
    ("HAC031", "error", {}, cib(lambda c: re.sub(r"\s*<rsc_order[^>]*/>", "", c)), {}),
    (
        "HAC040",
        "error",
        {},
        cib(
            lambda c: c.replace('name="pcmk_host_list" value="node2"', 'name="pcmk_host_list" value="node1"')
        ),
        {},
    ),
    ("HAC050", "warning", {"links": 1}, None, {}),
    (
        "HAC060",
        "error",
        {"vip": "azure-lb", "profile": "onprem"},
        None,
        {"vip": "azure-lb", "profile": "azure"},
    ),
    (
        "HAC061",
        "error",
        {"vip": "azure-lb", "profile": "azure"},
        cib(lambda c: c.replace('name="port" value="61000"', 'name="port" value="61001"')),
        {"vip": "azure-lb", "profile": "azure"},
    ),
]


@pytest.mark.parametrize(
    ("code", "severity", "broken", "mutate", "fixed"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_invariant(
    code: str, severity: str, broken: dict[str, Any], mutate: Mutation | None, fixed: dict[str, Any]
) -> None:
    bad = findings(doc_with(**broken), mutate)
    assert severity in bad.get(code, set()), bad
    good = findings(doc_with(**fixed))
    assert good.get(code) == {"ok"}, good


def test_multiple_methods_need_levels_on_azure() -> None:
    from conftest import fencing_block

    doc = doc_with(vip="azure-lb", profile="azure")
    doc["fencing"] = [fencing_block("fence_azure_arm"), fencing_block("sbd")]
    doc["fencing_topology"] = True
    assert "HAC042" not in findings(doc)
    stripped = findings(
        doc, cib(lambda c: re.sub(r"\s*<fencing-topology>.*</fencing-topology>", "", c, flags=re.S))
    )
    assert stripped["HAC042"] == {"error"}


def test_placeholder_ids_warn() -> None:
    import yaml
    from conftest import REPO, spec_of

    doc = yaml.safe_load((REPO / "templates/init/aws.yaml").read_text())
    spec = spec_of(doc)
    inv = get_provider("aws").planned_inventory(spec)
    assert inv.placeholder
    from conftest import FIXED_SECRETS

    from hacloud.render import render_all

    profile = effective_profile(spec, load_profile("aws"))
    found = run_checks(spec, inv, profile, render_all(spec, inv, profile, FIXED_SECRETS))
    assert any(f.code == "HAC041" and f.severity == "warning" for f in found)


@pytest.mark.parametrize("provider", ["lab", "onprem", "aws", "azure"])
def test_shipped_examples_have_no_errors(provider: str) -> None:
    """The examples `hacloud init` writes pass every check out of the box."""
    import yaml
    from conftest import REPO

    doc = yaml.safe_load((REPO / f"templates/init/{provider}.yaml").read_text())
    result = findings(doc)
    assert not any("error" in sev for sev in result.values()), result


def drop_file(path: str) -> Mutation:
    def apply(b: Bundle) -> Bundle:
        return dataclasses.replace(
            b, files={node: tuple(f for f in fs if f.path != path) for node, fs in b.files.items()}
        )

    return apply


@pytest.mark.parametrize(("fencing", "vip"), [("fence_aws", "awseip"), ("fence_aws", "aws-vpc-move-ip")])
def test_aws_cli_agent_without_its_config_is_an_error(fencing: str, vip: str) -> None:
    """HAC110: an AWS CLI agent in the CIB and no /root/.aws/config (or no [default] in it)."""
    doc = doc_with(fencing=fencing, vip=vip)
    assert findings(doc)["HAC110"] == {"ok"}
    assert findings(doc, drop_file("/root/.aws/config"))["HAC110"] == {"error"}
    renamed = node_file("/root/.aws/config", lambda t: t.replace("[default]", "[profile other]"))
    assert findings(doc, renamed)["HAC110"] == {"error"}
    # no AWS CLI agent, no finding either way
    assert "HAC110" not in findings(doc_with(fencing=fencing, vip="IPaddr2"))


def test_aws_cli_config_without_region_warns() -> None:
    """HAC111: on-prem EC2 nodes with SBD name no region anywhere: AWS CLI v1 would fail."""
    found = findings(doc_with(fencing="sbd", vip="awseip"))
    assert found["HAC111"] == {"warning"} and "HAC110" not in found


def test_two_aws_regions_are_an_error() -> None:
    """HAC112: the AWS CLI config and fence_aws name different regions."""
    doc = doc_with(fencing="fence_aws", vip="aws-vpc-move-ip")
    assert findings(doc)["HAC112"] == {"ok"}
    other = node_file("/root/.aws/config", lambda t: t.replace("eu-central-1", "eu-west-1"))
    assert findings(doc, other)["HAC112"] == {"error"}
    moved = cib(lambda c: c.replace('name="region" value="eu-central-1"', 'name="region" value="us-east-1"'))
    assert findings(doc, moved)["HAC112"] == {"error"}


@pytest.mark.parametrize("provider", ["aws", "azure"])
def test_cloud_examples_have_two_links(provider: str) -> None:
    """The cloud providers add corosync link 1 themselves, so their examples render two links
    and HAC050 no longer warns (issue 15 item 19)."""
    import yaml
    from conftest import REPO

    doc = yaml.safe_load((REPO / f"templates/init/{provider}.yaml").read_text())
    assert findings(doc)["HAC050"] == {"ok"}
    for node in doc["nodes"]:  # a spec that names one link keeps it, and is warned
        node["links"] = [f"192.0.2.{11 + doc['nodes'].index(node)}"]
    assert findings(doc)["HAC050"] == {"warning"}


def test_rendered_file_type_is_bytes() -> None:
    _, bundle = render_doc(onprem_doc())
    assert all(
        isinstance(f, RenderedFile) and isinstance(f.content, bytes)
        for fs in bundle.files.values()
        for f in fs
    )
