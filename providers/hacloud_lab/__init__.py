"""The lab provider: two user-mode Linux guests with real DRBD and virtual BMCs on this machine.

Importing this package is cheap (no pyghmi, no subprocess): the heavy parts load when used.
"""

from __future__ import annotations

from hacloud_lab.lab import LabProvider

provider = LabProvider()

__all__ = ["LabProvider", "provider"]
