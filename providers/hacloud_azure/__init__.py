"""The Azure provider (azure-identity/azure-mgmt-*, imported lazily; `pip install 'hacloud[azure]'`).

hacloud names each VM after its node, and data disks sit at known LUNs, so the planned
inventory needs placeholders only for addresses. Creating VMs, disks, the load balancer and
role assignments lands with issue #7.
"""

from __future__ import annotations

from hacloud.provider import BaseProvider, Capabilities
from hacloud.spec import Spec


class AzureProvider(BaseProvider):
    name = "azure"
    capabilities = Capabilities(create_nodes=True, power_control=True)
    tracking = "issue #7 (Azure provider)"

    def default_device(self, spec: Spec, index: int) -> str | None:
        # hacloud attaches volume N at LUN N; the azure udev rules publish this path.
        return f"/dev/disk/azure/scsi1/lun{index}"


provider = AzureProvider()
