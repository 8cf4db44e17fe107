"""Azure network: the network security group, each node's NIC (created, or an existing VM's
NIC adopted: put into the load balancer's pool and given the link-1 ip configuration), the
availability set where the region has no zones (phase network), and their removal.

The NSG's node rules name the NICs' addresses, so it is written once before the NICs exist and
again, with the addresses, once they do.
"""

from __future__ import annotations

from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.provider import link_count
from hacloud.render.resources import drbd_ports
from hacloud.spec.model import AzureLbVip, NodeSpec
from hacloud_azure.api import call
from hacloud_azure.base import LINK_CONFIG, Site, link_config, primary_address
from hacloud_azure.loadbalancer import LoadBalancer


class Network(LoadBalancer):
    def ensure_network(self, site: Site) -> None:
        """``site``'s NSG, backend pool and NICs (a plan leaves out NICs it would create)."""
        self.ensure_availability_set()
        # the NSG's node rules name the NICs' addresses, known once the NICs exist
        site.nsg = self.ensure_nsg(*self._nic_addresses())
        site.pool = self.ensure_lb()
        for node in self.spec.nodes:
            nic = self.ensure_nic(node, site.nsg, site.pool)
            if nic is not None:
                site.nics[node.name] = nic
        nodes = [n for n in self.spec.nodes if n.name in site.nics]
        addresses = [primary_address(site.nics[n.name]) for n in nodes]
        links = [a for n in nodes for a in self._links(n, site.nics[n.name])]
        if len(addresses) == 2:
            self.ensure_nsg(addresses, links)

    def ensure_availability_set(self) -> None:
        if self.opts.zones:
            return
        name = f"{self.cluster}-avset"
        have = self._get("read the availability set", self.c.compute.availability_sets.get, self.rg, name)
        if have is None and self.change(
            f"availability-set/{name}",
            "create",
            f"compute: create availability set {name} (the region has no zones)",
        ):
            call(
                "create the availability set",
                self.c.compute.availability_sets.create_or_update,
                self.rg,
                name,
                {
                    "location": self.opts.location,
                    "tags": self.tags(),
                    "sku": {"name": "Aligned"},
                    "properties": {"platformFaultDomainCount": 2, "platformUpdateDomainCount": 5},
                },
            )

    def nsg_body(self, addresses: list[str], links: list[str] | None = None) -> dict[str, Any]:
        """``addresses``: the nodes' primary addresses (DRBD); ``links``: every corosync link
        address of both nodes (default: the primary ones)."""
        rules: list[dict[str, Any]] = []
        links = links or addresses

        def rule(
            name: str, prio: int, proto: str, ports: list[int], sources: list[str], dests: list[str]
        ) -> None:
            props: dict[str, Any] = {
                "protocol": proto,
                "access": "Allow",
                "direction": "Inbound",
                "priority": prio,
                "sourcePortRange": "*",
            }
            props |= (
                {"destinationPortRange": str(ports[0])}
                if len(ports) == 1
                else {"destinationPortRanges": [str(p) for p in ports]}
            )
            props |= (
                {"sourceAddressPrefix": sources[0]}
                if len(sources) == 1
                else {"sourceAddressPrefixes": sources}
            )
            props |= (
                {"destinationAddressPrefix": dests[0]}
                if len(dests) == 1
                else {"destinationAddressPrefixes": dests}
            )
            rules.append({"name": name, "properties": props})

        vip = self.spec.vip
        if isinstance(vip, AzureLbVip):
            # The probe comes from the platform address 168.63.129.16, tagged AzureLoadBalancer.
            rule("hacloud-lb-probe", 100, "Tcp", [vip.probe_port], ["AzureLoadBalancer"], ["*"])
        if addresses:
            count = link_count(self.spec)
            port = self.spec.corosync.cluster_port
            rule("hacloud-corosync", 110, "Udp", [port + i for i in range(count)], links, links)
            drbd = drbd_ports(self.spec)  # one port per DRBD resource, not per volume
            rule("hacloud-drbd", 120, "Tcp", drbd, addresses, addresses)
        if self.opts.admin_cidr:
            ssh = sorted({n.ssh.port for n in self.spec.nodes})
            rule("hacloud-ssh", 130, "Tcp", ssh, [self.opts.admin_cidr], ["*"])
        return {"location": self.opts.location, "tags": self.tags(), "properties": {"securityRules": rules}}

    def ensure_nsg(self, addresses: list[str], links: list[str] | None = None) -> str:
        name = f"{self.cluster}-nsg"
        want = self.nsg_body(addresses, links)
        have = self._get(
            "read the network security group", self.c.network.network_security_groups.get, self.rg, name
        )
        if have is None or not _same_rules(have, want) or have.get("tags") != want["tags"]:
            verb = "create" if have is None else "update the rules of"
            if self.change(
                f"network-security-group/{name}",
                verb.split(maxsplit=1)[0],
                f"network: {verb} network security group {name}",
            ):
                have = self.c.wait(
                    f"write network security group {name}",
                    self.c.network.network_security_groups.begin_create_or_update,
                    self.rg,
                    name,
                    want,
                )
        return f"{self.rg_id()}/providers/Microsoft.Network/networkSecurityGroups/{name}"

    def nic_body(self, node: NodeSpec, nsg_id: str, pool_id: str | None) -> dict[str, Any]:
        subnet = {"id": self.opts.subnet_id}
        ipc: dict[str, Any] = {"subnet": subnet, "privateIPAllocationMethod": "Dynamic"}
        if pool_id:
            ipc["loadBalancerBackendAddressPools"] = [{"id": pool_id}]
        configs = [{"name": "ipconfig1", "properties": {"primary": True, **ipc}}]
        if self.adds_link(node):
            configs.append(link_config(subnet))
        return {
            "location": self.opts.location,
            "tags": self.tags(),
            "properties": {"ipConfigurations": configs, "networkSecurityGroup": {"id": nsg_id}},
        }

    def adopt_nic(
        self, node: NodeSpec, rg: str, name: str, pool_id: str | None, nsg_id: str
    ) -> dict[str, Any]:
        """An existing VM's NIC: only put it into the backend pool (and behind the cluster's NSG
        when it has none); every other setting is carried over as it is."""
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, rg, name)
        if have is None:
            raise HacloudError(
                f"{node.name}: network interface {name} of the VM is gone",
                "look at the VM in the portal",
                code="HAC676",
            )
        body = _writable_nic(have)
        changed = False
        primary = body["properties"]["ipConfigurations"][0]["properties"]
        pools = primary.setdefault("loadBalancerBackendAddressPools", [])
        if pool_id and pool_id.lower() not in {x["id"].lower() for x in pools}:
            pools.append({"id": pool_id})
            changed = True
        if not pools:
            primary.pop("loadBalancerBackendAddressPools")
        if "networkSecurityGroup" not in body["properties"]:
            body["properties"]["networkSecurityGroup"] = {"id": nsg_id}
            changed = True
        configs = body["properties"]["ipConfigurations"]
        has_link = any(c["name"] == LINK_CONFIG for c in configs)
        if self.adds_link(node) and not has_link:
            configs.append(link_config({"id": primary["subnet"]["id"]}))
            changed = True
        elif has_link and not self.adds_link(node):  # corosync.links set to 1: give it back
            body["properties"]["ipConfigurations"] = [c for c in configs if c["name"] != LINK_CONFIG]
            changed = True
        if not changed or not self.change(
            f"network-interface/{name}",
            "update",
            f"{node.name}: put the VM's network interface {name} into the cluster's load balancer pool "
            f"(and give it the ip configuration {LINK_CONFIG} for corosync link 1)",
        ):
            return have
        return self.c.wait(
            f"write {name}", self.c.network.network_interfaces.begin_create_or_update, rg, name, body
        )

    def _release_nic(self, rg: str, name: str) -> None:
        """Undo :meth:`adopt_nic`: out of the cluster's pool, and its NSG off when it is hacloud's."""
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, rg, name)
        if have is None:
            return
        body = _writable_nic(have)
        pool = f"{self.lb_id()}/backendAddressPools/backend"
        changed = _without_pool(body, pool)
        nsg = body["properties"].get("networkSecurityGroup", {}).get("id", "")
        if nsg.lower().endswith(f"/networksecuritygroups/{self.cluster}-nsg"):
            del body["properties"]["networkSecurityGroup"]
            changed = True
        configs = body["properties"]["ipConfigurations"]
        if any(c["name"] == LINK_CONFIG for c in configs):
            body["properties"]["ipConfigurations"] = [c for c in configs if c["name"] != LINK_CONFIG]
            changed = True
        if changed and self.change(
            f"network-interface/{name}",
            "update",
            f"take network interface {name} out of the cluster's load balancer and NSG",
        ):
            self.c.wait(
                f"write {name}", self.c.network.network_interfaces.begin_create_or_update, rg, name, body
            )

    def ensure_nic(self, node: NodeSpec, nsg_id: str, pool_id: str | None) -> dict[str, Any] | None:
        rg, name, adopted = self.nic_ref(node)
        if adopted:
            return self.adopt_nic(node, rg, name, pool_id, nsg_id)
        want = self.nic_body(node, nsg_id, pool_id)
        have = self._get(f"read {name}", self.c.network.network_interfaces.get, self.rg, name)
        if have is not None and not _nic_differs(have, want):
            return have
        if not self.change(
            f"network-interface/{name}",
            "create" if have is None else "update",
            f"{node.name}: {'create' if have is None else 'update'} network interface {name}",
        ):
            return have
        if have is not None:
            # keep the addresses the NIC has: a node's address must not move under corosync
            held = {
                c["name"]: c["properties"].get("privateIPAddress")
                for c in have["properties"]["ipConfigurations"]
            }
            for cfg in want["properties"]["ipConfigurations"]:
                if held.get(cfg["name"]):
                    cfg["properties"] |= {
                        "privateIPAddress": held[cfg["name"]],
                        "privateIPAllocationMethod": "Static",
                    }
        return self.c.wait(
            f"write {name}", self.c.network.network_interfaces.begin_create_or_update, self.rg, name, want
        )

    def _nic_addresses(self) -> tuple[list[str], list[str]]:
        """(primary addresses, every corosync link address) of the two NICs; empty when one is
        missing."""
        out: list[str] = []
        links: list[str] = []
        for node in self.spec.nodes:
            nic = self._node_nic(node)
            if nic is None:
                return [], []
            out.append(primary_address(nic))
            links += self._links(node, nic)
        return out, links

    def teardown_network(self) -> None:
        """hacloud's NICs (an adopted NIC is given back instead), load balancer, NSG and
        availability set: only what carries the cluster's tag."""
        c = self.c
        for node in self.spec.nodes:
            rg, nic, adopted = self.nic_ref(node)
            if adopted:
                self._release_nic(rg, nic)
                continue
            have = self._get("read a NIC", c.network.network_interfaces.get, self.rg, nic)
            if (
                have is not None
                and self.owned(have.get("tags"))
                and self.change(f"network-interface/{nic}", "delete", f"delete network interface {nic}")
            ):
                c.wait(f"delete {nic}", c.network.network_interfaces.begin_delete, self.rg, nic)
        for getter, deleter, name, what, kind in (
            (
                c.network.load_balancers.get,
                c.network.load_balancers.begin_delete,
                f"{self.cluster}-lb",
                "load balancer",
                "load-balancer",
            ),
            (
                c.network.network_security_groups.get,
                c.network.network_security_groups.begin_delete,
                f"{self.cluster}-nsg",
                "network security group",
                "network-security-group",
            ),
        ):
            have = self._get(f"read the {what}", getter, self.rg, name)
            if (
                have is not None
                and self.owned(have.get("tags"))
                and self.change(f"{kind}/{name}", "delete", f"delete {what} {name}")
            ):
                c.wait(f"delete {what} {name}", deleter, self.rg, name)
        self._delete_availability_set()

    def _delete_availability_set(self) -> None:
        if self.opts.zones:
            return
        name = f"{self.cluster}-avset"
        have = self._get("read the availability set", self.c.compute.availability_sets.get, self.rg, name)
        if have is not None and self.change(
            f"availability-set/{name}", "delete", f"delete availability set {name}"
        ):
            call("delete the availability set", self.c.compute.availability_sets.delete, self.rg, name)


