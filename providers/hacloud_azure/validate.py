"""Azure phase 1, validate: read the subscription and list every problem before anything is
created (the subnet exists, the VIP inside it, two different zones, the admin's key file)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hacloud.spec.model import AzureLbVip
from hacloud_azure.base import AzureBase, Site, parse_id


class Validation(AzureBase):
    def validate(self) -> Site:
        """The subnet the nodes go into; raises one error listing every problem (nothing made)."""
        problems: list[str] = []
        subnet = self._validate_subnet(problems)
        zones = self.opts.zones
        if zones and (len(zones) != 2 or zones[0] == zones[1]):
            problems.append(
                "provider.options.zones: give two different zones (one per node), "
                "or [] for an availability set"
            )
        missing = [n for n in self.spec.nodes if self._vm(n) is None]
        if missing:
            key = self.opts.ssh_public_key
            if not key:
                problems.append(
                    "provider.options.ssh_public_key: name the public key file of the VMs' admin "
                    f"(needed to create {', '.join(n.name for n in missing)})"
                )
            elif not self.ws.resolve(key).is_file():
                problems.append(f"provider.options.ssh_public_key: {self.ws.resolve(key)} does not exist")
        self.refuse(problems)
        assert subnet is not None
        return Site(subnet)

    def _validate_subnet(self, problems: list[str]) -> dict[str, Any] | None:
        """The subnet ``provider.options.subnet_id`` names, with the VIP inside it."""
        if not self.opts.subnet_id:
            problems.append("provider.options.subnet_id: name the subnet (resource id) both NICs go into")
            return None
        f = parse_id(self.opts.subnet_id)
        if not {"subscriptions", "resourcegroups", "virtualnetworks", "subnets"} <= set(f):
            problems.append(f"provider.options.subnet_id: {self.opts.subnet_id} is not a subnet resource id")
            return None
        subnet = self._get(
            "read the subnet",
            self.c.network.subnets.get,
            f["resourcegroups"],
            f["virtualnetworks"],
            f["subnets"],
        )
        if subnet is None:
            problems.append(f"provider.options.subnet_id: subnet {self.opts.subnet_id} does not exist")
            return None
        if isinstance(self.spec.vip, AzureLbVip):
            prefixes = [
                subnet["properties"].get("addressPrefix"),
                *subnet["properties"].get("addressPrefixes", []),
            ]
            nets = [ipaddress.IPv4Network(p) for p in prefixes if p]
            if not any(self.spec.vip.address in n for n in nets):
                problems.append(
                    f"vip.address: {self.spec.vip.address} is outside the subnet "
                    f"({', '.join(map(str, nets))}); the internal load balancer's frontend must be an "
                    "address of the nodes' subnet"
                )
        return subnet
