"""The lab provider: two user-mode Linux guests with real DRBD and virtual BMCs on this machine.

Importing this package is cheap (no pyghmi, no subprocess, not even the provider): ``provider``
and ``LabProvider`` load on first use, so the CLI can load the lab's command group
(:mod:`hacloud_lab.cli`) without loading the provider and the spec models behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hacloud_lab.lab import LabProvider

    provider: LabProvider

__all__ = ["LabProvider", "provider"]


def __getattr__(name: str) -> object:
    """``provider`` (the one instance the entry point names) and ``LabProvider``, on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from hacloud_lab.lab import LabProvider

    globals().update(LabProvider=LabProvider, provider=globals().get("provider") or LabProvider())
    return globals()[name]
