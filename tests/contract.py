"""The provider contract every provider that creates infrastructure passes (issue #6/#7).

A provider test module builds a :class:`Target` (the provider, a workspace, and two
*independent* views of the backing system: a census of everything in it, tagged or not, and
what still carries the cluster's tag) and calls :func:`run_contract`. The views come from the
backing system's own API, never from what the provider returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacloud.provision.provider import Provider
from hacloud.spec.workspace import Workspace


@dataclass(frozen=True)
class Target:
    provider: Provider
    ws: Workspace
    #: everything in the account/system that the provider could have made
    census: Callable[[], dict[str, Any]]
    #: kind -> ids still tagged for the cluster; data disks under the key "volumes"
    leftovers: Callable[[], dict[str, list[str]]]


def run_contract(t: Target) -> None:
    p, ws = t.provider, t.ws
    volumes_per_node = len(ws.spec.volumes)
    before = t.census()

    inv = p.ensure_volumes(ws, p.ensure_nodes(ws))
    made = t.census()
    assert made != before, "ensure made nothing"
    assert not inv.placeholder, inv

    # ensure twice creates nothing new (counted independently) and returns the same inventory
    assert p.ensure_volumes(ws, p.ensure_nodes(ws)) == inv
    assert t.census() == made

    # discover is read-only and sees exactly what ensure made
    assert p.discover(ws) == inv
    assert t.census() == made

    # teardown leaves no tagged resource but the data volumes, which stay by default
    p.teardown(ws)
    left = t.leftovers()
    assert {k: v for k, v in left.items() if k != "volumes" and v} == {}, left
    assert len(left.get("volumes", [])) == 2 * volumes_per_node, left

    # a later ensure puts the kept data volumes back on the new nodes
    again = p.ensure_volumes(ws, p.ensure_nodes(ws))
    assert [n.volumes for n in again.nodes] == [n.volumes for n in inv.nodes]

    # teardown with delete_volumes leaves nothing tagged at all, and is idempotent
    p.teardown(ws, delete_volumes=True)
    assert {k: v for k, v in t.leftovers().items() if v} == {}
    p.teardown(ws, delete_volumes=True)
    assert {k: v for k, v in t.leftovers().items() if v} == {}
