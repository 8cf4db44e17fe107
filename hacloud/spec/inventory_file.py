"""Read an inventory file and check that it describes the spec's cluster.

Contract: :func:`load_inventory` returns a validated :class:`~hacloud.spec.inventory.Inventory` or raises
SpecError listing every problem (with paths and lines); :func:`check_inventory_matches` raises
SpecError when the inventory and the spec disagree on cluster, nodes, links or volumes.
"""

from __future__ import annotations

from pathlib import Path

from hacloud.errors import Problem, SpecError
from hacloud.spec import grammar
from hacloud.spec.inventory import Inventory
from hacloud.spec.load import parse_document
from hacloud.spec.model import Spec


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text (a binary file?)"
        raise SpecError(
            str(path),
            [
                Problem(
                    "",
                    f"cannot read the inventory: {why}",
                    "pass the file a provider or `hacloud render` wrote",
                )
            ],
            code="HAC210",
        ) from None
    inventory: Inventory = parse_document(text, str(path), Inventory)
    return inventory


def check_inventory_matches(spec: Spec, inventory: Inventory, filename: str) -> None:
    problems: list[Problem] = []
    if inventory.cluster != spec.cluster.name:
        problems.append(
            Problem(
                "cluster",
                f"inventory is for cluster {inventory.cluster!r}, the spec for {spec.cluster.name!r}",
                "pass the inventory of this cluster",
            )
        )
    spec_names = [n.name for n in spec.nodes]
    inv_names = [n.name for n in inventory.nodes]
    if spec_names != inv_names:
        problems.append(
            Problem(
                "nodes",
                f"inventory nodes {inv_names} differ from the spec's {spec_names}",
                "list the same node names in the same order",
            )
        )
    counts = {len(n.links) for n in inventory.nodes}
    if len(counts) != 1 or not counts <= {1, 2}:
        problems.append(
            Problem(
                "nodes",
                "both nodes need the same number (1 or 2) of corosync links",
                "give each node one address per corosync network",
            )
        )
    for i, node in enumerate(inventory.nodes):
        for vol in spec.volumes:
            if vol.name not in node.volumes:
                problems.append(
                    Problem(
                        f"nodes[{i}].volumes",
                        f"no device for volume {vol.name!r}",
                        f'add `"{vol.name}": "/dev/disk/by-id/..."`',
                    )
                )
    problems += id_problems(inventory)
    if problems:
        raise SpecError(filename, problems, code="HAC211")


# Provider ids as the provider's API spells them; they reach root shell lines and pcmk_host_map.
_PROVIDER_IDS = {
    "aws": (grammar.AWS_INSTANCE_ID, "an EC2 instance id (i- and 8 to 17 hex digits)"),
    "azure": (grammar.AZURE_VM_NAME, "an Azure VM name (letters, digits, '_', '.', '-'; at most 64)"),
}


def id_problems(inventory: Inventory) -> list[Problem]:
    """Node ids that are not the provider's id grammar (placeholders are exempt)."""
    rule = _PROVIDER_IDS.get(inventory.provider)
    if rule is None:
        return []
    pattern, what = rule
    return [
        Problem(
            f"nodes[{i}].id",
            f"{node.id!r} is not {what}",
            "use the machine's real id (Terraform: the aws_instance / azurerm_linux_virtual_machine "
            "resource, or the output that holds it)",
        )
        for i, node in enumerate(inventory.nodes)
        if not node.placeholder and not grammar.matches(pattern, node.id)
    ]


def validated(inventory: Inventory, where: str) -> Inventory:
    """``inventory`` as a provider built it (from its API, a lab, a plan) checked by the same
    grammar as a loaded or imported one before anything is rendered from it: every address an
    IPv4 address, every device a safe path, ids the provider's grammar. A value that fails is
    a listed problem (exit 2), never written to a node."""
    from dataclasses import asdict

    from pydantic import ValidationError

    from hacloud.spec.inventory import INVENTORY_ADAPTER
    from hacloud.spec.load import problems_from_validation

    try:
        checked = INVENTORY_ADAPTER.validate_python(asdict(inventory))
    except ValidationError as exc:
        problems = problems_from_validation(exc, Inventory, None)
    else:
        problems = id_problems(checked)
        if not problems:
            return checked
    raise SpecError(
        where,
        [
            Problem(p.path, p.message, f"{p.remedy}; the value comes from {where}: correct it there")
            for p in problems
        ],
        code="HAC212",
    )
