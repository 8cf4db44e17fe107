"""The box's VPC router as data: ``plan(NetworkState)`` turns the account's state into the
kernel routes, policy rules and one nftables ruleset that make it physical. Pure (no I/O), so
the rulesets are golden-testable and ``net.py`` only diffs and applies.

Contract (what the router does, and the AWS behaviour each rule stands for):
- One bridge per subnet (``br-a``, ``br-b``, ``br-c``, holding the subnet's first address as
  AWS's VPC router does) and ``br-inet`` for the "internet" behind the internet gateway.
- Each route table is kernel table ``TABLE_BASE + k`` (k: its rank by id); each subnet's
  bridge looks up its associated table (``ip rule iif br-X``), then hits an ``unreachable``
  rule, so a packet leaves a subnet **only** by a route its table holds (the main table is never
  consulted). Contents: the VPC's subnets (EC2's ``local`` route), ``0.0.0.0/0`` to the
  internet when the table routes to the internet gateway, and every instance/interface route
  ``via`` the interface's primary address, or ``blackhole`` when the interface is gone, its
  instance stopped (not in ``ALIVE``), or its source/destination check on (EC2 drops packets not addressed to
  an interface that checks them).
- nftables table ``inet hacloud``: the faults (checked first), then source/destination check
  (a packet from an interface's MAC whose source is not one of its addresses is dropped), then
  the security groups: stateful (conntrack ``established,related`` first), ingress chosen by
  the route's next hop (so traffic to an overlay address meets the security groups of the
  interface that holds the route), egress by source MAC; ``drop`` when no permission matches.
  The Elastic IP is NAT: DNAT of the public address to the associated interface's primary
  private address from the internet side, SNAT back; the internet reaches no private address
  without it. Traffic to the router itself (the API endpoint, IMDS) is not filtered by security
  groups, as on AWS; only the zone API cut fault drops it.
- Faults: ``partition`` drops forwarding between the pair's two zones (each side keeps the API,
  IMDS and the client subnet); ``api_cut:<zone>`` drops TCP to the API endpoint from every
  subnet of that zone (IMDS stays up).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hacloud_aws.box.netrules import NFT_TABLE, ruleset
from hacloud_aws.box.netstate import ALIVE, INET_BRIDGE, NetworkState, bridge
from hacloud_aws.box.state import CloudState, Instance, RouteTable

TABLE_BASE = 1000
RULE_PREF = 10000  # our policy rules: RULE_PREF + k (lookup), RULE_PREF + 1000 + k (unreachable)


@dataclass(frozen=True)
class RouteSpec:
    """One kernel route: ``blackhole DEST`` or ``DEST [via GW] dev DEV`` in ``table``."""

    table: int
    destination: str
    device: str | None = None
    gateway: str | None = None
    blackhole: bool = False


@dataclass(frozen=True)
class RuleSpec:
    """One policy rule: ``pref P iif DEV lookup TABLE`` or ``pref P iif DEV unreachable``."""

    pref: int
    iif: str
    table: int | None  # None: unreachable


@dataclass(frozen=True)
class NetPlan:
    routes: frozenset[RouteSpec]
    rules: frozenset[RuleSpec]
    tables: tuple[int, ...]  # every kernel table the box owns (for cleanup of stale routes)
    ruleset: str  # ``nft -f`` input: replaces table inet hacloud atomically
    digest: str  # sha256 of ``ruleset``, carried as the table's comment


def _table_ids(cloud: CloudState) -> dict[str, int]:
    return {t.id: TABLE_BASE + k for k, t in enumerate(sorted(cloud.route_tables, key=lambda t: t.id))}


def _interfaces(cloud: CloudState) -> dict[str, tuple[Instance, int]]:
    return {eni.id: (inst, k) for inst in cloud.instances for k, eni in enumerate(inst.interfaces)}


def _route_target(
    state: NetworkState, route_eni: str | None, route_instance: str | None
) -> tuple[str, str] | None:
    """(primary address, bridge) that an instance/interface route forwards to, or None: a
    blackhole (interface gone, instance stopped, or source/dest check on)."""
    enis = _interfaces(state.cloud)
    by_subnet = {sid: name for name, sid, _c, _z in state.subnets}
    if route_eni is None and route_instance is not None:
        owner = [i for i in state.cloud.instances if i.id == route_instance]
        route_eni = owner[0].interfaces[0].id if owner and owner[0].interfaces else None
    if route_eni is None or route_eni not in enis:
        return None
    inst, k = enis[route_eni]
    eni = inst.interfaces[k]
    if inst.state not in ALIVE or eni.source_dest_check or eni.subnet not in by_subnet:
        return None
    return eni.private_ips[0], bridge(by_subnet[eni.subnet])


def _table_routes(state: NetworkState, table: RouteTable, number: int) -> set[RouteSpec]:
    routes = {RouteSpec(number, cidr, bridge(name)) for name, _sid, cidr, _z in state.subnets}
    for route in table.routes:
        if route.local:
            continue  # the VPC's subnets, above
        if route.gateway is not None and route.gateway.startswith("igw-"):
            routes.add(RouteSpec(number, route.destination, INET_BRIDGE))
            continue
        if route.interface is None and route.instance is None:
            continue  # other gateway kinds (NAT, peering, endpoints) have no counterpart here
        target = _route_target(state, route.interface, route.instance)
        if target is None:
            routes.add(RouteSpec(number, route.destination, blackhole=True))
        else:
            routes.add(RouteSpec(number, route.destination, target[1], gateway=target[0]))
    return routes


def _routing(state: NetworkState) -> tuple[set[RouteSpec], set[RuleSpec], tuple[int, ...]]:
    numbers = _table_ids(state.cloud)
    routes: set[RouteSpec] = set()
    rules: set[RuleSpec] = set()
    for table in state.cloud.route_tables:
        routes |= _table_routes(state, table, numbers[table.id])
    for k, (name, sid, _cidr, _zone) in enumerate(state.subnets):
        owner = [t for t in state.cloud.route_tables if sid in t.subnets]
        if owner:
            rules.add(RuleSpec(RULE_PREF + k, bridge(name), numbers[owner[0].id]))
        rules.add(RuleSpec(RULE_PREF + 1000 + k, bridge(name), None))
    return routes, rules, tuple(sorted(numbers.values()))


def plan(state: NetworkState) -> NetPlan:
    """The routes, rules and nft ruleset for ``state`` (see the module contract)."""
    routes, rules, tables = _routing(state)
    body = ruleset(state)
    digest = hashlib.sha256(body.encode()).hexdigest()[:32]
    text = f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n" + body.replace(
        f"table inet {NFT_TABLE} {{\n", f'table inet {NFT_TABLE} {{\n\tcomment "{digest}"\n', 1
    )
    return NetPlan(frozenset(routes), frozenset(rules), tables, text, digest)
