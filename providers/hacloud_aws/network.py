"""AWS network: the security group (phase network, before the instances), the overlay route
that points at node1's interface (phase routes, after them), and their removal.

EC2 routes cannot be tagged: the routes hacloud creates are recorded in the state directory
(``aws-routes.json``), and teardown deletes only those.
"""

from __future__ import annotations

import json
from typing import Any

from hacloud.errors import HacloudError
from hacloud.provision.provider import link_count
from hacloud.render.resources import drbd_ports
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsMoveIpVip, DemoService
from hacloud_aws.api import aws_error, call, error_code, wait_for
from hacloud_aws.base import AwsBase, Site, primary_eni

ROUTES_FILE = "aws-routes.json"

Rule = tuple[str, int, int, str]


class Network(AwsBase):
    # ------------------------------------------------------------------ security group

    def wanted_rules(self, sg: str) -> set[Rule]:
        """(protocol, from, to, source) the cluster needs; source is a group id or a CIDR."""
        links = link_count(self.spec)
        port = self.spec.corosync.cluster_port
        rules = {("udp", port + i, port + i, sg) for i in range(links)}
        rules |= {("tcp", port, port, sg) for port in drbd_ports(self.spec)}
        if self.opts.admin_cidr:
            for ssh_port in sorted({n.ssh.port for n in self.spec.nodes}):
                rules.add(("tcp", ssh_port, ssh_port, self.opts.admin_cidr))
        if self.opts.client_cidr and isinstance(self.spec.service, DemoService):
            rules.add(("tcp", self.spec.service.port, self.spec.service.port, self.opts.client_cidr))
        return rules

    def ensure_network(self, site: Site) -> None:
        site.sg = self.ensure_security_group(site.vpc_id)

    def ensure_security_group(self, vpc_id: str) -> str:
        """The cluster's group with exactly the wanted rules; its id ("sg-PLACEHOLDER" in a plan
        that would create it)."""
        name = f"hacloud-{self.cluster}"
        target = f"security-group/{name}"
        group = self.find_group(vpc_id)
        if group is None:
            if not self.change(target, "create", f"network: create security group {name} in {vpc_id}"):
                for proto, lo, _hi, src in sorted(self.wanted_rules("the group itself")):
                    self.change(target, "allow", f"network: allow {proto}/{lo} from {src} in {name}")
                return "sg-PLACEHOLDER"
            gid = call(
                f"create security group {name}",
                self.c.ec2.create_security_group,
                GroupName=name,
                Description=f"hacloud cluster {self.cluster}: corosync and DRBD between the nodes, SSH",
                VpcId=vpc_id,
                TagSpecifications=self.tag_spec("security-group", Name=name),
            )["GroupId"]
            have: set[Rule] = set()
        else:
            gid = group["GroupId"]
            have = _rules(group.get("IpPermissions", []))
        self._converge_rules(target, str(gid), have, self.wanted_rules(gid))
        return str(gid)

    def _converge_rules(self, target: str, gid: str, have: set[Rule], want: set[Rule]) -> None:
        for proto, lo, hi, src in sorted(want - have):
            if self.change(target, "allow", f"network: allow {proto}/{lo} from {src} in {gid}"):
                call(
                    "add a security group rule",
                    self.c.ec2.authorize_security_group_ingress,
                    GroupId=gid,
                    IpPermissions=[_permission(proto, lo, hi, src)],
                )
        for proto, lo, hi, src in sorted(have - want):
            if self.change(
                target, "revoke", f"network: remove {proto}/{lo} from {src} in {gid} (not in the spec)"
            ):
                call(
                    "remove a security group rule",
                    self.c.ec2.revoke_security_group_ingress,
                    GroupId=gid,
                    IpPermissions=[_permission(proto, lo, hi, src)],
                )

    def teardown_network(self) -> None:
        group = self.group
        if group is not None and self.change(
            f"security-group/{group.get('GroupName', group['GroupId'])}",
            "delete",
            f"delete security group {group['GroupId']}",
        ):
            self._delete_group(group["GroupId"])

    def _delete_group(self, gid: str) -> None:
        # ENIs of terminated instances release the group a little after termination.
        def probe() -> bool | None:
            try:
                self.c.ec2.delete_security_group(GroupId=gid)
            except Exception as exc:
                if error_code(exc) == "DependencyViolation":
                    return None
                if error_code(exc) == "InvalidGroup.NotFound":
                    return True
                raise aws_error(exc, f"delete security group {gid}") from None
            return True

        wait_for(f"security group {gid} to be free", probe, timeout=300, interval=5, sleep=self.sleep)

    # ------------------------------------------------------------------ overlay route

    def ensure_routes(self, site: Site) -> None:
        """The overlay route (/32) in every listed table, to node1's interface; a route to
        something that is not a node of this cluster is refused, not taken over."""
        vip = self.spec.vip
        if not isinstance(vip, AwsMoveIpVip):
            return
        instances = site.instances
        cidr = f"{vip.address}/32"
        if not instances:
            for rtb in vip.route_tables:
                self.change(
                    f"route/{rtb}/{cidr}",
                    "create",
                    f"network: route {cidr} in {rtb} to {self.spec.nodes[0].name}'s interface",
                )
            return
        ours = {primary_eni(i)["NetworkInterfaceId"] for i in instances.values()} | {
            i["InstanceId"] for i in instances.values()
        }
        first = primary_eni(instances[self.spec.nodes[0].name])["NetworkInterfaceId"]
        for rtb in vip.route_tables:
            self._ensure_route(rtb, cidr, first, ours)

    def _ensure_route(self, rtb: str, cidr: str, first: str, ours: set[str]) -> None:
        created = self._routes_record()
        target = f"route/{rtb}/{cidr}"
        table = call("read a route table", self.c.ec2.describe_route_tables, RouteTableIds=[rtb])[
            "RouteTables"
        ][0]
        route = next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == cidr), None)
        if route is None:
            if self.change(
                target,
                "create",
                f"network: route {cidr} in {rtb} to {first} (the agent moves it on failover)",
            ):
                call(
                    "create the overlay route",
                    self.c.ec2.create_route,
                    RouteTableId=rtb,
                    DestinationCidrBlock=cidr,
                    NetworkInterfaceId=first,
                )
                self._save_routes({**created, rtb: cidr})
            return
        via = route.get("NetworkInterfaceId") or route.get("InstanceId") or route.get("GatewayId")
        if via in ours:
            return
        if route.get("State") == "blackhole" and rtb in created:
            if self.change(target, "update", f"network: point {cidr} in {rtb} at {first} (was a blackhole)"):
                call(
                    "repair the overlay route",
                    self.c.ec2.replace_route,
                    RouteTableId=rtb,
                    DestinationCidrBlock=cidr,
                    NetworkInterfaceId=first,
                )
            return
        raise HacloudError(
            f"route table {rtb} already routes {cidr} to {via}, which is not a node of this cluster",
            "choose another overlay address (vip.address), or delete that route if nothing uses it",
            code="HAC663",
        )

    def adopt_routes(self, inventory: Inventory) -> None:
        """Drop-in: the overlay routes for instances Terraform owns (created only where missing,
        recorded like hacloud's own, so `down` removes only those)."""
        instances = {
            node.name: self.describe(node.id, f"read {node.name} ({node.id})") for node in inventory.nodes
        }
        self.ensure_routes(Site("", "", [], instances=instances))

    def release_routes(self) -> None:
        self.teardown_routes()

    def teardown_routes(self) -> None:
        """The routes hacloud recorded creating (EC2 routes take no tags)."""
        created = self._routes_record()
        for rtb, cidr in sorted(created.items()):
            if self.change(f"route/{rtb}/{cidr}", "delete", f"delete route {cidr} from {rtb}"):
                try:
                    self.c.ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock=cidr)
                except Exception as exc:
                    if error_code(exc) not in ("InvalidRoute.NotFound", "InvalidRouteTableID.NotFound"):
                        raise aws_error(exc, f"delete the route in {rtb}") from None
                del created[rtb]
                self._save_routes(created)

    def _routes_record(self) -> dict[str, str]:
        path = self.ws.state_dir / ROUTES_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _save_routes(self, routes: dict[str, str]) -> None:
        path = self.ws.state_dir / ROUTES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(routes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)


def _rules(perms: list[dict[str, Any]]) -> set[Rule]:
    out = set()
    for p in perms:
        proto = str(p.get("IpProtocol"))
        lo, hi = int(p.get("FromPort", -1)), int(p.get("ToPort", -1))
        for pair in p.get("UserIdGroupPairs", []):
            out.add((proto, lo, hi, str(pair["GroupId"])))
        for rng in p.get("IpRanges", []):
            out.add((proto, lo, hi, str(rng["CidrIp"])))
    return out


def _permission(proto: str, lo: int, hi: int, source: str) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": proto, "FromPort": lo, "ToPort": hi}
    if source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source, "Description": "hacloud"}]
    return perm
