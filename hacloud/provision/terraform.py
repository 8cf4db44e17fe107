"""Read a cluster's inventory from Terraform: the drop-in on infrastructure a team already has.

Contract: :func:`import_inventory` turns a :class:`TerraformSource` into an :class:`Imported`
(an :class:`~hacloud.spec.inventory.Inventory` for the spec's cluster plus one line per node saying where
it came from), or raises :class:`~hacloud.errors.SpecError` / HacloudError listing every problem.
It reads, in this order of preference:

1. an output named ``hacloud_inventory`` (what ``terraform/modules/*-ha-pair`` publish), in the
   inventory format of ``docs/inventory.md``;
2. outputs named in a mapping file (``--tf-map``), for Terraform that does not use our modules;
3. the state's resources (``aws_instance``, ``azurerm_linux_virtual_machine``, ...), read by the
   provider's ``terraform_nodes``.

PATH is a Terraform directory (``terraform output -json``, then ``terraform state pull`` when a
terraform binary is on PATH; else its ``terraform.tfstate``), a saved ``terraform output -json``
file, or a state file of format version 4. Nothing here writes anywhere or prints; values of
sensitive outputs never appear in an error message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hacloud.errors import HacloudError, Problem, SpecError, UsageError
from hacloud.spec.inventory import (
    INVENTORY_ADAPTER,
    INVENTORY_SCHEMA_VERSION,
    Inventory,
    NetworkInfo,
    NodeInfo,
)

if TYPE_CHECKING:
    from hacloud.spec.model import Spec

INVENTORY_OUTPUT = "hacloud_inventory"
STATE_VERSION = 4


@dataclass(frozen=True)
class TerraformSource:
    """Where a drop-in cluster's nodes are described: ``path`` (dir, output JSON or state) and an
    optional ``tf_map`` naming outputs for Terraform that does not use hacloud's modules."""

    path: Path
    tf_map: Path | None = None

    def to_json(self) -> str:
        data = {"path": str(self.path), "tf_map": str(self.tf_map) if self.tf_map else None}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TerraformSource:
        data = json.loads(text)
        return cls(Path(data["path"]), Path(data["tf_map"]) if data.get("tf_map") else None)


@dataclass(frozen=True)
class Output:
    value: Any
    sensitive: bool = False


@dataclass(frozen=True)
class TfResource:
    """One instance of a managed resource in a state: ``address`` as Terraform prints it."""

    address: str
    type: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TfDocument:
    where: str
    outputs: dict[str, Output]
    resources: tuple[TfResource, ...] = ()
    has_state: bool = False


@dataclass(frozen=True)
class Candidate:
    """A machine a provider found among the state's resources, with what identifies it."""

    address: str
    id: str
    private_ip: str
    name: str | None = None
    zone: str | None = None
    public_ip: str | None = None
    devices: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        bits = [self.id, self.private_ip]
        if self.zone:
            bits.append(f"zone {self.zone}")
        if self.name and self.name != self.id:
            bits.append(f"name {self.name}")
        return f"{self.address} ({', '.join(bits)})"


@dataclass(frozen=True)
class Imported:
    inventory: Inventory
    origin: tuple[str, ...]
    where: str


# ---------------------------------------------------------------- reading Terraform's JSON


def _fail(where: str, message: str, remedy: str, path: str = "") -> SpecError:
    return SpecError(where, [Problem(path, message, remedy)])


def terraform_binary() -> str | None:
    """``$HACLOUD_TERRAFORM``, else terraform (or OpenTofu's tofu) on PATH."""
    env = os.environ.get("HACLOUD_TERRAFORM")
    if env:
        return env
    return shutil.which("terraform") or shutil.which("tofu")


def _run_terraform(binary: str, directory: Path, args: list[str]) -> str:
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1")
    try:
        proc = subprocess.run(
            [binary, *args],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HacloudError(
            f"cannot run `{binary} {' '.join(args)}` in {directory}: {exc}",
            "check the terraform binary (HACLOUD_TERRAFORM), or pass a saved `terraform output -json` file",
            code="HAC341",
        ) from None
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-400:]
        raise HacloudError(
            f"`terraform {' '.join(args)}` failed in {directory}: {tail}",
            "run `terraform init` there (and `terraform apply` if nothing is deployed yet), "
            "or pass a saved `terraform output -json` file",
            code="HAC342",
        )
    return proc.stdout


