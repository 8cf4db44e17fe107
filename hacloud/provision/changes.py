"""The one record of a change, for infrastructure (the provider's account) and nodes (deploy).

Contract: every change hacloud makes, or with ``apply=False`` would make, is one frozen
:class:`Change`; `up` reports them as it goes and `plan` (text and ``--json``) lists them in
one list, infrastructure first, in the order they are made. ``str(change)`` is the line users
read; ``as_json()`` the structure ``plan --json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["infrastructure", "node"]


@dataclass(frozen=True)
class Change:
    """One change.

    ``target``: for a node change the node's name ("" for the cluster as a whole); for an
    infrastructure change the resource as ``kind/name`` (``instance/node1``,
    ``security-group/hacloud-db``, ``route/rtb-0ab/198.51.100.10/32``: names, not ids, where
    the resource does not exist yet). ``step``: what is done (a deploy step such as ``file``
    or ``cib``; for infrastructure a verb: ``create``, ``update``, ``delete``, ``attach``...).
    ``detail``: for a node change the detail of the step, for an infrastructure change the
    sentence `up` and `plan` show.
    """

    target: str
    step: str
    detail: str
    stage: Stage = "node"

    @property
    def node(self) -> str:
        """The node a node change is on ("" for the cluster, and for infrastructure)."""
        return self.target if self.stage == "node" else ""

    def __str__(self) -> str:
        if self.stage == "infrastructure":
            return self.detail
        where = f"{self.target}: " if self.target else "cluster: "
        return f"{where}{self.step}: {self.detail}"

    def as_json(self) -> dict[str, str]:
        """``plan --json``'s entry: stage, target, step, detail and ``text`` (the line shown)."""
        return {
            "stage": self.stage,
            "target": self.target,
            "step": self.step,
            "detail": self.detail,
            "text": str(self),
        }


def infrastructure(target: str, step: str, detail: str) -> Change:
    """An infrastructure change (see :class:`Change` for the fields)."""
    return Change(target, step, detail, "infrastructure")