def _writable_nic(have: dict[str, Any]) -> dict[str, Any]:
    """The settable part of a NIC as ARM returned it (read-only fields must not be sent back)."""
    props = have["properties"]
    ipcs = []
    for ipc in props.get("ipConfigurations", []):
        p = ipc.get("properties", {})
        keep = {
            k: p[k]
            for k in ("privateIPAddress", "privateIPAllocationMethod", "primary", "privateIPAddressVersion")
            if k in p
        }
        for ref in ("subnet", "publicIPAddress"):
            if p.get(ref):
                keep[ref] = {"id": p[ref]["id"]}
        if p.get("loadBalancerBackendAddressPools"):
            keep["loadBalancerBackendAddressPools"] = [
                {"id": x["id"]} for x in p["loadBalancerBackendAddressPools"]
            ]
        ipcs.append({"name": ipc["name"], "properties": keep})
    body: dict[str, Any] = {
        "location": have["location"],
        "tags": have.get("tags") or {},
        "properties": {"ipConfigurations": ipcs},
    }
    for flag in ("enableAcceleratedNetworking", "enableIPForwarding"):
        if flag in props:
            body["properties"][flag] = props[flag]
    if (props.get("dnsSettings") or {}).get("dnsServers"):
        body["properties"]["dnsSettings"] = {"dnsServers": props["dnsSettings"]["dnsServers"]}
    if props.get("networkSecurityGroup"):
        body["properties"]["networkSecurityGroup"] = {"id": props["networkSecurityGroup"]["id"]}
    return body