def _parse_outputs(data: Any, where: str, at: str = "") -> dict[str, Output]:
    if not isinstance(data, dict):
        raise _fail(
            where,
            f"the outputs are a {_json_type(data)}, not an object of outputs",
            "pass the file `terraform output -json` writes (not `terraform output` text)",
            at,
        )
    outputs: dict[str, Output] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise _fail(
                where,
                f"output {name!r} has no `value`",
                "pass the file `terraform output -json` writes (not `terraform output` text)",
                f"{at}.{name}" if at else str(name),
            )
        outputs[str(name)] = Output(entry["value"], bool(entry.get("sensitive", False)))
    return outputs


def _json_type(value: Any) -> str:
    """JSON's name for the type of ``value`` (what a user sees in the file)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _module_prefix(module: str | None) -> str:
    return f"{module}." if module else ""


_STATE_FIX = (
    "pass the state as Terraform writes it (`terraform state pull > state.json`); "
    "a hand-edited or truncated state cannot be read"
)


def _state_shape(data: dict[str, Any]) -> list[Problem]:
    """Every place where a version-4 state does not have the shape Terraform writes: what is
    read below (resources, their type/name/mode, instances, attributes) must be there with its
    JSON type, so reading it cannot fail half-way."""
    problems: list[Problem] = []

    def want(value: Any, kinds: tuple[type, ...], path: str, what: str, optional: bool = True) -> bool:
        if value is None and optional:
            return False
        if isinstance(value, kinds) and not isinstance(value, bool):
            return True
        problems.append(Problem(path, f"expected {what}, got {_json_type(value)}", _STATE_FIX))
        return False

    want(data.get("outputs"), (dict,), "outputs", "an object of outputs")
    resources = data.get("resources")
    if not want(resources, (list,), "resources", "a list of resources") or not isinstance(resources, list):
        return problems
    for ri, res in enumerate(resources):
        at = f"resources[{ri}]"
        if not want(res, (dict,), at, "an object", optional=False):
            continue
        want(res.get("mode"), (str,), f"{at}.mode", "a string (managed or data)", optional=False)
        if res.get("mode") != "managed":
            continue
        want(res.get("type"), (str,), f"{at}.type", "the resource type, a string", optional=False)
        want(res.get("name"), (str,), f"{at}.name", "the resource name, a string", optional=False)
        want(res.get("module"), (str,), f"{at}.module", "a module address, a string")
        instances = res.get("instances")
        if not want(instances, (list,), f"{at}.instances", "a list of instances"):
            continue
        for ii, inst in enumerate(instances):
            iat = f"{at}.instances[{ii}]"
            if not want(inst, (dict,), iat, "an object", optional=False):
                continue
            want(inst.get("index_key"), (int, str), f"{iat}.index_key", "a number or a string")
            want(inst.get("attributes"), (dict,), f"{iat}.attributes", "an object of attributes")
    return problems


def _parse_state(data: dict[str, Any], where: str) -> TfDocument:
    version = data.get("version")
    if version != STATE_VERSION or isinstance(version, bool):
        raise _fail(
            where,
            f"state format version {version!r}; hacloud reads version {STATE_VERSION} "
            "(Terraform 0.12 and later)",
            "run `terraform state pull > state.json` with a current Terraform, or pass "
            "`terraform output -json` instead",
            "version",
        )
    problems = _state_shape(data)
    if problems:
        raise SpecError(where, problems)
    outputs = _parse_outputs(data.get("outputs") or {}, where, "outputs")
    resources: list[TfResource] = []
    for res in data.get("resources") or []:
        if res.get("mode") != "managed":
            continue
        base = f"{_module_prefix(res.get('module'))}{res['type']}.{res['name']}"
        for inst in res.get("instances") or []:
            key = inst.get("index_key")
            suffix = "" if key is None else f"[{json.dumps(key)}]"
            resources.append(TfResource(base + suffix, str(res["type"]), dict(inst.get("attributes") or {})))
    return TfDocument(where, outputs, tuple(resources), has_state=True)


def _json(text: str, where: str) -> Any:
    """``text`` as JSON, or a SpecError saying why not (never a traceback on hostile input)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        message = f"not JSON: {exc}"
    except RecursionError:
        message = "not JSON hacloud can read: nested thousands of levels deep"
    raise _fail(
        where,
        message,
        "pass a Terraform directory, `terraform output -json` output, or a terraform.tfstate",
    )


