"""Target software versions and the syntax each one needs.

Precedence for each node: facts read from the node (inventory) > ``targets`` in the spec >
the profile's ``platform.*`` default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hacloud.errors import HacloudError, UsageError
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile

MIN_PACEMAKER = (2, 0, 4)  # priority-fencing-delay appeared in 2.0.4 (PX cluster-options.rst)


_VERSION = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")


def parse_version(text: str, where: str = "the version") -> tuple[int, ...]:
    """``2.1.5`` -> (2, 1, 5); anything else is a UsageError (exit 2) naming ``where`` it came
    from, so a hand-edited fact or override never ends in a traceback."""
    if not _VERSION.match(text):
        raise UsageError(
            f"{where} is {text!r}, not a version",
            f"set {where} to a dotted version such as 2.1.5 (or remove it: hacloud then reads the nodes)",
            code="HAC220",
        )
    return tuple(int(part) for part in text.split("."))


def _pacemaker_version(spec: Spec, index: int, fact: str | None, profile: Profile) -> tuple[str, str]:
    """(the Pacemaker version that applies to node ``index``, where it was set)."""
    if fact:
        return fact, f"the inventory's nodes[{index}].facts.pacemaker"
    if spec.targets.pacemaker:
        return spec.targets.pacemaker, "targets.pacemaker"
    if "platform.pacemaker" in spec.overrides:
        return profile.text("platform.pacemaker"), "overrides: platform.pacemaker"
    return profile.text("platform.pacemaker"), f"platform.pacemaker of profile {profile.name}"


@dataclass(frozen=True)
class Targets:
    drbd: str
    pacemaker: tuple[int, ...]
    os_family: str

    @property
    def fencing_prefix(self) -> str:
        """Pacemaker 3.0.2 renamed stonith-* cluster options to fencing-*."""
        return "fencing" if self.pacemaker >= (3, 0, 2) else "stonith"

    @property
    def promoted(self) -> str:
        return "Promoted" if self.pacemaker >= (2, 1, 0) else "Master"

    @property
    def unpromoted(self) -> str:
        return "Unpromoted" if self.pacemaker >= (2, 1, 0) else "Slave"

    @property
    def schema(self) -> str:
        # pacemaker-3.7 is the first schema that knows the Promoted/Unpromoted role names.
        return "pacemaker-3.7" if self.pacemaker >= (2, 1, 0) else "pacemaker-3.2"


def resolve_targets(spec: Spec, inventory: Inventory, profile: Profile) -> Targets:
    """Pick one DRBD generation and the lowest Pacemaker version across both nodes."""
    drbd = {n.facts.drbd or spec.targets.drbd or profile.text("platform.drbd") for n in inventory.nodes}
    if len(drbd) != 1:
        raise HacloudError(
            f"the nodes run different DRBD generations ({', '.join(sorted(drbd))})",
            "install the same DRBD kernel module generation on both nodes",
            code="HAC221",
        )
    versions = [
        parse_version(*_pacemaker_version(spec, i, n.facts.pacemaker, profile))
        for i, n in enumerate(inventory.nodes)
    ]
    pacemaker = min(versions)
    if pacemaker < MIN_PACEMAKER:
        raise HacloudError(
            f"Pacemaker {'.'.join(map(str, pacemaker))} is too old",
            "hacloud needs Pacemaker >= 2.0.4 (priority-fencing-delay); upgrade the nodes",
            code="HAC222",
        )
    families = {n.facts.os_family or profile.text("platform.os_family") for n in inventory.nodes}
    return Targets(drbd.pop(), pacemaker, sorted(families)[0])