def _without_pool(body: dict[str, Any], pool: str) -> bool:
    """Drop ``pool`` from every IP configuration of a NIC body; True when it was there."""
    found = False
    for ipc in body["properties"]["ipConfigurations"]:
        pools = ipc["properties"].get("loadBalancerBackendAddressPools", [])
        kept = [p for p in pools if p["id"].lower() != pool.lower()]
        found |= len(kept) != len(pools)
        if kept:
            ipc["properties"]["loadBalancerBackendAddressPools"] = kept
        else:
            ipc["properties"].pop("loadBalancerBackendAddressPools", None)
    return found


def _same_rules(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def canon(body: dict[str, Any]) -> list[tuple[str, str]]:
        out = []
        for r in body.get("properties", {}).get("securityRules", []):
            props = {
                k: v for k, v in r.get("properties", {}).items() if k not in ("provisioningState", "etag")
            }
            props = {k: v for k, v in props.items() if v not in ([], None, "")}
            out.append((r["name"], repr(sorted(props.items()))))
        return sorted(out)

    return canon(have) == canon(want)


def _nic_differs(have: dict[str, Any], want: dict[str, Any]) -> bool:
    h, w = have["properties"], want["properties"]
    if {c["name"] for c in h["ipConfigurations"]} != {c["name"] for c in w["ipConfigurations"]}:
        return True
    if (h.get("networkSecurityGroup") or {}).get("id", "").lower() != w["networkSecurityGroup"]["id"].lower():
        return True
    hi, wi = h["ipConfigurations"][0]["properties"], w["ipConfigurations"][0]["properties"]
    if hi.get("subnet", {}).get("id", "").lower() != wi["subnet"]["id"].lower():
        return True
    return _pools(hi) != _pools(wi) or have.get("tags") != want["tags"]


def _pools(ipconfig: dict[str, Any]) -> list[str]:
    return sorted(x["id"].lower() for x in ipconfig.get("loadBalancerBackendAddressPools", []))
