"""The box's VPC router made physical: a router namespace with one bridge per subnet and the
"internet", the admin/client/internet-client namespaces on veths, and ``apply(state)`` that
converges the kernel's policy routes and the nftables table to ``netplan.plan(state)``.

Contract:
- ``Router(name)``: namespaces ``name`` (the router), ``name-admin`` (SSH origin,
  ``ADMIN_ADDRESS``), ``name-client`` (``CLIENT_ADDRESS``, both on the client subnet) and
  ``name-inet`` (``INTERNET_CLIENT_ADDRESS``, behind the internet gateway).
- ``create(subnets)`` builds them; idempotent (``ip ... replace``, existing links kept).
- ``apply(state)`` is level-triggered: it reads the routes, rules and the table's digest from
  the kernel and changes only what differs; it returns the changes (``[]`` on a second apply,
  and then runs no ``nft -f``). ``fault(kind, on, zone)`` switches a fault and applies.
- ``plug(ns, subnet, address, mac)`` puts a namespace on a subnet's bridge as an instance stand-in
  (``ens5`` with the ENI's MAC, default route via the subnet's router address).
- ``destroy()`` removes every namespace it made (processes in them are killed first), so no
  namespace, veth, rule, route or nft table is left (they all live inside the namespaces).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import replace
from typing import Any

from hacloud.errors import HacloudError
from hacloud_aws.box.layout import ENDPOINT_ADDRESS
from hacloud_aws.box.netplan import RULE_PREF, NetPlan, RouteSpec, RuleSpec, plan
from hacloud_aws.box.netrules import NFT_TABLE
from hacloud_aws.box.netstate import (
    CLIENT_SUBNET,
    FAULT_KINDS,
    INET_BRIDGE,
    NetworkState,
    bridge,
    gateway_address,
)

INET_ADDRESS = "198.51.100.1"
IMDS_ADDRESS = "169.254.169.254"
#: on the client subnet C, at its top: moto hands out a subnet's addresses from the bottom up
ADMIN_ADDRESS = "192.0.2.189"
CLIENT_ADDRESS = "192.0.2.190"
INTERNET_CLIENT_ADDRESS = "198.51.100.100"


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HacloudError(
            f"the box router could not run {' '.join(argv[:6])}: {proc.stderr.strip() or proc.returncode}",
            "the box's network needs root, iproute2 and nftables (`apt-get install nftables`); "
            "stop the box (that removes its router namespaces) and start it again",
            code="HAC740",
        )
    return proc.stdout


class Router:
    """The router namespace and its neighbours (see the module contract)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.admin, self.client, self.internet = f"{name}-admin", f"{name}-client", f"{name}-inet"
        self.faults: frozenset[str] = frozenset()
        self.zones: frozenset[str] = frozenset()  # known once ``create`` ran

    def namespaces(self) -> tuple[str, ...]:
        """The router's namespaces that exist now: itself and every ``<name>-*`` (the admin,
        clients, and the instances' stand-ins ``plug`` made), so ``destroy`` finds them all
        even after the process that made them is gone."""
        existing = _run(["ip", "netns", "list"]).split()
        return tuple(n for n in existing if n == self.name or n.startswith(f"{self.name}-"))

    def ip(self, *args: str, check: bool = True) -> str:
        return _run(["ip", "-n", self.name, *args], check=check)

    # -- building -------------------------------------------------------------------------

    def create(self, subnets: tuple[tuple[str, str, str, str], ...]) -> None:
        """Build the namespaces, forwarding, the API and IMDS addresses on the router's ``lo``,
        one bridge per subnet (``NetworkState.subnets``, the client subnet among them) and the
        internet bridge, and plug the admin and the two clients; what exists is kept."""
        self.zones = frozenset(zone for _n, _s, _c, zone in subnets)
        existing = set(_run(["ip", "netns", "list"]).split())
        for ns in (self.name, self.admin, self.client, self.internet):
            if ns not in existing:
                _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for key in (
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ):
            _run(["ip", "netns", "exec", self.name, "sysctl", "-qw", key])
        for address in (ENDPOINT_ADDRESS, IMDS_ADDRESS):
            self.ip("addr", "replace", f"{address}/32", "dev", "lo")
        for name, _sid, cidr, _zone in subnets:
            prefix = cidr.split("/")[1]
            self._bridge(bridge(name), f"{gateway_address(cidr)}/{prefix}")
        self._bridge(INET_BRIDGE, f"{INET_ADDRESS}/24")
        client_cidr = next(c for n, _s, c, _z in subnets if n == CLIENT_SUBNET)
        prefix = client_cidr.split("/")[1]
        gw = gateway_address(client_cidr)
        self.plug(self.admin, bridge(CLIENT_SUBNET), f"{ADMIN_ADDRESS}/{prefix}", gw, "v-admin")
        self.plug(self.client, bridge(CLIENT_SUBNET), f"{CLIENT_ADDRESS}/{prefix}", gw, "v-client")
        self.plug(self.internet, INET_BRIDGE, f"{INTERNET_CLIENT_ADDRESS}/32", INET_ADDRESS, "v-inet")

    def _bridge(self, name: str, address: str) -> None:
        if not self.ip("link", "show", name, check=False):
            self.ip("link", "add", name, "type", "bridge")
        self.ip("addr", "replace", address, "dev", name)
        self.ip("link", "set", name, "up")

    def plug(
        self, ns: str, bridge_name: str, address: str, gateway: str, port: str, mac: str | None = None
    ) -> None:
        """Connect namespace ``ns`` (created if missing) to ``bridge_name`` by a veth (``port``
        in the router, ``ens5`` in ``ns``, with ``mac`` when given), address and default route.
        ``ns`` must be named ``<router>-...`` so that ``destroy`` removes it (HAC742)."""
        if not ns.startswith(f"{self.name}-"):
            raise HacloudError(
                f"namespace {ns!r} is not named {self.name}-...: the router would not remove it",
                f"name the instance's namespace {self.name}-<something>",
                code="HAC742",
            )
        if ns not in _run(["ip", "netns", "list"]).split():
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        if not self.ip("link", "show", port, check=False):
            self.ip("link", "add", port, "type", "veth", "peer", "name", "ens5", "netns", ns)
        if mac is not None:
            _run(["ip", "-n", ns, "link", "set", "ens5", "address", mac])
        self.ip("link", "set", port, "master", bridge_name, "up")
        _run(["ip", "-n", ns, "addr", "replace", address, "dev", "ens5"])
        _run(["ip", "-n", ns, "link", "set", "ens5", "up"])
        if address.endswith("/32"):
            _run(["ip", "-n", ns, "route", "replace", gateway, "dev", "ens5"])
        _run(["ip", "-n", ns, "route", "replace", "default", "via", gateway, "dev", "ens5"])

    # -- converging -----------------------------------------------------------------------

    def _current_routes(self, tables: tuple[int, ...]) -> set[RouteSpec]:
        """Our routes in the kernel: those of ``tables`` (one dump of every table; a table
        without routes does not exist for the kernel, and is simply empty here)."""
        found: set[RouteSpec] = set()
        for r in json.loads(self.ip("-4", "-j", "route", "show", "table", "all") or "[]"):
            table = int(r["table"]) if str(r.get("table", "")).isdigit() else None
            if table not in tables:
                continue
            dst = r["dst"] if "/" in r["dst"] or r["dst"] == "default" else f"{r['dst']}/32"
            dst = "0.0.0.0/0" if dst == "default" else dst
            if r.get("type") == "blackhole":
                found.add(RouteSpec(table, dst, blackhole=True))
            else:
                found.add(RouteSpec(table, dst, r.get("dev"), r.get("gateway")))
        return found

    def _current_rules(self) -> set[RuleSpec]:
        found: set[RuleSpec] = set()
        for r in json.loads(self.ip("-j", "rule", "show") or "[]"):
            if RULE_PREF <= r.get("priority", 0) < RULE_PREF + 2000 and "iif" in r:
                table = None if r.get("action") == "unreachable" else int(r["table"])
                found.add(RuleSpec(r["priority"], r["iif"], table))
        return found

    def _digest(self) -> str | None:
        """The digest our table carries as its comment (None: no table). Read from the text
        listing: nft 1.0.6's JSON leaves table comments out."""
        argv = ["ip", "netns", "exec", self.name, "nft", "list", "table", "inet", NFT_TABLE]
        for line in _run(argv, check=False).splitlines()[1:3]:
            if line.strip().startswith("comment "):
                return line.strip()[len("comment ") :].strip('"')
        return None

    def _route_argv(self, r: RouteSpec) -> list[str]:
        if r.blackhole:
            return ["blackhole", r.destination, "table", str(r.table)]
        via = ["via", r.gateway] if r.gateway else []
        return [r.destination, *via, "dev", str(r.device), "table", str(r.table)]

    def _rule_argv(self, r: RuleSpec) -> list[str]:
        action = ["unreachable"] if r.table is None else ["lookup", str(r.table)]
        return ["pref", str(r.pref), "iif", r.iif, *action]

    def apply(self, state: NetworkState) -> list[str]:
        """Converge the router to ``state`` (with this router's faults); returns the changes."""
        wanted: NetPlan = plan(replace(state, faults=state.faults | self.faults))
        changes: list[str] = []
        current_routes = self._current_routes(wanted.tables + self._stale_tables(wanted.tables))
        for r in sorted(current_routes - wanted.routes, key=repr):
            self.ip("route", "del", *self._route_argv(r))
            changes.append(f"route del {' '.join(self._route_argv(r))}")
        for r in sorted(wanted.routes - current_routes, key=repr):
            self.ip("route", "replace", *self._route_argv(r))
            changes.append(f"route add {' '.join(self._route_argv(r))}")
        current_rules = self._current_rules()
        for rule in sorted(current_rules - wanted.rules, key=repr):
            self.ip("rule", "del", *self._rule_argv(rule))
            changes.append(f"rule del {' '.join(self._rule_argv(rule))}")
        for rule in sorted(wanted.rules - current_rules, key=repr):
            self.ip("rule", "add", *self._rule_argv(rule))
            changes.append(f"rule add {' '.join(self._rule_argv(rule))}")
        if self._digest() != wanted.digest:
            _run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], stdin=wanted.ruleset)
            changes.append(f"nft table inet {NFT_TABLE} {wanted.digest}")
        return changes

    def _stale_tables(self, tables: tuple[int, ...]) -> tuple[int, ...]:
        """Tables our rules still point at that the plan no longer has (a deleted route table)."""
        return tuple(sorted({r.table for r in self._current_rules() if r.table is not None} - set(tables)))

    def fault(self, kind: str, on: bool, zone: str | None = None) -> str:
        """Switch fault ``kind`` (``partition``, or ``api_cut`` of ``zone``, one of the
        subnets' zones); returns its key. Takes effect at the next ``apply``."""
        problem = ""
        if kind not in FAULT_KINDS:
            problem = f"kind: {kind!r} is not a network fault (use {' or '.join(FAULT_KINDS)})"
        elif kind == "api_cut" and (zone is None or (self.zones and zone not in self.zones)):
            problem = (
                f"zone: {zone!r} is not a zone of this box ({', '.join(sorted(self.zones)) or 'none yet'})"
            )
        elif kind == "partition" and zone is not None:
            problem = "zone: a partition cuts between the zones and takes no zone"
        if problem:
            raise HacloudError(
                f"fault {kind}: {problem}",
                "e.g. kind partition, or kind api_cut with zone eu-central-1a",
                code="HAC741",
            )
        key = kind if zone is None else f"{kind}:{zone}"
        self.faults = self.faults | {key} if on else self.faults - {key}
        return key

    def destroy(self, timeout: float = 10.0) -> None:
        """Remove every namespace (after killing what runs in them); idempotent."""
        for ns in self.namespaces():
            _kill_in(ns, timeout)
            _run(["ip", "netns", "del", ns], check=False)


def _kill_in(ns: str, timeout: float) -> None:
    import os
    import signal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def describe(router: Router) -> dict[str, Any]:
    """The router's physical state as text (``ip rule``, routes, ``nft list ruleset``)."""
    return {
        "rules": router.ip("rule", "show"),
        "routes": router.ip("-4", "route", "show", "table", "all"),
        "nft": _run(["ip", "netns", "exec", router.name, "nft", "list", "ruleset"]),
    }
