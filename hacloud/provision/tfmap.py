"""Inventories Terraform publishes: the ``hacloud_inventory`` output of hacloud's modules
(:func:`from_inventory_output`), or outputs a ``--tf-map`` file names (:func:`from_map`), each
checked by the inventory's own grammar (:func:`validated`) and every problem listed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hacloud.errors import Problem, SpecError
from hacloud.provision.tfdocument import (
    INVENTORY_OUTPUT,
    Imported,
    Output,
    TfDocument,
    fail,
    read_text,
)
from hacloud.spec.inventory import (
    INVENTORY_ADAPTER,
    INVENTORY_SCHEMA_VERSION,
    Inventory,
    NetworkInfo,
    NodeInfo,
)
from hacloud.spec.workspace import TerraformSource

if TYPE_CHECKING:
    from hacloud.spec.model import Spec


# ---------------------------------------------------------------- 1. the hacloud_inventory output


def inventory_outputs(doc: TfDocument) -> dict[str, Output]:
    return {
        name: out
        for name, out in doc.outputs.items()
        if name == INVENTORY_OUTPUT or name.endswith(f"_{INVENTORY_OUTPUT}")
    }


def from_inventory_output(spec: Spec, doc: TfDocument, found: dict[str, Output]) -> Imported:
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
        raise fail(
            doc.where,
            f"{len(found)} inventory outputs, {len(mine)} of them for cluster "
            f"{spec.cluster.name!r}: {listed}",
            "set cluster.name in the spec to the cluster you mean, or pass --tf-map",
        )
    name, out = next(iter(mine.items())) if mine else next(iter(found.items()))
    value = out.value
    if not isinstance(value, dict):
        raise fail(
            doc.where, f"output {name} is not an object", "publish the module's hacloud_inventory as is", name
        )
    version = value.get("schema_version")
    if version != INVENTORY_SCHEMA_VERSION:
        raise fail(
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


def validated(inventory: Inventory, where: str) -> Inventory:
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


def from_map(spec: Spec, doc: TfDocument, source: TerraformSource, device: Any) -> Imported:
    """The inventory from the outputs ``source.tf_map`` names; every problem listed at once."""
    from hacloud.spec.load import parse_document

    assert source.tf_map is not None
    text = read_text(source.tf_map, "the mapping", "check --tf-map")
    mapping: TfMap = parse_document(text, str(source.tf_map), TfMap)
    names = [n.name for n in spec.nodes]
    if sorted(mapping.nodes) != sorted(names):
        problem = Problem(
            "nodes",
            f"maps nodes {sorted(mapping.nodes)}, the spec has {names}",
            "map exactly the spec's nodes",
        )
        raise SpecError(str(source.tf_map), [problem])
    values = _Values(doc, [])
    nodes: list[NodeInfo] = []
    origin: list[str] = []
    for index, name in enumerate(names):
        m = mapping.nodes[name]
        found = _map_node(spec, index, name, m, values, device)
        if found is not None:
            node, address = found
            nodes.append(node)
            origin.append(f"{name} <- outputs {m.id} / {m.address} (id {node.id}, {address})")
    route_tables = (
        resolve_ref(mapping.network.route_tables, doc, "network.route_tables", values.problems)
        if (mapping.network.route_tables)
        else []
    )
    cidr = values.text(mapping.network.vpc_cidr, "network.vpc_cidr")
    if not isinstance(route_tables, list):
        values.problems.append(
            Problem("network.route_tables", "not a list of ids", "point at an output holding a list")
        )
    if values.problems:
        raise SpecError(str(source.tf_map), values.problems)
    network = NetworkInfo(vpc_cidr=cidr, route_tables=tuple(str(r) for r in route_tables))
    inventory = validated(
        Inventory(1, spec.cluster.name, spec.provider.kind, (nodes[0], nodes[1]), network), doc.where
    )
    return Imported(inventory, tuple(origin), doc.where)


@dataclass
class _Values:
    """Output values by reference, collecting a problem for each that cannot be read."""

    doc: TfDocument
    problems: list[Problem]

    def text(self, ref: str | None, where: str) -> str | None:
        if ref is None:
            return None
        value = resolve_ref(ref, self.doc, where, self.problems)
        if value is None:
            return None
        if not isinstance(value, str | int):
            self.problems.append(
                Problem(where, f"{ref} is a {type(value).__name__}, not a string", "point at one value")
            )
            return None
        return str(value)


def _map_node(
    spec: Spec, index: int, name: str, m: _MapNode, values: _Values, device: Any
) -> tuple[NodeInfo, str] | None:
    """(node ``name``, its address) from the outputs ``m`` names (None: a value is missing, problem
    recorded)."""
    at = f"nodes.{name}"
    node_id = values.text(m.id, f"{at}.id")
    address = values.text(m.address, f"{at}.address")
    ssh = values.text(m.ssh_address, f"{at}.ssh_address") or address
    links = [values.text(r, f"{at}.links[{i}]") for i, r in enumerate(m.links)]
    zone = values.text(m.zone, f"{at}.zone")
    volumes: dict[str, str] = {}
    for vi, vol in enumerate(spec.volumes):
        ref = m.volumes.get(vol.name)
        if ref is None:
            default = device(spec, index, vi, None)
            if default is None:
                values.problems.append(
                    Problem(
                        f"{at}.volumes", f"no output for volume {vol.name!r}", f"add `{vol.name}: OUTPUT`"
                    )
                )
            else:
                volumes[vol.name] = default
            continue
        value = values.text(ref, f"{at}.volumes.{vol.name}")
        if value is not None:
            volumes[vol.name] = device(spec, index, vi, value)
    if node_id is None or address is None or ssh is None or None in links:
        return None
    link_list = tuple(str(x) for x in links) or (address,)
    return NodeInfo(name, node_id, ssh, link_list, link_list[0], volumes, zone=zone), address
