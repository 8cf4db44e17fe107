"""The lab network: one namespace per cluster with a bridge per corosync link and a tap per guest.

Contract: :func:`ensure_network` is idempotent; the namespace holds only ``lo``, the bridges and
the taps, has no default route and no link to the host's namespace, so nothing in it can reach
or be reached from outside. :func:`delete_network` kills every process left in the namespace and
removes it (taps and bridges go with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface

from hacloud.errors import HacloudError
from hacloud.poll import poll_until

HOST_SUFFIX = 254  # the namespace's own address on each bridge: x.y.z.254


@dataclass(frozen=True)
class LinkPlan:
    bridge: str
    host_address: IPv4Interface
    extra_addresses: tuple[IPv4Interface, ...] = ()


def namespace_name(cluster: str) -> str:
    return f"hacloud-{cluster}"


def tap_name(node_index: int, link: int) -> str:
    return f"tap{node_index}-{link}"


def mac_address(node_index: int, link: int) -> str:
    # locally administered, unicast; stable per node and link
    return f"fe:fd:c0:00:{link:02x}:{node_index + 10:02x}"


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HacloudError(
            f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}",
            "the lab needs root and the iproute2 package; run as root",
            code="HAC640",
        )
    return proc


def namespace_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def preflight() -> None:
    """Refuse early, with the fix, when this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise HacloudError(
            "the lab needs root (network namespaces, taps, mmdebstrap)",
            "run hacloud as root, e.g. `sudo .venv/bin/hacloud up`",
            code="HAC641",
        )
    if not os.path.exists("/dev/net/tun"):
        raise HacloudError(
            "/dev/net/tun is missing: the guests cannot get network cards",
            "load the tun module (`modprobe tun`) or run on a machine that has it",
            code="HAC642",
        )


def ensure_network(ns: str, links: Sequence[LinkPlan], nodes: int) -> None:
    if not namespace_exists(ns):
        ip("netns", "add", ns)
    ip("link", "set", "lo", "up", ns=ns)
    existing = ip("-o", "link", "show", ns=ns).stdout
    for link_no, plan in enumerate(links):
        if f" {plan.bridge}:" not in existing:
            ip("link", "add", plan.bridge, "type", "bridge", ns=ns)
        addrs = ip("-o", "addr", "show", "dev", plan.bridge, ns=ns).stdout
        for addr in (plan.host_address, *plan.extra_addresses):
            if f" {addr.with_prefixlen} " not in addrs:
                ip("addr", "add", addr.with_prefixlen, "dev", plan.bridge, ns=ns)
        ip("link", "set", plan.bridge, "up", ns=ns)
        for node in range(nodes):
            tap = tap_name(node, link_no)
            if f" {tap}:" not in existing:
                ip("tuntap", "add", "dev", tap, "mode", "tap", ns=ns)
            ip("link", "set", tap, "master", plan.bridge, ns=ns)
            ip("link", "set", tap, "up", ns=ns)
            # heals a partition a fence-test run may have left behind when it was killed
            set_isolated(ns, tap, False)


def set_isolated(ns: str, tap: str, isolated: bool) -> None:
    """Bridge port isolation: isolated ports cannot talk to each other, only to the bridge."""
    cmd = [
        "ip",
        "netns",
        "exec",
        ns,
        "bridge",
        "link",
        "set",
        "dev",
        tap,
        "isolated",
        "on" if isolated else "off",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise HacloudError(
            f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}",
            "the lab's partition needs bridge port isolation (Linux >= 4.18, iproute2 bridge)",
            code="HAC643",
        )


def namespace_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def delete_network(ns: str) -> None:
    if not namespace_exists(ns):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in namespace_pids(ns):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), sig)
        poll_until(lambda: None if namespace_pids(ns) else True, timeout=10, interval=0.2)
    ip("netns", "del", ns)


def interfaces(ns: str) -> list[str]:
    out = ip("-o", "link", "show", ns=ns).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def routes(ns: str) -> list[str]:
    return [r for r in ip("route", "show", ns=ns).stdout.splitlines() if r.strip()]
