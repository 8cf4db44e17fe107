"""The router's nftables ruleset (table ``inet hacloud``) for one ``NetworkState``: faults,
source/destination check, security groups, the Elastic IP's NAT. Pure text; ``netplan.plan``
wraps it in an atomic replace. The rules' meaning is the contract of ``netplan``; every value
written here is an id, address, MAC or port from moto's validated state (no free text).

Chain order (priority): ``faults`` (filter - 10) drops first; ``forward`` (filter) checks
source/destination, accepts established/related (security groups are stateful), then runs the
sender's egress chain (``return`` on a match, else drop) and the receiver's ingress chain
(``accept`` on a match, else drop); ``nat_pre``/``nat_post`` (dstnat/srcnat) for the EIP.
"""

from __future__ import annotations

from hacloud_aws.box.layout import ENDPOINT_ADDRESS
from hacloud_aws.box.netstate import ALIVE, CLIENT_SUBNET, INET_BRIDGE, NetworkState, Rule, bridge
from hacloud_aws.box.state import Interface

NFT_TABLE = "hacloud"


def _set(items: list[str] | tuple[str, ...], quote: bool = False) -> str:
    values = [f'"{i}"' if quote else i for i in sorted(set(items))]
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _chain_name(prefix: str, eni: str) -> str:
    return f"{prefix}_{eni.replace('-', '_')}"


def _match(rule: Rule, members: dict[str, list[str]], field: str) -> str | None:
    """The nft match of one IpPermission (None: matches nothing, e.g. an empty source group)."""
    parts: list[str] = []
    if rule.group is not None:
        ips = members.get(rule.group, [])
        if not ips:
            return None
        parts.append(f"ip {field} {_set(ips)}")
    elif rule.cidr is not None and rule.cidr != "0.0.0.0/0":
        parts.append(f"ip {field} {rule.cidr}")
    if rule.proto in ("tcp", "udp"):
        parts.append(f"meta l4proto {rule.proto}")
        if rule.from_port is not None and rule.to_port is not None:
            ports = (
                str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}-{rule.to_port}"
            )
            parts.append(f"th dport {ports}")
    elif rule.proto == "icmp":
        parts.append("meta l4proto icmp")
    elif rule.proto != "-1":
        return None  # other protocols: nothing in the box sends them
    return " ".join(parts)


def _eni_chains(eni: Interface, state: NetworkState, members: dict[str, list[str]]) -> list[str]:
    groups = {g.id: g for g in state.groups}
    out = [f"\tchain {_chain_name('eg', eni.id)} {{"]
    for gid in eni.groups:
        for rule in groups[gid].egress if gid in groups else ():
            match = _match(rule, members, "daddr")
            if match is not None:
                out.append(f"\t\t{match} return".replace("\t\t return", "\t\treturn"))
    out += ["\t\tdrop", "\t}", f"\tchain {_chain_name('in', eni.id)} {{"]
    for gid in eni.groups:
        for rule in groups[gid].ingress if gid in groups else ():
            match = _match(rule, members, "saddr")
            if match is not None:
                out.append(f"\t\t{match} accept".replace("\t\t accept", "\t\taccept"))
    out += ["\t\tdrop", "\t}"]
    return out


def _faults(state: NetworkState) -> list[str]:
    out = ["\tchain faults_forward {", "\t\ttype filter hook forward priority filter - 10; policy accept;"]
    if "partition" in state.faults:
        for name, _sid, _cidr, zone in state.subnets:
            others = [
                bridge(n) for n, _s, _c, z in state.subnets if z != zone and CLIENT_SUBNET not in (n, name)
            ]
            if others:
                out.append(f'\t\tiifname "{bridge(name)}" oifname {_set(others, True)} drop')
    out += [
        "\t}",
        "\tchain faults_input {",
        "\t\ttype filter hook input priority filter - 10; policy accept;",
    ]
    for fault in sorted(state.faults):
        if fault.startswith("api_cut:"):
            zone = fault.split(":", 1)[1]
            cut = [bridge(n) for n, _s, _c, z in state.subnets if z == zone]
            if cut:
                out.append(f"\t\tiifname {_set(cut, True)} ip daddr {ENDPOINT_ADDRESS} tcp dport 443 drop")
    return [*out, "\t}"]


def _eip_pairs(state: NetworkState) -> list[tuple[str, str]]:
    """(public address, private address) of every associated Elastic IP."""
    private = {eni.id: eni.private_ips[0] for i in state.cloud.instances for eni in i.interfaces}
    return sorted(
        (e.address, private[e.interface])
        for e in state.cloud.elastic_ips
        if e.interface is not None and e.interface in private
    )


def ruleset(state: NetworkState) -> str:
    """The whole ``table inet hacloud`` for ``state`` (a ``NetworkState``)."""
    enis = [eni for inst in state.cloud.instances if inst.state in ALIVE for eni in inst.interfaces]
    members: dict[str, list[str]] = {}
    for eni in enis:
        for gid in eni.groups:
            members.setdefault(gid, []).extend(eni.private_ips)
    eips = _eip_pairs(state)
    out = [f"table inet {NFT_TABLE} {{", *_faults(state)]
    for eni in sorted(enis, key=lambda e: e.id):
        out += _eni_chains(eni, state, members)
    out += ["\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;"]
    for eni in sorted(enis, key=lambda e: e.id):
        if eni.source_dest_check:
            out.append(f"\t\tether saddr {eni.mac} ip saddr != {_set(eni.private_ips)} drop")
    out += ["\t\tct state established,related accept", "\t\tct state invalid drop"]
    out.append(f'\t\tiifname "{INET_BRIDGE}" ct status & dnat == 0 drop')
    eip_private = [p for _a, p in eips]
    if eip_private:
        out.append(f'\t\toifname "{INET_BRIDGE}" ip saddr != {_set(eip_private)} drop')
    else:
        out.append(f'\t\toifname "{INET_BRIDGE}" drop')
    for eni in sorted(enis, key=lambda e: e.id):
        out.append(f"\t\tether saddr {eni.mac} jump {_chain_name('eg', eni.id)}")
    for eni in sorted(enis, key=lambda e: e.id):
        out.append(f"\t\trt ip nexthop {_set(eni.private_ips)} jump {_chain_name('in', eni.id)}")
    out += ["\t}", "\tchain nat_pre {", "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    for public, private in eips:
        out.append(f'\t\tiifname "{INET_BRIDGE}" ip daddr {public} dnat ip to {private}')
    out += ["\t}", "\tchain nat_post {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    for public, private in eips:
        out.append(f'\t\toifname "{INET_BRIDGE}" ip saddr {private} snat ip to {public}')
    out += ["\t}", "}"]
    return "\n".join(out) + "\n"
