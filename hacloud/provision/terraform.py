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

from typing import TYPE_CHECKING, Any

from hacloud.errors import HacloudError, Problem, SpecError, UsageError
from hacloud.provision.tfdocument import (
    INVENTORY_OUTPUT,
    STATE_FIX,
    STATE_VERSION,
    Candidate,
    Imported,
    Output,
    TfDocument,
    TfResource,
    fail,
    read_document,
    terraform_binary,
)
from hacloud.provision.tfmap import (
    TfMap,
    from_inventory_output,
    from_map,
    inventory_outputs,
    resolve_ref,
    validated,
)
from hacloud.spec.inventory import Inventory, NodeInfo
from hacloud.spec.workspace import TerraformSource

if TYPE_CHECKING:
    from hacloud.spec.model import Spec

__all__ = [
    "INVENTORY_OUTPUT",
    "STATE_VERSION",
    "Candidate",
    "Imported",
    "Output",
    "TerraformSource",
    "TfDocument",
    "TfMap",
    "TfResource",
    "choose",
    "import_inventory",
    "read_document",
    "resolve_ref",
    "terraform_binary",
]


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
        raise fail(
            doc.where,
            f"a resource attribute hacloud reads has an unexpected type or value: {exc}",
            STATE_FIX,
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
    inventory = validated(
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
        imported = from_map(spec, doc, source, provider.terraform_device)
    elif inventory_outputs(doc):
        imported = from_inventory_output(spec, doc, inventory_outputs(doc))
    else:
        if not doc.has_state:
            doc = read_document(source, want_state=True)
        if not doc.resources:
            raise fail(
                doc.where,
                f"no output {INVENTORY_OUTPUT!r} and no resources to read nodes from; outputs present: "
                f"{', '.join(sorted(doc.outputs)) or '(none)'}",
                "use terraform/modules/*-ha-pair (they publish hacloud_inventory), pass the "
                "terraform.tfstate, or name your outputs in a mapping file with --tf-map",
                INVENTORY_OUTPUT,
            )
        imported = _from_resources(spec, doc, provider)
    if imported.inventory.provider != spec.provider.kind:
        raise fail(
            doc.where,
            f"the inventory is for provider {imported.inventory.provider!r}, "
            f"the spec uses {spec.provider.kind!r}",
            "pass the Terraform of this cluster, or fix provider.kind",
            "provider",
        )
    check_inventory_matches(spec, imported.inventory, doc.where)
    return imported
