"""What every step of the deploy engine shares: the nodes, what was rendered for them, the
changes recorded so far, and the clock its waits run on.

Contract: a step records each change it makes (or, with ``apply=False``, would make) through
:meth:`EngineBase.change` before acting, and acts only when ``apply``; it never prints (the
``progress`` callback is the CLI's). Steps live in their own modules as mixins of
:class:`EngineBase`; :class:`hacloud.deploy.engine.Engine` composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hacloud.deploy.facts import REQUIRED, HostFacts
from hacloud.deploy.remote import Connection, parallel
from hacloud.poll import SYSTEM, Clock
from hacloud.provision.changes import Change
from hacloud.provision.provider import NodeNeeds
from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec


class EngineBase:
    """The state the engine's steps share (see the module doc)."""

    def __init__(
        self,
        spec: Spec,
        inventory: Inventory,
        bundle: Bundle,
        conns: dict[str, Connection],
        progress: Callable[[str], None],
        *,
        apply: bool,
        force: bool = False,
        needs: NodeNeeds | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.needs = needs or NodeNeeds()
        #: the commands the nodes must have: the core's and the provider's agents'
        self.commands = (*REQUIRED, *self.needs.commands)
        self.spec = spec
        self.inventory = inventory
        self.bundle = bundle
        self.conns = conns
        self.progress = progress
        self.apply = apply
        self.force = force
        #: every wait of every step runs on this clock (tests pass a ManualClock)
        self.clock = clock
        self.names = [n.name for n in inventory.nodes]
        self.changes: list[Change] = []
        self.facts: dict[str, HostFacts] = {}

    def change(self, node: str, step: str, detail: str) -> None:
        c = Change(node, step, detail)
        self.changes.append(c)
        self.progress(("" if self.apply else "would: ") + str(c))

    def _pacemaker_active(self, name: str) -> bool:
        return self.facts[name].services.get("pacemaker", ("", ""))[1] == "active"


def on_nodes(fn: Callable[[str], Any], names: list[str]) -> list[Any]:
    """``fn`` on every node at once, results in ``names``' order; an interrupt does not wait
    for the running steps (see :func:`hacloud.deploy.remote.parallel`)."""
    return parallel(fn, names)