def _read_text(path: Path, what: str, remedy: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(str(path), f"cannot read {what}: {exc.strerror}", remedy) from None
    except UnicodeDecodeError:
        raise _fail(str(path), f"cannot read {what}: it is not UTF-8 text (a binary file?)", remedy) from None


def read_document(source: TerraformSource, want_state: bool = False) -> TfDocument:
    """Outputs (and, for a state or a directory when ``want_state``, resources) at ``source.path``."""
    path = source.path
    if path.is_dir():
        binary = terraform_binary()
        where = f"terraform outputs of {path}"
        if binary is not None:
            outputs = _parse_outputs(
                _json(_run_terraform(binary, path, ["output", "-json"]) or "{}", where), where
            )
            if not want_state:
                return TfDocument(where, outputs)
            state = _run_terraform(binary, path, ["state", "pull"])
            if not state.strip():
                return TfDocument(where, outputs)
            state_where = f"terraform state of {path}"
            pulled = _json(state, state_where)
            if not isinstance(pulled, dict):
                raise _fail(state_where, "the state is not a JSON object", _STATE_FIX)
            doc = _parse_state(pulled, state_where)
            return TfDocument(where, outputs, doc.resources, has_state=True)
        local = path / "terraform.tfstate"
        if not local.exists():
            raise HacloudError(
                f"{path} has no terraform.tfstate and no terraform binary is on PATH to read its state",
                "install terraform (or set HACLOUD_TERRAFORM), or pass a file saved with "
                "`terraform output -json > outputs.json`",
                code="HAC343",
            )
        path = local
    data = _json(_read_text(path, "the file", "check the --from-terraform path"), str(path))
    if not isinstance(data, dict):
        raise _fail(str(path), "the document must be a JSON object", "pass `terraform output -json` output")
    if "terraform_version" in data or "lineage" in data or isinstance(data.get("version"), int):
        return _parse_state(data, str(path))
    return TfDocument(str(path), _parse_outputs(data, str(path)))


# ---------------------------------------------------------------- 1. the hacloud_inventory output


def _inventory_outputs(doc: TfDocument) -> dict[str, Output]:
    return {
        name: out
        for name, out in doc.outputs.items()
        if name == INVENTORY_OUTPUT or name.endswith(f"_{INVENTORY_OUTPUT}")
    }


def _from_inventory_output(spec: Spec, doc: TfDocument, found: dict[str, Output]) -> Imported:
    mine = {
        n: o
        for n, o in found.items()
        if isinstance(o.value, dict) and o.value.get("cluster") == spec.cluster.name
    }
    if len(found) > 1 and len(mine) != 1:
        listed = ", ".join(
            f"{n} (cluster {o.value.get('cluster')!r})" if isinstance(o.value, dict) else n
            for n, o in found.items()
        )
        raise _fail(
            doc.where,
            f"{len(found)} inventory outputs, {len(mine)} of them for cluster "
            f"{spec.cluster.name!r}: {listed}",
            "set cluster.name in the spec to the cluster you mean, or pass --tf-map",
        )
    name, out = next(iter(mine.items())) if mine else next(iter(found.items()))
    value = out.value
    if not isinstance(value, dict):
        raise _fail(
            doc.where, f"output {name} is not an object", "publish the module's hacloud_inventory as is", name
        )
    version = value.get("schema_version")
    if version != INVENTORY_SCHEMA_VERSION:
        raise _fail(
            doc.where,
            f"output {name} has schema_version {version!r}; this hacloud reads schema version "
            f"{INVENTORY_SCHEMA_VERSION}",
            "use the module version that matches this hacloud (terraform/modules in its release), "
            "or upgrade hacloud",
            f"{name}.schema_version",
        )
    inventory = _validate_inventory(value, doc.where, name, out.sensitive)
    origin = tuple(f"{n.name} <- output {name} (id {n.id}, {n.ssh_address})" for n in inventory.nodes)
    return Imported(inventory, origin, doc.where)


def _validate_inventory(value: dict[str, Any], where: str, name: str, sensitive: bool) -> Inventory:
    from hacloud.spec.load import problems_from_validation

    try:
        return INVENTORY_ADAPTER.validate_python(value)
    except ValidationError as exc:
        problems = []
        for p in problems_from_validation(exc, Inventory, None, list_keys=True):
            message = p.message
            if sensitive:
                # a sensitive output's values must not reach a terminal or a log
                message = re.sub(r" \(got .*\)$", " (value hidden: the output is sensitive)", message)
            problems.append(Problem(f"{name}.{p.path}", message, p.remedy))
        raise SpecError(where, problems) from None


def _validated(inventory: Inventory, where: str) -> Inventory:
    """``inventory`` (built from Terraform values) checked by the inventory's own grammar, as a
    loaded inventory is: every address an IPv4 address, every device a safe path, ids tokens."""
    from hacloud.spec.load import problems_from_validation

    try:
        return INVENTORY_ADAPTER.validate_python(asdict(inventory))
    except ValidationError as exc:
        problems = [
            Problem(p.path, p.message, f"{p.remedy}; the value comes from Terraform: correct it there")
            for p in problems_from_validation(exc, Inventory, None)
        ]
        raise SpecError(where, problems) from None


# ---------------------------------------------------------------- 2. outputs named in --tf-map


class _MapNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(
        description="output holding the provider id (EC2 instance id, Azure VM name), e.g. ids[0]"
    )
    address: str = Field(description="output holding the node's private address, e.g. private_ips[0]")
    ssh_address: str | None = Field(None, description="output holding the SSH address (default: address)")
    links: list[str] = Field(default_factory=list, description="outputs of corosync link addresses")
    zone: str | None = Field(None, description="output holding the availability zone")
    volumes: dict[str, str] = Field(
        default_factory=dict, description="volume name -> output holding its device (or EBS volume id)"
    )


class _MapNetwork(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vpc_cidr: str | None = Field(None, description="output holding the VPC/VNet CIDR")
    route_tables: str | None = Field(None, description="output holding a list of route table ids")


class TfMap(BaseModel):
    """``--tf-map``: which outputs hold each inventory value (``name``, ``name[0]``, ``name.key``)."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1, le=1, description="mapping format version (1)")
    nodes: dict[str, _MapNode] = Field(description="node name -> where its values are")
    network: _MapNetwork = Field(default_factory=_MapNetwork, description="network values")


_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\]|\.[A-Za-z0-9_-]+|\[\"[^\"]+\"\])*)$")
_STEP = re.compile(r"\[(\d+)\]|\.([A-Za-z0-9_-]+)|\[\"([^\"]+)\"\]")


def resolve_ref(ref: str, doc: TfDocument, field_path: str, problems: list[Problem]) -> Any:
    """The value ``ref`` (``out``, ``out[1]``, ``out.key``) names, or None with a problem added."""
    match = _REF.match(ref)
    if not match:
        problems.append(
            Problem(
                field_path, f"{ref!r} is not an output reference", "write `name`, `name[0]` or `name.key`"
            )
        )
        return None
    name, steps = match.group(1), match.group(2)
    if name not in doc.outputs:
        problems.append(
            Problem(
                field_path,
                f"no output named {name!r}",
                f"use one of the outputs present: {', '.join(sorted(doc.outputs)) or '(none)'}",
            )
        )
        return None
    value = doc.outputs[name].value
    seen = name
    for step in _STEP.finditer(steps):
        index, key1, key2 = step.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                size = len(value) if isinstance(value, list) else "no"
                problems.append(
                    Problem(
                        field_path, f"{seen} has {size} items; [{index}] is out of range", "fix the index"
                    )
                )
                return None
            value = value[int(index)]
            seen += f"[{index}]"
        else:
            key = key1 or key2
            if not isinstance(value, dict) or key not in value:
                keys = ", ".join(sorted(value)) if isinstance(value, dict) else "none: it is not an object"
                problems.append(
                    Problem(field_path, f"{seen} has no key {key!r}", f"use one of its keys: {keys}")
                )
                return None
            value = value[key]
            seen += f".{key}"
    return value


def _from_map(spec: Spec, doc: TfDocument, source: TerraformSource, device: Any) -> Imported:
    from hacloud.spec.load import parse_document

    assert source.tf_map is not None
    text = _read_text(source.tf_map, "the mapping", "check --tf-map")
    mapping: TfMap = parse_document(text, str(source.tf_map), TfMap)
    problems: list[Problem] = []
    names = [n.name for n in spec.nodes]
    if sorted(mapping.nodes) != sorted(names):
        problems.append(
            Problem(
                "nodes",
                f"maps nodes {sorted(mapping.nodes)}, the spec has {names}",
                "map exactly the spec's nodes",
            )
        )
        raise SpecError(str(source.tf_map), problems)

    def text_of(ref: str | None, where: str) -> str | None:
        if ref is None:
            return None
        value = resolve_ref(ref, doc, where, problems)
        if value is None:
            return None
        if not isinstance(value, str | int):
            problems.append(
                Problem(where, f"{ref} is a {type(value).__name__}, not a string", "point at one value")
            )
            return None
        return str(value)

    nodes: list[NodeInfo] = []
    origin: list[str] = []
    for index, name in enumerate(names):
        m = mapping.nodes[name]
        at = f"nodes.{name}"
        node_id = text_of(m.id, f"{at}.id")
        address = text_of(m.address, f"{at}.address")
        ssh = text_of(m.ssh_address, f"{at}.ssh_address") or address
        links = [text_of(r, f"{at}.links[{i}]") for i, r in enumerate(m.links)]
        zone = text_of(m.zone, f"{at}.zone")
        volumes: dict[str, str] = {}
        for vi, vol in enumerate(spec.volumes):
            ref = m.volumes.get(vol.name)
            if ref is None:
                default = device(spec, index, vi, None)
                if default is None:
                    problems.append(
                        Problem(
                            f"{at}.volumes", f"no output for volume {vol.name!r}", f"add `{vol.name}: OUTPUT`"
                        )
                    )
                else:
                    volumes[vol.name] = default
                continue
            value = text_of(ref, f"{at}.volumes.{vol.name}")
            if value is not None:
                volumes[vol.name] = device(spec, index, vi, value)
        if node_id is None or address is None or ssh is None or None in links:
            continue
        link_list = tuple(str(x) for x in links) or (address,)
        nodes.append(NodeInfo(name, node_id, ssh, link_list, link_list[0], volumes, zone=zone))
        origin.append(f"{name} <- outputs {m.id} / {m.address} (id {node_id}, {address})")
    route_tables = (
        resolve_ref(mapping.network.route_tables, doc, "network.route_tables", problems)
        if (mapping.network.route_tables)
        else []
    )
    cidr = text_of(mapping.network.vpc_cidr, "network.vpc_cidr")
    if not isinstance(route_tables, list):
        problems.append(
            Problem("network.route_tables", "not a list of ids", "point at an output holding a list")
        )
    if problems:
        raise SpecError(str(source.tf_map), problems)
    network = NetworkInfo(vpc_cidr=cidr, route_tables=tuple(str(r) for r in route_tables))
    inventory = _validated(
        Inventory(1, spec.cluster.name, spec.provider.kind, (nodes[0], nodes[1]), network), doc.where
    )
    return Imported(inventory, tuple(origin), doc.where)


# ---------------------------------------------------------------- 3. the state's resources


def choose(spec: Spec, candidates: list[Candidate], kind: str, where: str) -> list[tuple[Candidate, str]]:
    """Pick one candidate per spec node: by ``nodes[].id``, then by name, then the only two left.
    More than two left to choose from is an error listing every candidate."""
    listing = "\n      ".join(c.describe() for c in candidates)
    if len(candidates) < 2:
        raise HacloudError(
            f"{where}: found {len(candidates)} {kind} resource(s); a pair needs two",
            "pass the state of the Terraform that creates both nodes",
            code="HAC344",
        )
    picked: dict[str, tuple[Candidate, str]] = {}
    left = list(candidates)
    for i, node in enumerate(spec.nodes):
        if node.id:
            match = [c for c in left if node.id in (c.id, c.name)]
            if not match:
                raise HacloudError(
                    f"{where}: nodes[{i}].id is {node.id!r}, but no {kind} in the state has that id; found:\n"
                    f"      {listing}",
                    f"set nodes[{i}].id to one of the ids listed",
                    code="HAC345",
                )
            picked[node.name] = (match[0], f"nodes[{i}].id names it")
            left.remove(match[0])
    for node in spec.nodes:
        if node.name in picked:
            continue
        match = [c for c in left if c.name == node.name]
        if len(match) == 1:
            picked[node.name] = (match[0], f"its name is {node.name}")
            left.remove(match[0])
    rest = [n for n in spec.nodes if n.name not in picked]
    if rest and len(left) == len(rest):
        for node, cand in zip(rest, left, strict=True):
            picked[node.name] = (cand, f"the only {kind} left for it, in state order")
    elif rest:
        raise HacloudError(
            f"{where}: {len(candidates)} {kind} resources could be nodes of this pair; hacloud will not "
            f"guess which two:\n      {listing}",
            "name the two in the spec: `nodes[].id: <id>` for each node (or give the machines the node "
            "names as Name tag / VM name), or map outputs with --tf-map",
            code="HAC346",
        )
    return [picked[n.name] for n in spec.nodes]


def _from_resources(spec: Spec, doc: TfDocument, provider: Any) -> Imported:
    try:
        found = provider.terraform_nodes(spec, list(doc.resources))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        # an attribute of a type Terraform's provider never writes (a hand-edited state)
        raise _fail(
            doc.where,
            f"a resource attribute hacloud reads has an unexpected type or value: {exc}",
            _STATE_FIX,
            "resources",
        ) from None
    candidates, network, kind = found
    chosen = choose(spec, candidates, kind, doc.where)
    nodes: list[NodeInfo] = []
    origin: list[str] = []
    problems: list[Problem] = []
    for i, ((cand, why), node) in enumerate(zip(chosen, spec.nodes, strict=True)):
        volumes: dict[str, str] = {}
        for vi, vol in enumerate(spec.volumes):
            if vi < len(cand.devices):
                volumes[vol.name] = cand.devices[vi]
            else:
                problems.append(
                    Problem(
                        f"nodes[{i}]",
                        f"{cand.address} has {len(cand.devices)} data disk attachment(s) in the state; "
                        f"volume {vol.name!r} needs one more",
                        "attach a data disk to it in Terraform (aws_volume_attachment / "
                        "azurerm_virtual_machine_data_disk_attachment), or use --tf-map",
                    )
                )
        ssh = cand.private_ip
        options = getattr(spec.provider, "options", None)
        if getattr(options, "ssh_address", "private") == "public" and cand.public_ip:
            ssh = cand.public_ip
        nodes.append(
            NodeInfo(
                node.name,
                cand.id,
                ssh,
                (cand.private_ip,),
                cand.private_ip,
                volumes,
                zone=cand.zone,
                extra=dict(cand.extra, terraform_address=cand.address),
            )
        )
        origin.append(f"{node.name} <- {cand.describe()}: {why}")
    if problems:
        raise SpecError(doc.where, problems)
    inventory = _validated(
        Inventory(1, spec.cluster.name, spec.provider.kind, (nodes[0], nodes[1]), network), doc.where
    )
    return Imported(inventory, tuple(origin), doc.where)


# ---------------------------------------------------------------- entry point


def import_inventory(spec: Spec, source: TerraformSource, provider: Any) -> Imported:
    """The inventory of ``spec``'s cluster from ``source`` (see the module docstring)."""
    from hacloud.spec.inventory_file import check_inventory_matches

    if not source.path.exists():
        raise UsageError(
            f"--from-terraform {source.path}: no such file or directory", "check the path", code="HAC347"
        )
    doc = read_document(source)
    if source.tf_map is not None:
        imported = _from_map(spec, doc, source, provider.terraform_device)
    elif _inventory_outputs(doc):
        imported = _from_inventory_output(spec, doc, _inventory_outputs(doc))
    else:
        if not doc.has_state:
            doc = read_document(source, want_state=True)
        if not doc.resources:
            raise _fail(
                doc.where,
                f"no output {INVENTORY_OUTPUT!r} and no resources to read nodes from; outputs present: "
                f"{', '.join(sorted(doc.outputs)) or '(none)'}",
                "use terraform/modules/*-ha-pair (they publish hacloud_inventory), pass the "
                "terraform.tfstate, or name your outputs in a mapping file with --tf-map",
                INVENTORY_OUTPUT,
            )
        imported = _from_resources(spec, doc, provider)
    if imported.inventory.provider != spec.provider.kind:
        raise _fail(
            doc.where,
            f"the inventory is for provider {imported.inventory.provider!r}, "
            f"the spec uses {spec.provider.kind!r}",
            "pass the Terraform of this cluster, or fix provider.kind",
            "provider",
        )
    check_inventory_matches(spec, imported.inventory, doc.where)
    return imported
