"""Read an inventory file and check that it describes the spec's cluster.

Contract: :func:`load_inventory` returns a validated :class:`~hacloud.model.Inventory` or raises
SpecError listing every problem (with paths and lines); :func:`check_inventory_matches` raises
SpecError when the inventory and the spec disagree on cluster, nodes, links or volumes.
"""

from __future__ import annotations

from pathlib import Path

from hacloud.errors import Problem, SpecError
from hacloud.model import Inventory
from hacloud.spec import Spec
from hacloud.specload import parse_document


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
    if problems:
        raise SpecError(filename, problems)
