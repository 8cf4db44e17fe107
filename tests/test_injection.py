"""Issue 16, items 1-6: no value can inject into the CIB, a shell script or a config file.

Each item is defended twice and each defence is tested on its own: the load-time grammar
(the spec, the inventory and the Terraform import refuse the value, exit 2, naming the field)
and the writing side (the same value, smuggled past validation with ``model_copy`` or
``dataclasses.replace``, is escaped, quoted or refused when rendered). The artefacts are
judged by the real tools and independent parsers (tests/injection_tools.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXED_SECRETS, REPO, need, onprem_doc, render_doc, spec_of
from injection_tools import (
    aws_config,
    cib_shape,
    cib_tree,
    crm_verify,
    drbd_dump,
    drbd_structure,
    nvpairs,
    sandboxed,
    sh_syntax_ok,
    sysctl_settings,
)

from hacloud.errors import HacloudError, SpecError
from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import Inventory, NodeFacts
from hacloud.spec.inventory_file import check_inventory_matches, load_inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import load_profile
from hacloud.verify.invariants import run_checks

HOSTILE_USER = 'admin" name="pcmk_host_list" value="node1'


def problems(doc: dict[str, Any]) -> dict[str, str]:
    """path -> message of every problem the spec loader finds (empty: accepted)."""
    try:
        spec_of(doc)
    except SpecError as exc:
        return {p.path: p.message + " / " + p.remedy for p in exc.problems}
    return {}


def render(spec: Spec, inventory: Inventory | None = None, **overrides: Any) -> Bundle:
    inv = inventory or get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name)).with_overrides(overrides)
    return render_all(spec, inv, profile, FIXED_SECRETS)


def node_file(bundle: Bundle, path: str, node: str = "node1") -> str:
    return next(f.content.decode() for f in bundle.files[node] if f.path == path)


# ---------------------------------------------------------------- 1. the CIB


@pytest.mark.tools
def test_ampersand_in_an_ocf_param_gives_a_cib_crm_verify_accepts_with_the_value_intact(
    tmp_path: Path,
) -> None:
    need("crm_verify", "crm_simulate")
    value = "/etc/app/a&b <c> \"d\" 'e'.conf"
    doc = onprem_doc()
    doc["service"] = {"kind": "ocf", "agent": "ocf:heartbeat:apache", "params": {"configfile": value}}
    _, bundle = render_doc(doc)
    crm_verify(bundle.cib, tmp_path)
    assert nvpairs(cib_tree(bundle.cib), "svc_apache-instance_attributes") == [("configfile", value)]


@pytest.mark.tools
@pytest.mark.parametrize("bypass", [False, True], ids=["loaded", "bypassing-validation"])
def test_a_crafted_bmc_user_name_adds_no_nvpair(bypass: bool, tmp_path: Path) -> None:
    """The user name that made node1's device claim to fence node2: printable ASCII, so the
    grammar lets it through; escaping keeps it one value. Bypassing the grammar, a newline
    (fence agents read one option per line) stays a character reference."""
    need("crm_verify", "crm_simulate")
    spec, clean = render_doc(onprem_doc())
    user = HOSTILE_USER + ("\npcmk_host_list=node1" if bypass else "")
    if bypass:
        method = spec.fencing[0]
        targets = {n: t.model_copy(update={"username": user}) for n, t in method.nodes.items()}  # type: ignore[union-attr]
        spec = spec.model_copy(update={"fencing": [method.model_copy(update={"nodes": targets})]})
        bundle = render(spec)
    else:
        doc = onprem_doc()
        for target in doc["fencing"][0]["nodes"].values():
            target["username"] = user
        spec, bundle = render_doc(doc)
    root = cib_tree(bundle.cib)
    assert cib_shape(root) == cib_shape(cib_tree(clean.cib))
    pairs = dict(nvpairs(root, "fence_node1-instance_attributes"))
    assert pairs["username"] == user and pairs["pcmk_host_list"] == "node1"
    assert bundle.cib.count('name="pcmk_host_list"') == 2
    crm_verify(bundle.cib, tmp_path)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    inv = get_provider("onprem").planned_inventory(spec)
    assert {f.code: f.severity for f in run_checks(spec, inv, profile, bundle)}["HAC120"] == "ok"


def test_newline_or_control_character_in_a_bmc_user_is_refused_at_load() -> None:
    for user in ("admin\npcmk_host_list=node1", "admin\x00", " admin"):
        doc = onprem_doc()
        doc["fencing"][0]["nodes"]["node1"]["username"] = user
        assert "fencing[0].nodes.node1.username" in problems(doc), user


class Hostile:
    """Stands in for every variable of a template: it prints as & < " ' (and a newline and a
    tab), has every attribute, is true, and iterates as a pair (``for k, v in ...``)."""

    TEXT = "a&b<c>\"d'e\n\tf"

    def __str__(self) -> str:
        return self.TEXT

    def __getattr__(self, name: str) -> Hostile:
        return Hostile()

    def __iter__(self) -> Any:
        return iter((Hostile(), Hostile()))

    def __bool__(self) -> bool:
        return True


def test_every_xml_template_escapes_every_parameter_and_none_opts_out() -> None:
    """Each *.xml.j2, rendered through render_template with & < " ' in every variable and
    every attribute of every variable, parses; every element is one the template writes; the
    text reads back intact wherever it landed. `|safe`, Markup or `autoescape false` in a
    template would switch escaping off for a value, so none may use them."""
    from hacloud.render.env import render_template

    templates = sorted((REPO / "templates").rglob("*.xml.j2"))
    assert templates
    for path in templates:
        name = path.relative_to(REPO / "templates").as_posix()
        text = path.read_text()
        assert not re.search(r"\|\s*safe\b|Markup|autoescape\s+false", text), name
        literal_tags = set(re.findall(r"<([a-z_-]+)[\s/>]", text))
        if "primitive.xml.j2" in text or "import primitive" in text:
            literal_tags |= set(
                re.findall(r"<([a-z_-]+)[\s/>]", (path.parent / "primitive.xml.j2").read_text())
            )
        variables = {v: Hostile() for v in re.findall(r"\{\{\s*([a-z_]+)", text)}
        variables |= {v: Hostile() for v in re.findall(r"\{%\s*(?:if|for [a-z_, ]+ in)\s+([a-z_]+)", text)}
        out = render_template(name, **variables) if "macro" not in text else None
        if out is None:
            continue  # a macro library: rendered through the templates that import it
        root = ET.fromstring(f"<r>{out}</r>")
        tags = {e.tag for e in root.iter()} - {"r"}
        assert tags <= literal_tags, (name, tags - literal_tags)
        values = [v for e in root.iter() for v in e.attrib.values()]
        # wherever a piece of the text landed, all of it landed, decoded back exactly
        assert all(Hostile.TEXT in v for v in values if "a&b" in v), name
        assert sum(Hostile.TEXT in v for v in values) >= len(variables), name


@pytest.mark.tools
def test_every_cib_value_is_escaped_when_validation_is_bypassed(tmp_path: Path) -> None:
    """Names, ids and values from every part of the spec carry & < \" ' into the CIB: it still
    parses, has the same elements, and each value reads back exactly."""
    need("crm_verify", "crm_simulate")
    evil = "&<\"'"
    doc = onprem_doc()
    doc["service"] = {
        "kind": "ocf",
        "agent": "ocf:heartbeat:apache",
        "params": {"configfile": "/x", "statusurl": "/y"},
    }
    doc["vip"]["nic"] = "eth0"
    spec, clean = render_doc(doc)
    vol = spec.volumes[0].model_copy(update={"mount_point": f"/srv/{evil}", "mount_options": evil})
    service = spec.service.model_copy(update={"params": {"configfile": evil, "statusurl": evil}})
    vip = spec.vip.model_copy(update={"nic": f"e{evil}"})
    method = spec.fencing[0]
    targets = {
        n: t.model_copy(update={"username": evil, "ip": evil})  # type: ignore[union-attr]
        for n, t in method.nodes.items()  # type: ignore[union-attr]
    }
    spec = spec.model_copy(
        update={
            "volumes": [vol],
            "service": service,
            "vip": vip,
            "fencing": [method.model_copy(update={"nodes": targets})],
        }
    )
    bundle = render(spec)
    root = cib_tree(bundle.cib)
    assert [e.tag for e in root.iter()] == [e.tag for e in cib_tree(clean.cib).iter()]
    assert dict(nvpairs(root, "fs_r0-instance_attributes"))["directory"] == f"/srv/{evil}"
    assert dict(nvpairs(root, "fs_r0-instance_attributes"))["options"] == evil
    assert dict(nvpairs(root, "svc_apache-instance_attributes")) == {"configfile": evil, "statusurl": evil}
    assert dict(nvpairs(root, "vip_ip-instance_attributes"))["nic"] == f"e{evil}"
    assert dict(nvpairs(root, "fence_node2-instance_attributes"))["username"] == evil
    crm_verify(bundle.cib, tmp_path)


def test_check_refuses_a_duplicate_parameter_pacemaker_would_read_first() -> None:
    """HAC120; and host coverage is judged the way Pacemaker reads it (the first value)."""
    spec, bundle = render_doc(onprem_doc())
    inv = get_provider("onprem").planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    injected = bundle.cib.replace(
        'name="pcmk_host_list" value="node2"/>',
        'name="pcmk_host_list" value="node1"/>\n<nvpair id="dup" name="pcmk_host_list" value="node2"/>',
    )
    found = {
        (f.code, f.severity)
        for f in run_checks(spec, inv, profile, dataclasses.replace(bundle, cib=injected))
    }
    assert ("HAC120", "error") in found
    assert ("HAC040", "error") in found  # node2 is covered by no device: the first value wins
    clean = {(f.code, f.severity) for f in run_checks(spec, inv, profile, bundle)}
    assert ("HAC120", "ok") in clean and ("HAC040", "ok") in clean


# ---------------------------------------------------------------- 2. mount_point and the demo agent


@pytest.mark.parametrize(
    "mount",
    ["/srv/$(touch INJECTED)", '/srv/"x', "/srv/a b", "/srv/../etc", "srv/data", "/srv/`id`", "/srv//x"],
)
def test_a_hostile_mount_point_is_refused_at_load(mount: str) -> None:
    doc = onprem_doc()
    doc["volumes"][0]["mount_point"] = mount
    assert "volumes[0].mount_point" in problems(doc)


@pytest.mark.parametrize(
    "mount",
    [
        "/srv/$(touch INJECTED)",
        '/srv/"; touch INJECTED; "',
        "/srv/'; touch INJECTED; '",
        "/srv/`touch INJECTED`",
        "/srv/x\nEND\ntouch INJECTED\n",
    ],
)
def test_the_demo_agent_runs_nothing_from_a_mount_point_that_bypassed_validation(
    mount: str, tmp_path: Path
) -> None:
    need("sh", "unshare")
    spec = spec_of(onprem_doc())
    spec = spec.model_copy(update={"volumes": [spec.volumes[0].model_copy(update={"mount_point": mount})]})
    agent = node_file(render(spec), "/usr/lib/ocf/resource.d/hacloud/demo")
    sh_syntax_ok(agent)
    for action in ("meta-data", "validate-all", "monitor"):
        out, planted = sandboxed(agent, [action], tmp_path)
        assert not planted, (action, mount)
        if action == "meta-data":
            defaults = {
                p.get("name"): p.find("content").get("default") for p in ET.fromstring(out).iter("parameter")
            }  # type: ignore[union-attr]
            assert defaults["data"] == f"{mount}/hacloud-demo"
    # the default the agent really uses is the value, not its expansion
    probe = agent.replace('case "$1" in', 'printf %s "$OCF_RESKEY_data"; exit 0\ncase "$1" in', 1)
    out, planted = sandboxed(probe, ["monitor"], tmp_path)
    assert out == f"{mount}/hacloud-demo" and not planted


# ---------------------------------------------------------------- 3. profile overrides


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("drbd.after_sb_2pri", "disconnect; protocol A; allow-two-primaries yes"),
        ("drbd.after_sb_0pri", "discard-node-node1"),
        ("drbd.on_io_error", "detach;"),
        ("drbd.c_max_rate", "100M; protocol A"),
        ("drbd.c_max_rate", "5G"),
        ("drbd.ping_int", 121),
        ("drbd.max_buffers", 16),
        ("corosync.token", -5),
        ("pacemaker.stonith_action", "off\n"),
        ("platform.pacemaker", "2.1.5\n"),
        ("sysctl.vm.swappiness", "10\nkernel.core_pattern = |/bin/sh -c id"),
        ("sysctl.kernel.core_pattern", "|/bin/sh -c id"),
        ("sysctl.vm.swappiness\nkernel.x", 1),
    ],
)
def test_an_override_outside_its_grammar_is_refused_at_load(key: str, value: Any) -> None:
    doc = onprem_doc()
    doc["overrides"] = {key: value}
    assert f"overrides.{key}" in problems(doc)


def test_overrides_inside_their_grammar_are_accepted() -> None:
    doc = onprem_doc()
    doc["overrides"] = {
        "drbd.after_sb_2pri": "call-pri-lost-after-sb",
        "drbd.c_max_rate": "4G",
        "drbd.c_fill_target": "512M",
        "fencing.power_wait": -1,
        "sysctl.net.ipv4.tcp_rmem": "4096 87380 6291456",
    }
    assert problems(doc) == {}


def test_every_profile_key_has_a_grammar_its_own_values_keep() -> None:
    from hacloud.spec.profiles import GRAMMAR, PROFILE_NAMES, override_problems

    for name in PROFILE_NAMES:
        profile = load_profile(name)
        assert {k for k in profile.values if not k.startswith("sysctl.")} <= set(GRAMMAR), name
        assert override_problems(profile, {k: v.value for k, v in profile.values.items()}) == []


@pytest.mark.tools
@pytest.mark.parametrize("version", ["8.4", "9"])
def test_an_override_that_bypassed_validation_adds_no_drbd_directive(version: str, tmp_path: Path) -> None:
    from tools import DRBDADM84

    need("drbdadm", DRBDADM84)
    drbdadm = DRBDADM84 if version == "8.4" else "drbdadm"
    doc = onprem_doc()
    doc["targets"] = {"drbd": version}
    spec = spec_of(doc)
    clean = drbd_structure(drbd_dump(render(spec), "node1", tmp_path, drbdadm))
    with pytest.raises(HacloudError, match=r"global_common\.conf"):
        render(spec, **{"drbd.after_sb_2pri": "disconnect; protocol A; allow-two-primaries yes"})
    legit = drbd_structure(
        drbd_dump(
            render(spec, **{"drbd.after_sb_2pri": "call-pri-lost-after-sb"}), "node1", tmp_path, drbdadm
        )
    )
    assert legit == clean and not clean["two_primaries"] and clean["protocols"] == ["C"]


def test_a_sysctl_override_that_bypassed_validation_adds_no_setting() -> None:
    spec = spec_of(onprem_doc(profile="azure"))
    clean = sysctl_settings(node_file(render(spec), "/etc/sysctl.d/90-hacloud.conf"))
    with pytest.raises(HacloudError, match=r"90-hacloud|sysctl"):
        render(spec, **{"sysctl.vm.swappiness": "10\nkernel.core_pattern = |/bin/sh -c id"})
    settings = sysctl_settings(
        node_file(render(spec, **{"sysctl.vm.swappiness": 5}), "/etc/sysctl.d/90-hacloud.conf")
    )
    assert set(settings) == set(clean) and settings["vm.swappiness"] == "5"


# ---------------------------------------------------------------- 4. AWS region


def aws_doc() -> dict[str, Any]:
    doc = onprem_doc("fence_aws", "aws-vpc-move-ip", "aws")
    return doc


@pytest.mark.parametrize("where", ["fencing", "provider"])
def test_a_region_with_a_newline_is_refused_at_load(where: str) -> None:
    doc = yaml.safe_load((REPO / "templates/init/aws.yaml").read_text())
    region = "eu-central-1\ncredential_process = /bin/sh -c id"
    if where == "fencing":
        doc["fencing"][0]["region"] = region
        path = "fencing[0].region"
    else:
        doc["provider"]["options"]["region"] = region
        path = "provider.options.region"
    assert path in problems(doc)


def test_azure_location_and_resource_group_have_a_grammar() -> None:
    doc = yaml.safe_load((REPO / "templates/init/azure.yaml").read_text())
    doc["provider"]["options"]["location"] = "westeurope\nx"
    doc["provider"]["options"]["resource_group"] = 'rg"x'
    found = problems(doc)
    assert {"provider.options.location", "provider.options.resource_group"} <= set(found)


def test_the_aws_config_gets_no_second_key_from_a_region_that_bypassed_validation() -> None:
    spec = spec_of(aws_doc())
    clean = aws_config(node_file(render(spec), "/root/.aws/config"))
    assert clean == {"default": {"region": "eu-central-1", "output": "text"}}
    method = spec.fencing[0].model_copy(update={"region": "eu-central-1\ncredential_process = /bin/sh -c id"})
    with pytest.raises(HacloudError, match="aws-config"):
        render(spec.model_copy(update={"fencing": [method]}))


# ---------------------------------------------------------------- 5. inventory and Terraform values


def inventory_doc() -> dict[str, Any]:
    spec = spec_of(onprem_doc())
    inv = get_provider("onprem").planned_inventory(spec)
    data: dict[str, Any] = json.loads(inv.to_json())
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodes", 0, "links", 0), "192.0.2.11\n        ring1_addr: 203.0.113.9"),
        (("nodes", 0, "links", 0), "not-an-ip"),
        (("nodes", 0, "replication_address"), "192.0.2.11:7789;\n    }\n    on evil {"),
        (("nodes", 0, "replication_address"), "999.0.2.11"),
        (("nodes", 0, "volumes", "r0"), "/dev/sdb;\n        meta-disk /dev/sdz"),
        (("nodes", 0, "volumes", "r0"), "/dev/../sdb"),
        (("nodes", 0, "id"), "i-1'; touch INJECTED; '"),
        (("nodes", 0, "zone"), "eu-central-1a\n"),
        (("nodes", 0, "ssh_address"), "192.0.2.11 -oProxyCommand=id"),
        (("nodes", 0, "name"), "node1\n"),
        (("network", "vpc_cidr"), "not-a-cidr"),
    ],
)
def test_a_hostile_inventory_value_is_refused_at_load(
    path: tuple[Any, ...], value: str, tmp_path: Path
) -> None:
    data = inventory_doc()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    file = tmp_path / "inventory.json"
    file.write_text(json.dumps(data))
    with pytest.raises(SpecError) as err:
        load_inventory(file)
    wanted = ".".join(str(p) for p in path[:2])
    assert any(p.path.replace("[", ".").replace("]", "").startswith(wanted) for p in err.value.problems), (
        err.value.report()
    )
    assert err.value.exit_code == 2


@pytest.mark.tools
def test_inventory_values_that_bypassed_validation_add_no_corosync_or_drbd_directive(tmp_path: Path) -> None:
    need("drbdadm")
    spec = spec_of(onprem_doc())
    inv = get_provider("onprem").planned_inventory(spec)
    clean = drbd_structure(drbd_dump(render(spec, inv), "node1", tmp_path))
    assert clean["hosts"] == ["node1", "node2"] and len(clean["disks"]) == 2
    n1 = inv.nodes[0]
    for change in (
        {"links": ("192.0.2.11\n        ring1_addr: 203.0.113.9", n1.links[1])},
        {
            "replication_address": "192.0.2.11:7789;\n    }\n    on evil {\n        disk /dev/sdz;\n"
            "        address 192.0.2.99"
        },
        {"volumes": {"r0": "/dev/sdb;\n        meta-disk /dev/sdz"}},
    ):
        bad = dataclasses.replace(inv, nodes=(dataclasses.replace(n1, **change), inv.nodes[1]))
        with pytest.raises(HacloudError, match=r"corosync\.conf|\.res"):
            render(spec, bad)
    # on one line, a device path is one quoted DRBD string: written, and it stays one disk
    odd = dataclasses.replace(n1, volumes={"r0": '/dev/sdb; meta-disk /dev/sdz "x"'})
    dump = drbd_dump(render(spec, dataclasses.replace(inv, nodes=(odd, inv.nodes[1]))), "node1", tmp_path)
    got = drbd_structure(dump)
    assert {k: v for k, v in got.items() if k != "disks"} == {k: v for k, v in clean.items() if k != "disks"}
    assert got["disks"] == ['"/dev/sdb; meta-disk /dev/sdz \\"x\\""', clean["disks"][1]]  # type: ignore[index]


def test_a_matched_inventory_names_provider_ids_that_are_not_the_providers_grammar() -> None:
    doc = yaml.safe_load((REPO / "templates/init/aws.yaml").read_text())
    spec = spec_of(doc)
    inv = get_provider("aws").planned_inventory(spec)
    real = dataclasses.replace(inv.nodes[0], id="i-0123456789abcdef0", placeholder=False)
    check_inventory_matches(spec, dataclasses.replace(inv, nodes=(real, inv.nodes[1])), "inv.json")
    bad = dataclasses.replace(real, id="node1")
    with pytest.raises(SpecError) as err:
        check_inventory_matches(spec, dataclasses.replace(inv, nodes=(bad, inv.nodes[1])), "inv.json")
    assert [p.path for p in err.value.problems] == ["nodes[0].id"]


# ---------------------------------------------------------------- Terraform import (5 and 6)


def aws_state(**node1: Any) -> dict[str, Any]:
    """A hand-written terraform.tfstate (format 4) with two instances and their volumes."""

    def instance(name: str, i: int, **attrs: Any) -> dict[str, Any]:
        base = {
            "id": f"i-0123456789abcdef{i}",
            "private_ip": f"192.0.2.{11 + i}",
            "availability_zone": f"eu-central-1{'ab'[i]}",
            "tags": {"Name": name},
            "subnet_id": "subnet-0aaaaaaaaaaaaaaaa",
        }
        base.update(attrs)
        return {"mode": "managed", "type": "aws_instance", "name": name, "instances": [{"attributes": base}]}

    first = instance("node1", 0, **node1)
    attach = [
        {
            "mode": "managed",
            "type": "aws_volume_attachment",
            "name": f"d{i}",
            "instances": [
                {
                    "attributes": {
                        "instance_id": inst["instances"][0]["attributes"]["id"],
                        "volume_id": node1.get("_volume", f"vol-0123456789abcdef{i}")
                        if i == 0
                        else f"vol-0123456789abcdef{i}",
                        "device_name": "/dev/sdf",
                    }
                }
            ],
        }
        for i, inst in enumerate((first, instance("node2", 1)))
    ]
    first["instances"][0]["attributes"].pop("_volume", None)
    return {
        "version": 4,
        "terraform_version": "1.9.0",
        "resources": [first, instance("node2", 1), *attach],
        "outputs": {},
    }


def import_aws(tmp_path: Path, state: dict[str, Any]) -> Inventory:
    from hacloud.provision.terraform import TerraformSource, import_inventory

    doc = yaml.safe_load((REPO / "templates/init/aws.yaml").read_text())
    file = tmp_path / "terraform.tfstate"
    file.write_text(json.dumps(state))
    return import_inventory(spec_of(doc), TerraformSource(file), get_provider("aws")).inventory


def test_a_clean_terraform_state_imports(tmp_path: Path) -> None:
    inv = import_aws(tmp_path, aws_state())
    assert [n.id for n in inv.nodes] == ["i-0123456789abcdef0", "i-0123456789abcdef1"]
    assert inv.nodes[0].links == ("192.0.2.11",)


@pytest.mark.parametrize(
    ("attrs", "path"),
    [
        ({"private_ip": "not-an-ip"}, "nodes[0].links[0]"),
        ({"private_ip": "192.0.2.11\n        ring1_addr: 203.0.113.9"}, "nodes[0].links[0]"),
        ({"id": "i-1'; touch INJECTED; '"}, "nodes[0].id"),
        ({"id": "node1"}, "nodes[0].id"),
        ({"availability_zone": "eu-central-1a\nx"}, "nodes[0].zone"),
        ({"_volume": "vol-1;\n  meta-disk /dev/sdz"}, "nodes[0].volumes.r0"),
    ],
)
def test_a_hostile_terraform_value_is_refused_on_import(
    attrs: dict[str, Any], path: str, tmp_path: Path
) -> None:
    with pytest.raises(SpecError) as err:
        import_aws(tmp_path, aws_state(**attrs))
    assert path in [p.path for p in err.value.problems], err.value.report()
    assert err.value.exit_code == 2


def test_terraform_instance_ids_reach_the_node_check_shell_line_quoted(tmp_path: Path) -> None:
    """Item 6, writing side: an id that bypassed validation is one quoted grep pattern; the
    check, run in a sandbox against a stub fence_aws, runs nothing and still compares."""
    need("sh", "unshare")
    from hacloud_aws import aws_node_needs

    spec = spec_of(yaml.safe_load((REPO / "templates/init/aws.yaml").read_text()))
    inv = get_provider("aws").planned_inventory(spec)
    stub = tmp_path / "bin"
    stub.mkdir()
    fence = stub / "fence_aws"
    fence.write_text("#!/bin/sh\nprintf 'i-0123456789abcdef0,node1,on\\ni-0123456789abcdef1,node2,on\\n'\n")
    fence.chmod(0o755)
    for hostile, expect in (
        ("i-0'; touch INJECTED; '", False),
        ("$(touch INJECTED)", False),
        (".*", False),
        ("i-0123456789abcdef0", True),
    ):
        nodes = tuple(
            dataclasses.replace(n, id=i)
            for n, i in zip(inv.nodes, (hostile, "i-0123456789abcdef1"), strict=True)
        )
        check = next(
            c
            for c in aws_node_needs(spec, dataclasses.replace(inv, nodes=nodes)).probes
            if c.code == "aws.fence_list"
        )
        sh_syntax_ok(check.command)
        out, planted = sandboxed(check.command + " && echo LISTED", [], tmp_path, (stub,))
        assert not planted, hostile
        assert ("LISTED" in out) is expect, (hostile, out)
        assert f"grep -qxF -- {shlex.quote(hostile)}" in check.command


def test_render_cli_refuses_a_hostile_inventory_with_exit_2(tmp_path: Path) -> None:
    import subprocess

    spec = tmp_path / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(onprem_doc()))
    data = inventory_doc()
    data["nodes"][0]["links"][0] = "192.0.2.11\n        ring1_addr: 203.0.113.9"
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(data))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hacloud",
            "render",
            "-f",
            str(spec),
            "--inventory",
            str(inv),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nodes[0].links[0]" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("dialect", "value"),
    [
        ("drbd", "disconnect; protocol A"),
        ("drbd", "a}b"),
        ("drbd", "a b"),
        ("drbd", "x\x00"),
        ("corosync", "192.0.2.11\n        ring1_addr: 203.0.113.9"),
        ("corosync", "a{"),
        ("line", "10\nkernel.core_pattern = |/bin/sh"),
        ("line", "eu-central-1 = x"),
        ("line", "|/bin/sh"),
        ("line", "$(id)"),
        ("line", "a\ud800"),
        ("shell", "$(id)"),
        ("shell", "a b"),
        ("shell", "'"),
        ("xml", "a\x01"),
        ("xml", "a\ud800"),
    ],
)
def test_each_language_guard_refuses_a_raw_value_that_would_escape_it(dialect: str, value: str) -> None:
    """The writing side on its own: a template that forgot to quote still cannot write it."""
    from hacloud.render.env import environment

    with pytest.raises(HacloudError, match="refusing to write") as err:
        environment(dialect).from_string("x {{ v }} y").render(v=value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("dialect", "template", "value", "parse"),
    [
        ("shell", 'v={{ v | sh }}; printf %s "$v"', "a b$(touch INJECTED)'\"\n`x`", "sh"),
        ("drbd", "{{ v | drbd_string }}", 'a"b\\c;d}', "drbd"),
        ("xml", '<x a="{{ v }}"/>', "a&b<\"'\n\t", "xml"),
    ],
)
def test_each_language_quotes_what_it_is_given(
    dialect: str, template: str, value: str, parse: str, tmp_path: Path
) -> None:
    """The quoting filters read back as exactly the value, by the language's own parser."""
    from hacloud.render.env import environment

    out = environment(dialect).from_string(template).render(v=value)
    if parse == "sh":
        got, planted = sandboxed(out, [], tmp_path)
        assert got == value and not planted
    elif parse == "xml":
        assert ET.fromstring(out).get("a") == value
    else:
        conf = tmp_path / "r.res"
        conf.write_text(
            "resource r0 {\n device /dev/drbd0;\n meta-disk internal;\n"
            f" on node1 {{ disk {out}; address 192.0.2.11:7789; }}\n"
            " on node2 { disk /dev/sdb; address 192.0.2.12:7789; }\n}\n"
        )
        need("drbdadm")
        from tools import DRBDADM84, run

        need(DRBDADM84)
        dump = run([DRBDADM84, "-c", str(conf), "dump", "all"]).stdout
        assert f"disk {out};" in re.sub(r"disk\s+", "disk ", dump)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("links", ("192.0.2.11\n    ring1_addr: 192.0.2.99", "198.51.100.11")),
        ("replication_address", "192.0.2.11; }"),
        ("id", "i-0123456789abcdef0' ; touch /tmp/x ; '"),
        ("volumes", {"r0": "/dev/xvdf\n    disk /dev/other"}),
        ("facts", {"corosync_log_dir": "/var/log/../../etc"}),
        ("facts", {"primary_interface": "eth0\n    ring1_addr: 192.0.2.99"}),
    ],
)
def test_an_inventory_a_provider_built_passes_the_loaded_grammar(field: str, value: Any) -> None:
    """What a provider returns from its API (here the AWS example's planned inventory made
    hostile, as a tag or an attribute changed behind hacloud's back could) is refused before
    anything is rendered or run from it, naming the field -- like a loaded inventory."""
    from hacloud.spec.inventory_file import validated

    spec = spec_of(yaml.safe_load((REPO / "templates/init/aws.yaml").read_text()))
    inv = get_provider("aws").planned_inventory(spec)
    node = dataclasses.replace(inv.nodes[0], placeholder=False, id="i-0123456789abcdef0")
    assert validated(dataclasses.replace(inv, nodes=(node, inv.nodes[1])), "here") is not None
    if field == "facts":  # what the nodes said about themselves (deploy's facts script)
        value = NodeFacts(**value)
    bad = dataclasses.replace(node, **{field: value})
    with pytest.raises(SpecError) as err:
        validated(dataclasses.replace(inv, nodes=(bad, inv.nodes[1])), "the aws provider's inventory")
    assert any(p.path.startswith(f"nodes[0].{field}") for p in err.value.problems), err.value.problems
    assert "the aws provider's inventory" in str(err.value.problems[0].remedy)
