"""The on-prem provider: hosts and block devices the user already has, named in the spec.

Nodes, addresses and devices all come from the spec (the spec loader insists on them), so the
planned inventory is the real one; the SSH deploy engine lands with issue #4.
"""

from __future__ import annotations

from hacloud.provider import BaseProvider, Capabilities


class OnpremProvider(BaseProvider):
    name = "onprem"
    capabilities = Capabilities(
        create_nodes=False,
        power_control=False,
        missing={"create_nodes": "on-prem nodes are the hosts you list in the spec"},
    )
    tracking = "issue #4 (deploy engine, on-prem provider)"


provider = OnpremProvider()
