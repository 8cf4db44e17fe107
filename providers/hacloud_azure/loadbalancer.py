"""Azure load balancer for the VIP: a Standard internal load balancer, frontend = the VIP,
both NICs in the backend pool, TCP probe on the azure-lb port, one HA-ports rule with floating
IP (Microsoft's SLES/RHEL HA guides)."""

from __future__ import annotations

from typing import Any

from hacloud.spec.model import AzureLbVip
from hacloud_azure.base import AzureBase


class LoadBalancer(AzureBase):
    def lb_body(self) -> dict[str, Any]:
        vip = self.spec.vip
        assert isinstance(vip, AzureLbVip)
        base = self.lb_id()
        return {
            "location": self.opts.location,
            "tags": self.tags(),
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {
                "frontendIPConfigurations": [
                    {
                        "name": "frontend",
                        "properties": {
                            "privateIPAddress": str(vip.address),
                            "privateIPAllocationMethod": "Static",
                            "subnet": {"id": self.opts.subnet_id},
                        },
                        **({"zones": list(self.opts.zones)} if self.opts.zones else {}),
                    }
                ],
                "backendAddressPools": [{"name": "backend"}],
                "probes": [
                    {
                        "name": "azure-lb",
                        # MS-SLES/MS-NFS: TCP probe on the azure-lb port, every 5 s, down after 2
                        "properties": {
                            "protocol": "Tcp",
                            "port": vip.probe_port,
                            "intervalInSeconds": 5,
                            "probeThreshold": 2,
                        },
                    }
                ],
                "loadBalancingRules": [
                    {
                        "name": "ha-ports",
                        # HA ports (protocol All, port 0) + floating IP: the node answers on the
                        # VIP itself (IPaddr2); idle timeout 30 min as Microsoft's guides set it.
                        "properties": {
                            "frontendIPConfiguration": {"id": f"{base}/frontendIPConfigurations/frontend"},
                            "backendAddressPool": {"id": f"{base}/backendAddressPools/backend"},
                            "probe": {"id": f"{base}/probes/azure-lb"},
                            "protocol": "All",
                            "frontendPort": 0,
                            "backendPort": 0,
                            "enableFloatingIP": True,
                            "idleTimeoutInMinutes": 30,
                            "enableTcpReset": False,
                        },
                    }
                ],
            },
        }

    def ensure_lb(self) -> str | None:
        if not isinstance(self.spec.vip, AzureLbVip):
            return None
        name = f"{self.cluster}-lb"
        want = self.lb_body()
        have = self._get("read the load balancer", self.c.network.load_balancers.get, self.rg, name)
        if (have is None or _lb_differs(have, want)) and self.change(
            f"load-balancer/{name}",
            "create" if have is None else "update",
            f"network: {'create' if have is None else 'update'} internal load balancer {name}",
        ):
            self.c.wait(
                f"write load balancer {name}",
                self.c.network.load_balancers.begin_create_or_update,
                self.rg,
                name,
                want,
            )
        return f"{self.rg_id()}/providers/Microsoft.Network/loadBalancers/{name}/backendAddressPools/backend"


def _lb_differs(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def canon(body: dict[str, Any]) -> dict[str, Any]:
        p = body["properties"]
        fe = p["frontendIPConfigurations"][0]["properties"]
        probe = p["probes"][0]["properties"]
        rule = p["loadBalancingRules"][0]["properties"]
        return {
            "sku": body.get("sku", {}).get("name"),
            "fe": (fe.get("privateIPAddress"), fe.get("subnet", {}).get("id", "").lower()),
            "probe": (
                probe.get("protocol"),
                probe.get("port"),
                probe.get("intervalInSeconds"),
                probe.get("probeThreshold"),
            ),
            "rule": (
                rule.get("protocol"),
                rule.get("frontendPort"),
                rule.get("backendPort"),
                rule.get("enableFloatingIP"),
                rule.get("idleTimeoutInMinutes"),
            ),
            "tags": body.get("tags"),
        }

    try:
        return canon(have) != canon(want)
    except (KeyError, IndexError):
        return True
