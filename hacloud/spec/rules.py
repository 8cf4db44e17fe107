"""The spec rules: cross-field rules of ``hacloud.yaml``, run on the raw document while it loads.

Distinct from the invariants behind ``hacloud check`` (:mod:`hacloud.verify.invariants`, which
judge the rendered files): a spec rule refuses the spec itself (exit 2) before anything renders.

Contract: :func:`cross_problems` never raises; it reads the parsed YAML defensively (any part
may have the wrong type, which the schema reports separately) so that one run of the loader
reports schema problems and cross-field problems together. Each problem is
``(path, message, remedy)`` with ``path`` a list of keys and indices into the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hacloud.spec.profiles import PROFILE_NAMES, load_profile, override_problems

Found = tuple[list[str | int], str, str]

# Which fencing and VIP kinds make sense for each provider. On-prem means "hosts you bring",
# which may themselves be cloud instances, so it accepts every kind.
ALLOWED_FENCING = {
    # the lab fences through its virtual BMCs; SBD would need a shared disk it does not make
    "lab": {"fence_ipmilan"},
    "onprem": {"fence_ipmilan", "fence_redfish", "sbd", "fence_aws", "fence_azure_arm"},
    "aws": {"fence_aws", "sbd"},
    "azure": {"fence_azure_arm", "sbd"},
}
ALLOWED_VIP = {
    "lab": {"IPaddr2"},
    "onprem": {"IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb"},
    "aws": {"aws-vpc-move-ip", "awseip"},
    "azure": {"azure-lb"},
}
LAB_NETWORKS = (IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ip(value: Any) -> IPv4Address | None:
    try:
        return IPv4Address(str(value)) if value is not None else None
    except ValueError:
        return None


def cross_problems(raw: Any, *, strict: bool = False) -> list[Found]:
    """Every cross-field problem. A rule that trips over a malformed part of the document is
    skipped (the schema reports that part); with ``strict`` (the document passed the schema)
    such a failure is a bug and propagates."""
    doc = _dict(raw)
    out: list[Found] = []
    for rule in (_nodes, _links, _lab_addresses, _volumes, _kinds, _fencing, _vip, _overrides, _azure_cloud):
        try:
            out.extend(rule(doc))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            if strict:
                raise
    return out


def _provider_kind(doc: dict[str, Any]) -> str | None:
    kind = _dict(doc.get("provider")).get("kind")
    return kind if isinstance(kind, str) else None


def _node_names(doc: dict[str, Any]) -> list[str]:
    return [
        n["name"] for n in _list(doc.get("nodes")) if isinstance(n, dict) and isinstance(n.get("name"), str)
    ]


def _nodes(doc: dict[str, Any]) -> Iterator[Found]:
    seen: dict[str, int] = {}
    needs_address = _provider_kind(doc) in ("lab", "onprem")
    for i, node in enumerate(_list(doc.get("nodes"))):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str):
            if name in seen:
                yield (
                    ["nodes", i, "name"],
                    f"node name {name!r} is used twice",
                    "give the two nodes different host names",
                )
            seen[name] = i
        if needs_address and node.get("address") is None:
            yield (
                ["nodes", i, "address"] if "address" in node else ["nodes", i],
                "an on-prem or lab node needs the address hacloud reaches it at",
                "add `address:` with the node's IPv4 address",
            )
        declared = {str(v.get("name", "r0")) for v in _list(doc.get("volumes")) if isinstance(v, dict)}
        for vol in _dict(node.get("volumes")):
            if vol not in declared and doc.get("volumes") is not None:
                yield (
                    ["nodes", i, "volumes", vol],
                    f"no volume named {vol!r} in volumes",
                    "use a name listed under `volumes:`",
                )


def _links(doc: dict[str, Any]) -> Iterator[Found]:
    nodes = [n for n in _list(doc.get("nodes")) if isinstance(n, dict)]
    if len(nodes) != 2:
        return
    counts = [len(_list(n.get("links"))) or 1 for n in nodes]
    if counts[0] != counts[1]:
        yield (
            ["nodes", 1, "links"],
            f"node has {counts[1]} corosync link(s), its peer {counts[0]}",
            "give both nodes one address on each corosync network, in the same order",
        )
        return
    for link in range(counts[0]):
        addrs = [_ip((_list(n.get("links")) or [n.get("address")])[link]) for n in nodes]
        if addrs[0] is not None and addrs[0] == addrs[1]:
            yield (
                ["nodes", 1, "links", link] if nodes[1].get("links") else ["nodes", 1, "address"],
                f"both nodes use {addrs[0]} on corosync link {link}",
                "each node needs its own address on every link",
            )
    for i, node in enumerate(nodes):
        links = [_ip(a) for a in _list(node.get("links"))]
        if len(links) == 2 and links[0] is not None and links[0] == links[1]:
            yield (
                ["nodes", i, "links", 1],
                "both links use the same address",
                "put the second link on a second network (an independent path)",
            )


def _lab_addresses(doc: dict[str, Any]) -> Iterator[Found]:
    if _provider_kind(doc) != "lab":
        return
    for i, node in enumerate(_list(doc.get("nodes"))):
        if not isinstance(node, dict):
            continue
        places: list[tuple[list[str | int], Any, int]] = [(["nodes", i, "address"], node.get("address"), 0)]
        places += [(["nodes", i, "links", k], a, k) for k, a in enumerate(_list(node.get("links")))]
        for path, value, net in places:
            ip = _ip(value)
            if ip is not None and ip not in LAB_NETWORKS[min(net, 1)]:
                yield (
                    path,
                    f"{ip} is outside the lab network {LAB_NETWORKS[min(net, 1)]}",
                    f"lab link {net} addresses come from {LAB_NETWORKS[min(net, 1)]}, "
                    f"e.g. {LAB_NETWORKS[min(net, 1)].network_address + 11 + i}",
                )
    vip = _ip(_dict(doc.get("vip")).get("address"))
    if vip is not None and vip not in LAB_NETWORKS[0]:
        yield (
            ["vip", "address"],
            f"{vip} is outside the lab network {LAB_NETWORKS[0]}",
            "use e.g. 192.0.2.100",
        )


def _volumes(doc: dict[str, Any]) -> Iterator[Found]:
    vols = [v for v in _list(doc.get("volumes")) if isinstance(v, dict)]
    for key, default, what in (
        ("name", None, "name"),
        ("mount_point", None, "mount point"),
        ("minor", None, "DRBD minor"),
    ):
        seen: set[Any] = set()
        for i, vol in enumerate(_list(doc.get("volumes"))):
            if not isinstance(vol, dict) or vol.get(key, default) is None:
                continue
            value = vol[key]
            if not isinstance(value, str | int):
                continue
            if value in seen:
                yield (
                    ["volumes", i, key],
                    f"{what} {value!r} is used by two volumes",
                    f"give every volume its own {what}",
                )
            seen.add(value)
    for i, vol in enumerate(vols):
        if vol.get("mount_point") in ("/", "/boot", "/usr", "/var", "/etc", "/home"):
            yield (
                ["volumes", i, "mount_point"],
                f"{vol['mount_point']} is a system directory",
                "mount replicated data on its own directory, e.g. /srv/data",
            )
    if _provider_kind(doc) == "onprem":
        nodes = [n for n in _list(doc.get("nodes")) if isinstance(n, dict)]
        for i, vol in enumerate(vols):
            name = vol.get("name", "r0")
            if vol.get("device"):
                continue
            for j, node in enumerate(nodes):
                if name not in _dict(node.get("volumes")):
                    yield (
                        ["nodes", j],
                        f"no block device given for volume {name!r}",
                        f"add `volumes: {{{name}: /dev/disk/by-id/...}}` to this node, "
                        f"or `device:` to volumes[{i}]",
                    )
    yield from _volume_groups(doc)


def _volume_groups(doc: dict[str, Any]) -> Iterator[Found]:
    """DRBD resources (volumes grouped by ``resource``, default their name): one port per
    resource, set on its first volume; minors (default: the index) and ports (default
    7789 + the index of the resource's first volume) unique once the defaults are applied."""
    vols = [v if isinstance(v, dict) else {} for v in _list(doc.get("volumes"))]
    first: dict[str, int] = {}
    ports: dict[int, str] = {}
    minors: dict[int, int] = {}
    for i, vol in enumerate(vols):
        res = str(vol.get("resource") or vol.get("name", "r0"))
        port = vol.get("port")
        if res in first:
            if port is not None:
                yield (
                    ["volumes", i, "port"],
                    f"volume {vol.get('name', 'r0')!r} is the second or later volume of DRBD resource "
                    f"{res!r}, which has one port for all its volumes",
                    f"set `port:` on the resource's first volume (volumes[{first[res]}]) only",
                )
        else:
            first[res] = i
            effective = port if isinstance(port, int) else 7789 + i
            if effective in ports:
                yield (
                    ["volumes", i, "port"],
                    f"DRBD port {effective} of resource {res!r} is also the port of resource "
                    f"{ports[effective]!r}" + ("" if port is not None else " (7789 + its index)"),
                    "give every DRBD resource its own port (`port:` on its first volume)",
                )
            ports.setdefault(effective, res)
        minor = vol.get("minor")
        effective_minor = minor if isinstance(minor, int) else i
        if effective_minor in minors and not (
            isinstance(minor, int) and isinstance(vols[minors[effective_minor]].get("minor"), int)
        ):  # two explicit minors are reported above
            yield (
                ["volumes", i, "minor"],
                f"DRBD minor {effective_minor} is also volumes[{minors[effective_minor]}]'s "
                "(a volume without `minor:` gets its index)",
                "give every volume its own `minor:` (keep the ones a running cluster already uses)",
            )
        minors.setdefault(effective_minor, i)


def _kinds(doc: dict[str, Any]) -> Iterator[Found]:
    provider = _provider_kind(doc)
    if provider not in ALLOWED_FENCING:
        return
    for i, method in enumerate(_list(doc.get("fencing"))):
        kind = _dict(method).get("kind")
        if isinstance(kind, str) and kind in _all(ALLOWED_FENCING) and kind not in ALLOWED_FENCING[provider]:
            yield (
                ["fencing", i, "kind"],
                f"{kind} cannot fence {provider} nodes",
                f"use one of: {', '.join(sorted(ALLOWED_FENCING[provider]))}",
            )
    kind = _dict(doc.get("vip")).get("kind")
    if isinstance(kind, str) and kind in _all(ALLOWED_VIP) and kind not in ALLOWED_VIP[provider]:
        yield (
            ["vip", "kind"],
            f"a {kind} VIP does not work on {provider}",
            f"use one of: {', '.join(sorted(ALLOWED_VIP[provider]))}",
        )
    profile = doc.get("profile")
    if profile is not None and profile not in PROFILE_NAMES:
        return


def _all(table: dict[str, set[str]]) -> set[str]:
    return set().union(*table.values())


def _fencing(doc: dict[str, Any]) -> Iterator[Found]:
    """Each fencing method listed once, fencing every node by name, with what its kind needs;
    several methods only as fencing levels."""
    names = _node_names(doc)
    provider = _provider_kind(doc)
    options = _dict(_dict(doc.get("provider")).get("options"))
    kinds: dict[str, int] = {}
    methods = _list(doc.get("fencing"))
    for i, raw_method in enumerate(methods):
        method = _dict(raw_method)
        kind = method.get("kind")
        if isinstance(kind, str):
            if kind in kinds:
                yield (["fencing", i, "kind"], f"{kind} is listed twice", "list each fencing method once")
            kinds[kind] = i
        yield from _fence_targets(i, method, names)
        yield from _fence_kind_needs(i, method, provider, options)
    if len(methods) > 1 and doc.get("fencing_topology") is not True:
        yield (
            ["fencing_topology"] if "fencing_topology" in doc else ["fencing"],
            "more than one fencing method without fencing_topology",
            "set `fencing_topology: true` to try them as levels in order, or keep one method",
        )


def _fence_targets(i: int, method: dict[str, Any], names: list[str]) -> Iterator[Found]:
    """A method's ``nodes``: only known node names, every node when any (or when a BMC kind),
    and a BMC's password from exactly one source."""
    kind = method.get("kind")
    targets = _dict(method.get("nodes"))
    for target in targets:
        if names and target not in names:
            yield (
                ["fencing", i, "nodes", target],
                f"no node named {target!r}",
                f"use the node names: {', '.join(names)}",
            )
    required = kind in ("fence_ipmilan", "fence_redfish") or bool(targets)
    if required and len(names) == 2 and "nodes" in method:
        for name in names:
            if name not in targets:
                yield (
                    ["fencing", i, "nodes"],
                    f"no fencing target for node {name!r}",
                    f"add `{name}:` under this method's nodes (every node must be fenceable)",
                )
    if kind in ("fence_ipmilan", "fence_redfish"):
        for target, raw_params in targets.items():
            params = _dict(raw_params)
            given = [k for k in ("password_file", "password_env") if params.get(k)]
            if len(given) != 1:
                yield (
                    ["fencing", i, "nodes", target],
                    "give the BMC password through exactly one of password_file, password_env",
                    "add `password_file: /path/to/secret` (hacloud keeps it out of the CIB)",
                )


def _fence_kind_needs(
    i: int, method: dict[str, Any], provider: str | None, options: dict[str, Any]
) -> Iterator[Found]:
    """What a cloud or SBD method needs beyond its targets: fence_aws a region (the provider's),
    fence_azure_arm its subscription and group off Azure, SBD one or three devices."""
    kind = method.get("kind")
    if kind == "fence_aws" and not method.get("region") and not (provider == "aws" and options.get("region")):
        yield (
            ["fencing", i],
            "fence_aws needs a region",
            "add `region:` here or use provider kind aws with options.region",
        )
    if kind == "fence_aws":
        yield from _aws_region(i, method, provider, options)
    if kind == "fence_azure_arm" and provider != "azure":
        for key in ("subscription_id", "resource_group"):
            if not method.get(key):
                yield (
                    ["fencing", i],
                    f"fence_azure_arm needs {key} outside the azure provider",
                    f"add `{key}:` to this method",
                )
    if kind == "sbd" and len(_list(method.get("devices"))) == 2:
        yield (
            ["fencing", i, "devices"],
            "two SBD devices cannot fence when one of them fails",
            "use one device, or three on independent storage (MS-SLES)",
        )


def _aws_region(
    i: int, method: dict[str, Any], provider: str | None, options: dict[str, Any]
) -> Iterator[Found]:
    """fence_aws looks the instances up by id in its own region: on the aws provider they live in
    provider.options.region, so a different fencing region can never find them (every fence fails)."""
    region, home = method.get("region"), options.get("region")
    if provider == "aws" and isinstance(region, str) and isinstance(home, str) and region != home:
        yield (
            ["fencing", i, "region"],
            f"fence_aws region {region!r} differs from provider.options.region {home!r}, where the "
            f"instances are: fence_aws would look for them in {region} and never find them",
            "remove `region:` from this method (it defaults to provider.options.region), "
            f"or set it to {home!r}",
        )


def _vip(doc: dict[str, Any]) -> Iterator[Found]:
    vip = _ip(_dict(doc.get("vip")).get("address"))
    if vip is None:
        return
    for i, raw_node in enumerate(_list(doc.get("nodes"))):
        node = _dict(raw_node)
        used = [_ip(node.get("address")), _ip(node.get("replication_address"))]
        used += [_ip(a) for a in _list(node.get("links"))]
        if vip in used:
            yield (
                ["vip", "address"],
                f"the VIP {vip} is also an address of nodes[{i}]",
                "pick a free address for the VIP; it moves between the nodes",
            )


def _overrides(doc: dict[str, Any]) -> Iterator[Found]:
    overrides = doc.get("overrides")
    if not isinstance(overrides, dict):
        return
    name = doc.get("profile") or _provider_kind(doc)
    if name not in PROFILE_NAMES:
        return
    for key, message, remedy in override_problems(load_profile(str(name)), overrides):
        yield (["overrides", key], message, remedy)


def _azure_cloud(doc: dict[str, Any]) -> Iterator[Found]:
    """fence_azure_arm must talk to the cloud of the ARM endpoint (cloud=), else every fence
    goes to public Azure and fails."""
    from hacloud.spec.azurecloud import PUBLIC_ENDPOINT, cloud_of, refused, unknown

    if _provider_kind(doc) != "azure":
        return
    endpoint = _dict(_dict(doc.get("provider")).get("options")).get("arm_endpoint", PUBLIC_ENDPOINT)
    if not isinstance(endpoint, str):
        return
    derived = cloud_of(endpoint)
    for i, raw in enumerate(_list(doc.get("fencing"))):
        method = _dict(raw)
        if method.get("kind") != "fence_azure_arm":
            continue
        chosen = method.get("cloud")
        if refused(endpoint) or (derived is None and chosen is None):
            yield (
                ["provider", "options", "arm_endpoint"],
                refused(endpoint) or unknown(endpoint),
                "use your cloud's ARM endpoint (public https://management.azure.com, China "
                "https://management.chinacloudapi.cn, US Government https://management.usgovcloudapi.net)"
                f", or, when {endpoint} is a proxy in front of one, name that cloud in fencing[{i}].cloud",
            )
        elif derived is not None and chosen is not None and chosen != derived:
            yield (
                ["fencing", i, "cloud"],
                f"cloud {chosen} differs from provider.options.arm_endpoint, which is Azure {derived}",
                f"remove fencing[{i}].cloud (hacloud derives it from the endpoint) or set it to {derived}",
            )
