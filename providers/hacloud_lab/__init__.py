"""The lab provider: two user-mode Linux guests with real DRBD on this machine.

This package only declares the lab's layout (addresses come from the spec, data disks are
the guests' second UML block device); creating guests lands with the lab issue (#3).
"""

from __future__ import annotations

from hacloud.provider import BaseProvider, Capabilities
from hacloud.spec import Spec


class LabProvider(BaseProvider):
    name = "lab"
    capabilities = Capabilities(create_nodes=True, power_control=True)
    tracking = "issue #3 (lab provider)"

    def default_device(self, spec: Spec, index: int) -> str | None:
        # ubd0 is the root disk; ubd1, ubd2, ... are the data disks, one per volume.
        return f"/dev/ubd{chr(ord('b') + index)}"


provider = LabProvider()
