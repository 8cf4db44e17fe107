"""The deploy engine: read each node, then change only what differs, in a safe order.

Contracts:
- Every step re-reads the state it depends on right before acting, so a run that stopped
  anywhere (a broken connection, a killed process) converges when run again.
- With ``apply=False`` (``hacloud plan``) nothing is changed; the same steps report what they
  would do. A converged cluster yields no :class:`Change` at all.
- Data safety: DRBD metadata is created only on a disk with no metadata and no filesystem or
  partition signature, unless ``force``; every volume of a resource is probed on both nodes
  before the first create-md, and a probe that cannot answer refuses (never reads as blank);
  a filesystem is made only on a brand-new device that Pacemaker does not manage yet; the
  full initial sync is skipped only for volumes whose both sides carry brand-new metadata
  (nothing to keep). A running DRBD resource is never given, or robbed of, volumes.
- Fencing is never disabled: the CIB is applied as a diff (``crm_diff`` + ``cibadmin
  --patch``), in maintenance mode when resources change, and the run ends by checking that
  fencing is enabled and the devices and the service group are started.
"""

from __future__ import annotations

import math
import re
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hacloud.deploy.remote import Connection, Result, sha256_hex
from hacloud.errors import HacloudError
from hacloud.provision.provider import NodeNeeds
from hacloud.render import Bundle
from hacloud.render.files import COROSYNC_LOG_DIRS, LINKS_SCRIPT
from hacloud.render.resources import DrbdResource, DrbdVolume, drbd_resources
from hacloud.spec.inventory import Inventory, NodeFacts, NodeInfo, RenderedFile, ServiceLimits
from hacloud.spec.model import DemoService, IPaddr2Vip, Spec

STATE = "/var/lib/hacloud"
PACEMAKER_OWNED = {
    "dc-version",
    "cluster-infrastructure",
    "have-watchdog",
    "last-lrm-refresh",
    "cluster-name",
}
MANAGED_SECTIONS = ("resources", "constraints", "fencing-topology", "rsc_defaults", "op_defaults")
REQUIRED = (
    "drbdadm",
    "corosync",
    "pacemakerd",
    "cibadmin",
    "crm_mon",
    "crm_diff",
    "crm_attribute",
    "crm_resource",
    "fuser",
    "blkid",
    "wipefs",
    "python3",
    "curl",
)
PACKAGES = {
    "apt-get": "drbd-utils corosync pacemaker pacemaker-cli-utils resource-agents fence-agents "
    "ipmitool python3 curl xfsprogs e2fsprogs util-linux psmisc",
    "dnf": "drbd-utils corosync pacemaker resource-agents fence-agents-all python3 curl xfsprogs psmisc",
    "zypper": "drbd drbd-utils corosync pacemaker resource-agents fence-agents python3 curl xfsprogs psmisc",
}
INSTALL = {
    "apt-get": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends",
    "dnf": "dnf install -y -q",
    "zypper": "zypper --non-interactive install --no-recommends",
}


# Files earlier hacloud versions installed and this one replaced, with how to retire them:
# the demo ran as a systemd unit before it got its own OCF agent; a unit left running would
# keep the port and make the agent's start fail.
RETIRED_FILES = {
    "/etc/systemd/system/hacloud-demo.service": "systemctl stop hacloud-demo 2>/dev/null; "
    "rm -f /etc/systemd/system/hacloud-demo.service; systemctl daemon-reload",
}


@dataclass(frozen=True)
class Change:
    node: str  # "" for cluster-wide changes
    step: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.node}: " if self.node else "cluster: "
        return f"{where}{self.step}: {self.detail}"


@dataclass
class HostFacts:
    name: str
    os_id: str = ""
    family: str = ""
    package_manager: str = ""
    commands: set[str] = field(default_factory=set)
    pacemaker: str | None = None
    drbd: str | None = None
    sums: dict[str, str | None] = field(default_factory=dict)
    services: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: corosync log directories that exist (/var/log/cluster, /var/log/corosync)
    log_dirs: list[str] = field(default_factory=list)
    #: the interface of the IPv4 default route, and IPv4 address -> interface
    default_interface: str | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    #: the limits the spec's service sets itself (None: not asked, or not on the node yet)
    service: ServiceLimits | None = None


# systemd time spans as `systemctl show` prints them (format_timespan: "1min 30s", "1h",
# "500ms", "infinity"); seconds per unit, systemd.time(7).
_SYSTEMD_UNITS = {
    "y": 31557600.0,
    "month": 2629800.0,
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "min": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "μs": 1e-6,
}
# Pacemaker interval text in agent meta-data ("120s", "120", "2min", "500ms").
_PCMK_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "ms": 1e-3}


def systemd_seconds(text: str) -> int | None:
    """A `systemctl show` time span in whole seconds (rounded up); None for no limit.

    ``infinity`` and ``0`` both mean no limit (systemd.service(5): TimeoutStartSec= "Pass
    infinity to disable the timeout logic"; 0 is read as infinity for compatibility).
    Raises ValueError on text that is no time span.
    """
    text = text.strip()
    if text in ("infinity", "0", ""):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(month|min|ms|us|μs|y|w|d|h|s)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(month|min|ms|us|μs|y|w|d|h|s)|\s", "", text):
        raise ValueError(f"not a systemd time span: {text!r}")
    total = sum(float(n) * _SYSTEMD_UNITS[u] for n, u in parts)
    return None if total == 0 else math.ceil(total)


def pacemaker_seconds(text: str) -> int:
    """An OCF meta-data timeout ("120s", "2min", "120") in whole seconds, rounded up; 0 if unreadable."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|ms)?\s*", text or "")
    return math.ceil(float(m.group(1)) * _PCMK_UNITS[m.group(2) or ""]) if m else 0


def service_probe(service: str | None) -> str:
    """The facts-script lines that read the limits the service sets itself.

    ``service`` is ``systemd:UNIT`` or ``ocf:PROVIDER:TYPE`` (None: nothing to read). A systemd
    unit answers ``systemctl show``; an OCF agent its own ``meta-data`` (run with OCF_ROOT set,
    as Pacemaker runs it). Either prints nothing useful while the package is not installed.
    """
    if not service:
        return ""
    kind, _, rest = service.partition(":")
    if kind == "systemd":
        props = " ".join(f"-p {p}" for p in ("LoadState", "Type", "RemainAfterExit", *_UNIT_TIMEOUTS))
        show = f"systemctl show {props} -- {shlex.quote(rest)} 2>/dev/null"
        return f"echo @service; echo {shlex.quote(service)}; {show}\n"
    provider, _, kind_ = rest.partition(":")
    agent = shlex.quote(f"/usr/lib/ocf/resource.d/{provider}/{kind_}")
    return f"echo @agent; echo {shlex.quote(service)}; OCF_ROOT=/usr/lib/ocf {agent} meta-data 2>/dev/null\n"


_UNIT_TIMEOUTS = ("TimeoutStartUSec", "TimeoutStopUSec")
#: facts-script lines: the corosync log directories that exist; the default route's interface
#: and every IPv4 address with its interface
LOGDIR_PROBE = (
    f"echo @logdirs; for d in {' '.join(sorted(set(COROSYNC_LOG_DIRS.values())))}; "
    'do if [ -d "$d" ]; then echo "$d"; fi; done'
)
IFACE_PROBE = (
    "echo @ifaces; ip -o -4 route show default 2>/dev/null | head -1; ip -o -4 addr show 2>/dev/null"
)


def facts_script(paths: list[str], commands: tuple[str, ...] = REQUIRED, service: str | None = None) -> str:
    q = " ".join(shlex.quote(p) for p in paths)
    cmds = " ".join(shlex.quote(c) for c in commands)
    return f"""
echo @os; (. /etc/os-release; echo "$ID ${{ID_LIKE:-}}")
echo @pm; for p in apt-get dnf zypper; do command -v $p >/dev/null 2>&1 && echo $p && break; done
echo @cmds; for c in {cmds}; do command -v $c >/dev/null 2>&1 && echo $c; done
echo @pacemaker; pacemakerd --version 2>/dev/null | head -1
echo @drbd; modprobe drbd 2>/dev/null; head -1 /proc/drbd 2>/dev/null
echo @sums; for f in {q}; do if [ -f "$f" ]; then sha256sum "$f"; else echo "- $f"; fi; done
echo @services; for s in corosync pacemaker; do \
  echo "$s $(systemctl is-enabled $s 2>/dev/null || true) $(systemctl is-active $s 2>/dev/null || true)"; done
{LOGDIR_PROBE}
{IFACE_PROBE}
{service_probe(service)}echo @end
"""


def _parse_iface(facts: HostFacts, line: str) -> None:
    """`ip -o -4 route show default` ("default via A dev IF ...") and `ip -o -4 addr show`
    ("2: IF    inet A/P ...") lines."""
    route = re.match(r"default\b.*?\bdev\s+(\S+)", line)
    if route:
        facts.default_interface = route.group(1)
        return
    addr = re.match(r"\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)/", line)
    if addr:
        facts.addresses[addr.group(2)] = addr.group(1)


def _unit_limits(lines: list[str]) -> ServiceLimits | None:
    """``systemctl show`` Key=Value lines after the service id; None unless the unit is loaded
    (show answers for a unit that does not exist too, with systemd's defaults)."""
    if not lines:
        return None
    props = dict(line.partition("=")[::2] for line in lines[1:])
    if props.get("LoadState") != "loaded":
        return None
    try:
        start, stop = (systemd_seconds(props.get(k, "")) for k in _UNIT_TIMEOUTS)
    except ValueError:
        return None
    oneshot = props.get("Type") == "oneshot" and props.get("RemainAfterExit") == "yes"
    return ServiceLimits(lines[0], start, stop, oneshot)


def _agent_limits(lines: list[str]) -> ServiceLimits | None:
    """An OCF agent's meta-data after the service id: the start/stop timeouts it advises."""
    # only the document: an agent may print a warning around it on stdout
    xml = re.search(r"<resource-agent\b.*</resource-agent>", "\n".join(lines[1:]), re.DOTALL)
    if not lines or not xml:
        return None
    try:
        root = ET.fromstring(xml.group(0))
    except ET.ParseError:
        return None
    actions = root.iterfind("./actions/action")
    advised = {a.get("name"): pacemaker_seconds(a.get("timeout", "")) for a in actions}
    return ServiceLimits(lines[0], advised.get("start", 0), advised.get("stop", 0))


# The facts script's section markers; any other line starting with "@" is data.
_SECTION = re.compile(r"@(os|pm|cmds|pacemaker|drbd|sums|services|logdirs|ifaces|service|agent|end)")


def parse_facts(name: str, text: str) -> HostFacts:
    facts = HostFacts(name)
    section = ""
    raw: dict[str, list[str]] = {"service": [], "agent": []}
    for line in text.splitlines():
        if _SECTION.fullmatch(line):
            section = line[1:]
            continue
        if section in raw:
            if line.strip() or section == "agent":
                raw[section].append(line.strip() if section == "service" else line)
            continue
        if not line.strip():
            continue
        if section == "os":
            facts.os_id = line.split()[0]
            words = line.split()
            facts.family = (
                "debian"
                if {"debian", "ubuntu"} & set(words)
                else "suse"
                if any("suse" in w for w in words)
                else "rhel"
            )
        elif section == "pm":
            facts.package_manager = line.strip()
        elif section == "cmds":
            facts.commands.add(line.strip())
        elif section == "pacemaker":
            m = re.search(r"(\d+\.\d+\.\d+)", line)
            facts.pacemaker = m.group(1) if m else None
        elif section == "drbd":
            m = re.search(r"version: (\d+)\.(\d+)", line)
            if m:
                facts.drbd = "9" if m.group(1) == "9" else f"{m.group(1)}.{m.group(2)}"
        elif section == "sums":
            digest, _, path = line.partition(" ")
            facts.sums[path.strip()] = None if digest == "-" else digest
        elif section == "services":
            parts = line.split()
            if len(parts) == 3:
                facts.services[parts[0]] = (parts[1], parts[2])
        elif section == "logdirs":
            facts.log_dirs.append(line.strip())
        elif section == "ifaces":
            _parse_iface(facts, line.strip())
    facts.service = _unit_limits(raw["service"]) or _agent_limits([ln for ln in raw["agent"] if ln.strip()])
    return facts


def node_facts(host: HostFacts, node: NodeInfo) -> NodeFacts:
    """The facts to render ``node`` for: what was just read from it wins, else what the
    inventory already knew. The primary interface is the one holding the node's first link
    address (the address the provider gave it), else the default route's."""
    old = node.facts
    drbd = host.drbd if host.drbd in ("8.4", "9") else old.drbd
    family = host.family if host.family in ("debian", "rhel", "suse") else old.os_family
    preferred = COROSYNC_LOG_DIRS.get(family or "")
    log_dir = preferred if preferred in host.log_dirs else (host.log_dirs[0] if host.log_dirs else None)
    wanted = [*node.links, node.replication_address, node.ssh_address]
    interface = next((host.addresses[a] for a in wanted if a in host.addresses), host.default_interface)
    return NodeFacts(
        drbd=drbd,  # type: ignore[arg-type]  # narrowed to the literal values just above
        pacemaker=host.pacemaker or old.pacemaker,
        os_family=family,  # type: ignore[arg-type]
        corosync_log_dir=log_dir or old.corosync_log_dir,
        primary_interface=interface or old.primary_interface,
        service=host.service or old.service,
    )


def gather(
    conn: Connection, paths: list[str], commands: tuple[str, ...] = REQUIRED, service: str | None = None
) -> HostFacts:
    """Read a node's facts in one round trip; ``service`` as for :func:`service_probe`."""
    script = facts_script(paths, commands, service)
    return parse_facts(conn.endpoint.name, conn.run(script, timeout=60).stdout)


def _parallel(fn: Callable[[str], Any], names: list[str]) -> list[Any]:
    from hacloud.deploy.remote import parallel

    return parallel(fn, names)  # an interrupt does not wait for the running steps


# ---------------------------------------------------------------- cluster state


def crm_mon(conn: Connection) -> ET.Element | None:
    result = conn.run("crm_mon -1 --output-as=xml 2>/dev/null", check=False, timeout=60)
    if result.rc != 0 or "<pacemaker-result" not in result.stdout:
        return None
    try:
        return ET.fromstring(result.stdout)
    except ET.ParseError:
        return None


def fencing_enabled(mon: ET.Element) -> bool:
    """Pacemaker's effective fencing switch (defaults included) from crm_mon's summary."""
    options = mon.find("./summary/cluster_options")
    if options is None:
        return False
    value = options.get("stonith-enabled", options.get("fencing-enabled", "false"))
    return value.lower() == "true"


def online_nodes(mon: ET.Element) -> list[str]:
    return [n.get("name", "") for n in mon.iterfind("./nodes/node") if n.get("online") == "true"]


def resource_nodes(mon: ET.Element, rid: str) -> list[tuple[str, str]]:
    """[(role, node)] for a resource id (a primitive, or each member of a group/clone)."""
    out = []
    for res in mon.iter("resource"):
        if res.get("id") == rid or res.get("id", "").split(":")[0] == rid:
            for node in res.iter("node"):
                out.append((res.get("role", ""), node.get("name", "")))
    return out


def merge_cib(live: str, rendered: str) -> ET.Element:
    """The CIB hacloud wants: the live one with hacloud's configuration sections and cluster
    options, keeping what Pacemaker itself maintains (nodes, dc-version, ...)."""
    live_root = ET.fromstring(live)
    want = ET.fromstring(rendered)
    result = deepcopy(live_root)
    cfg = result.find("configuration")
    want_cfg = want.find("configuration")
    if cfg is None or want_cfg is None:
        raise HacloudError("the live CIB has no configuration section", "check pacemaker on the nodes")
    for name in MANAGED_SECTIONS:
        old = cfg.find(name)
        new = want_cfg.find(name)
        index = list(cfg).index(old) if old is not None else len(cfg)
        if old is not None:
            cfg.remove(old)
        if new is not None:
            cfg.insert(index, deepcopy(new))
    crm_config = cfg.find("crm_config")
    want_props = want_cfg.find("./crm_config/cluster_property_set[@id='cib-bootstrap-options']")
    if crm_config is not None and want_props is not None:
        old_props = crm_config.find("./cluster_property_set[@id='cib-bootstrap-options']")
        merged = deepcopy(want_props)
        wanted = {nv.get("name") for nv in merged}
        if old_props is not None:
            for nv in old_props:
                if nv.get("name") in PACEMAKER_OWNED and nv.get("name") not in wanted:
                    merged.append(deepcopy(nv))
            crm_config.remove(old_props)
        crm_config.insert(0, merged)
    return result


def without_status(root: ET.Element) -> ET.Element:
    """A copy without the status section. Both sides of a diff must lack it: a patch that
    touched status would erase node state and make Pacemaker fence the nodes as unclean."""
    copy = deepcopy(root)
    status = copy.find("status")
    if status is not None:
        copy.remove(status)
    return copy


def _canonical(elem: ET.Element | None) -> str:
    if elem is None:
        return ""
    return ET.canonicalize(ET.tostring(elem, encoding="unicode"), strip_text=True)


def cib_differences(live: str, desired: ET.Element) -> list[str]:
    live_cfg = ET.fromstring(live).find("configuration")
    want_cfg = desired.find("configuration")
    out = []
    for name in ("crm_config", *MANAGED_SECTIONS):
        a = live_cfg.find(name) if live_cfg is not None else None
        b = want_cfg.find(name) if want_cfg is not None else None
        if _canonical(a) != _canonical(b):
            out.append(name)
    return out


def disk_signatures(
    conn: Connection, node: str, disk: str, *, forceable: bool = True
) -> tuple[list[str], int]:
    """(signature types wipefs finds, partitions the kernel shows) on ``disk`` of ``node``.

    Contract: a probe that cannot answer raises :class:`HacloudError` naming the disk, the
    node and the tool's own error; it never reads as a blank disk (a failing ``wipefs`` once
    read as "no signature", and create-md/mkfs could then run over data). ``forceable``:
    whether the caller lets ``--force`` go past an unreadable disk (the remedy says so).
    Regular files are probed too (no partitions: the kernel partitions block devices only).
    """
    q = shlex.quote(disk)
    way_out = (
        "or run again with --force if whatever it holds may be destroyed"
        if forceable
        else "hacloud makes no filesystem on a disk it cannot read, not even with --force"
    )

    def refuse(result: Result) -> HacloudError:
        why = result.stderr.strip() or result.stdout.strip() or f"exit status {result.rc}"
        return HacloudError(
            f"cannot tell whether {disk} on {node} holds data: {why}",
            f"fix the disk or its path in nodes[].volumes (`wipefs --no-act {disk}` must succeed "
            f"on {node}); {way_out}",
        )

    sigs = conn.run(f"wipefs --no-act --noheadings --output TYPE {q}", check=False)
    if sigs.rc != 0:
        raise refuse(sigs)
    # lsblk answers for block devices only; a regular file has no kernel partitions.
    parts = conn.run(f"if test -b {q}; then lsblk -nro TYPE {q}; fi", check=False)
    if parts.rc != 0:
        raise refuse(parts)
    return [t for t in sigs.stdout.split() if t], parts.stdout.split().count("part")


@dataclass
class DrbdState:
    """One DRBD resource on one node: ``md`` and ``dstates`` ("UpToDate/UpToDate") by volume
    number; ``role``/``cstate`` only when the resource is up."""

    up: bool
    md: dict[int, bool]
    role: str = ""
    cstate: str = ""
    dstates: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _NewMetadata:
    node: str
    volume: DrbdVolume
    disk: str
    label: str
    found: list[str]
    parts: int
    unread: str  # --force past an unreadable disk: what the probe said


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def layout_conflicts(running: dict[str, list[int]], wanted: list[DrbdResource]) -> list[str]:
    """Why the spec's DRBD layout cannot be applied to the resources ``running`` on a node
    (resource -> its minors as the node's config has them), empty when it can.

    A running resource must keep exactly its minors: `drbdadm adjust` would attach a new
    volume that has no metadata (the resource fails at its next start), and a minor moved to
    another resource makes the node's config invalid while the old resource still holds it.
    Resources the spec no longer names and whose minors it does not reuse are left alone.
    """
    owner = {v.minor: r.name for r in wanted for v in r.volumes}
    problems = []
    for res in sorted(running):
        have = running[res]
        want = next((sorted(v.minor for v in r.volumes) for r in wanted if r.name == res), None)
        if want is not None and want != have:
            problems.append(f"DRBD resource {res} runs with minors {have}, the spec gives it {want}")
        elif want is None:
            taken = [f"{m} (-> {owner[m]})" for m in have if m in owner]
            if taken:
                problems.append(
                    f"DRBD resource {res} runs with minors the spec gives to another resource: "
                    + ", ".join(taken)
                )
    return problems


def drbd_status_command(resources: list[DrbdResource]) -> str:
    """One shell command printing, per resource, ``role R <role>``, ``cstate R <state>`` and
    per volume ``dstate R/N <local>/<peer>`` (parsed by :func:`parse_drbd_status`). Role and
    cstate are read per resource (DRBD 9 refuses a volume there; 8.4 repeats them per volume),
    disk states per volume, so a multi-volume resource reads the same on both generations."""
    lines = []
    for r in resources:
        lines.append(f'echo "role {r.name} $(drbdadm role {r.name} 2>/dev/null | head -n1)"')
        lines.append(f'echo "cstate {r.name} $(drbdadm cstate {r.name} 2>/dev/null | head -n1)"')
        for v in r.volumes:
            ref = f"{r.name}/{v.number}"
            lines.append(f'echo "dstate {ref} $(drbdadm dstate {ref} 2>/dev/null | head -n1)"')
    lines.append('echo "sync $(grep -o "sync\'ed: *[0-9.]*%" /proc/drbd 2>/dev/null | head -n1)"')
    return "; ".join(lines)


def parse_drbd_status(text: str) -> dict[str, Any]:
    """``{"resources": [{"resource", "role", "connection", "volumes": [{"volume", "disk",
    "peer_disk"}]}], "sync": "12.3%" | None}`` from :func:`drbd_status_command`'s output;
    a state DRBD did not report is None."""
    resources: dict[str, dict[str, Any]] = {}
    sync = None
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        ref, _, value = rest.partition(" ")
        value = value.strip()
        if kind == "sync":
            sync = value.split()[-1] if value else None  # "sync'ed: 12.3%" -> "12.3%"
            continue
        name, _, number = ref.partition("/")
        if not name:
            continue
        entry = resources.setdefault(
            name, {"resource": name, "role": None, "connection": None, "volumes": []}
        )
        if kind == "role":
            entry["role"] = value.split("/")[0] or None
        elif kind == "cstate":
            entry["connection"] = value or None
        elif kind == "dstate" and number.isdigit():
            local, _, peer = value.partition("/")
            entry["volumes"].append({"volume": int(number), "disk": local or None, "peer_disk": peer or None})
    return {"resources": list(resources.values()), "sync": sync}


# ---------------------------------------------------------------- the engine


class Engine:
    def __init__(
        self,
        spec: Spec,
        inventory: Inventory,
        bundle: Bundle,
        conns: dict[str, Connection],
        progress: Callable[[str], None],
        *,
        apply: bool,
        force: bool = False,
        needs: NodeNeeds | None = None,
    ) -> None:
        self.needs = needs or NodeNeeds()
        #: the commands the nodes must have: the core's and the provider's agents'
        self.commands = (*REQUIRED, *self.needs.commands)
        self.spec = spec
        self.inventory = inventory
        self.bundle = bundle
        self.conns = conns
        self.progress = progress
        self.apply = apply
        self.force = force
        self.names = [n.name for n in inventory.nodes]
        self.changes: list[Change] = []
        self.facts: dict[str, HostFacts] = {}

    def change(self, node: str, step: str, detail: str) -> None:
        c = Change(node, step, detail)
        self.changes.append(c)
        self.progress(("" if self.apply else "would: ") + str(c))

    def run_all(self) -> list[Change]:
        self.read_facts()
        self.drbd_layout()
        self.packages()
        changed_files = self.files()
        self.drbd(changed_files)
        self.cluster_services(changed_files)
        self.node_probes()
        if self.apply or self._cluster_running():
            self.cib()
        else:
            self.change("", "cib", "apply the whole configuration once the cluster runs")
        if self.apply:
            if any(changed_files.values()):
                self.clear_stale_failures()
            self.wait_healthy()
        return self.changes

    def clear_stale_failures(self) -> None:
        """After `up` replaced files the resources read (a fence password, an agent), failures
        recorded under the old files would keep a resource stopped (a fence device that failed
        to start stays down until cleaned up): clear them once so Pacemaker retries with what
        was just installed. A failure that persists is recorded again and reported by the
        health wait."""
        mon = crm_mon(self.conns[self.names[0]])
        failed = [f.get("op_key", "") for f in mon.iter("failure")] if mon is not None else []
        if failed:
            self.progress(f"clearing failures recorded before this run: {', '.join(sorted(failed))}")
            self.conns[self.names[0]].run("crm_resource --cleanup >/dev/null", check=False, timeout=120)

    # -------------------------------------------------------------- facts and packages

    def paths(self, node: str) -> list[str]:
        return [f.path for f in self.bundle.files[node]] + list(RETIRED_FILES) + self._retired(node)

    def _retired(self, node: str) -> list[str]:
        """This node's retired paths the bundle does not also render (never remove a file we write)."""
        written = {f.path for f in self.bundle.files[node]}
        return [p for p in self.bundle.retired.get(node, ()) if p not in written]

    def read_facts(self) -> None:
        results = _parallel(lambda n: gather(self.conns[n], self.paths(n), self.commands), self.names)
        self.facts = dict(zip(self.names, results, strict=True))

    def packages(self) -> None:
        for name in self.names:
            facts = self.facts[name]
            missing = [c for c in self.commands if c not in facts.commands]
            if not missing:
                continue
            pm = facts.package_manager
            if pm not in PACKAGES:
                raise HacloudError(
                    f"{name}: missing {', '.join(missing)} and no apt-get, dnf or zypper",
                    "install DRBD utils, corosync, pacemaker and the agents by hand",
                )
            packages = " ".join(p for p in (PACKAGES[pm], self.needs.packages.get(pm, "")) if p)
            self.change(name, "packages", f"install {packages} (missing {', '.join(missing)})")
            if self.apply:
                if pm == "apt-get":
                    self.conns[name].run("apt-get update -q", timeout=600)
                self.conns[name].run(f"{INSTALL[pm]} {packages}", timeout=1800)
        if self.apply and any(c.step == "packages" for c in self.changes):
            self.read_facts()

    def node_probes(self) -> None:
        """The provider's read-only node checks (IMDS, cloud API reach, agent listing), before
        the CIB that enables fencing goes in: a fence agent that cannot work must stop `up`."""
        for check in self.needs.probes:
            for name in self.names:
                res = self.conns[name].run(check.command, check=False, timeout=120)
                if res.rc != 0:
                    detail = " / ".join((res.stdout + res.stderr).strip().splitlines()[-3:]) or f"rc {res.rc}"
                    raise HacloudError(
                        f"{name}: check {check.code} failed: {check.what} ({detail})",
                        check.remedy,
                    )

    # -------------------------------------------------------------- files

    def files(self) -> dict[str, set[str]]:
        """Upload every file whose checksum differs; returns node -> changed paths."""
        changed: dict[str, set[str]] = {n: set() for n in self.names}
        for name in self.names:
            for path, retire in RETIRED_FILES.items():
                if self.facts[name].sums.get(path):
                    self.change(name, "file", f"retire {path} (replaced in this hacloud version)")
                    if self.apply:
                        self.conns[name].run(retire)
            for path in self._retired(name):
                if self.facts[name].sums.get(path):
                    self.change(name, "file", f"remove {path} (a node holds only its peer's BMC password)")
                    if self.apply:
                        # exactly this regular file: rm -f never follows into a directory
                        self.conns[name].run(f"rm -f -- {shlex.quote(path)}")
            for f in self.bundle.files[name]:
                if self.facts[name].sums.get(f.path) != sha256_hex(f.content):
                    changed[name].add(f.path)
                    what = "(secret, content not shown)" if f.secret else f"{len(f.content)} bytes"
                    self.change(name, "file", f"write {f.path} {what}")

        def upload(name: str) -> None:
            by_path: dict[str, RenderedFile] = {f.path: f for f in self.bundle.files[name]}
            for path in sorted(changed[name]):
                f = by_path[path]
                self.conns[name].put(f.path, f.content, f.mode)
            if any(p.startswith("/etc/systemd/") for p in changed[name]):
                self.conns[name].run("systemctl daemon-reload")
            if any(p.startswith("/etc/sysctl.d/") for p in changed[name]):
                self.conns[name].run("sysctl --system >/dev/null")
            if LINKS_SCRIPT in changed[name]:
                # corosync runs it before it starts; a running corosync reloads the new link
                # right after the files, so the address must be up now.
                self.conns[name].run(LINKS_SCRIPT)

        if self.apply:
            _parallel(upload, self.names)
        return changed

    # -------------------------------------------------------------- DRBD

    def drbd_layout(self) -> None:
        """Before anything is written: every DRBD resource that is up keeps the volumes it
        runs with (see :func:`layout_conflicts`)."""
        script = (
            "for r in $(drbdadm sh-resources 2>/dev/null); do "
            'if drbdadm role "$r" >/dev/null 2>&1; then echo "$r" $(drbdadm sh-minor "$r" 2>/dev/null); fi; '
            "done"
        )
        for name in self.names:
            out = self.conns[name].run(script, check=False).stdout
            running = {
                fields[0]: sorted(int(m) for m in fields[1:] if m.isdigit())
                for fields in (line.split() for line in out.splitlines())
                if fields
            }
            problems = layout_conflicts(running, drbd_resources(self.spec))
            if problems:
                raise HacloudError(
                    f"{name}: " + "; ".join(problems),
                    "hacloud does not add volumes to, remove them from or regroup a DRBD resource that "
                    "is running (its volumes share one metadata history and sync state): put the spec's "
                    "volumes back as they are running; a new volume can join as its own resource "
                    "(no `resource:`, or a new resource name). Nothing was changed",
                )

    def _managed_by_pacemaker(self, resource: str) -> bool:
        result = self.conns[self.names[0]].run(
            f'cibadmin -Q -o resources 2>/dev/null | grep -c \'drbd_resource" value="{resource}"\'',
            check=False,
        )
        return result.stdout.strip() not in ("", "0")

    def drbd(self, changed_files: dict[str, set[str]]) -> None:
        for res in drbd_resources(self.spec):
            self._drbd_resource(res, changed_files)

    def _pacemaker_active(self, name: str) -> bool:
        return self.facts[name].services.get("pacemaker", ("", ""))[1] == "active"

    def _state(self, name: str, res: DrbdResource) -> DrbdState:
        conn = self.conns[name]
        for _ in range(30):
            role = conn.run(f"drbdadm role {res.name} 2>/dev/null", check=False)
            if role.rc == 0 and role.stdout.strip():
                # DRBD 8.4 prints role and cstate once per volume, DRBD 9 once per resource and
                # connection; the volumes of a resource share both, so the first line speaks for all.
                cstate = conn.run(f"drbdadm cstate {res.name}", check=False).stdout
                dstates = {
                    v.number: conn.run(f"drbdadm dstate {res.name}/{v.number}", check=False).stdout.strip()
                    for v in res.volumes
                }
                return DrbdState(
                    up=True,
                    md={v.number: True for v in res.volumes},
                    role=_first_line(role.stdout),
                    cstate=_first_line(cstate),
                    dstates=dstates,
                )
            md: dict[int, bool] = {}
            for v in res.volumes:
                dump = conn.run(f"drbdadm dump-md {res.name}/{v.number} 2>&1 >/dev/null", check=False)
                if "busy" in dump.stdout:
                    break
                md[v.number] = dump.rc == 0
            else:
                return DrbdState(up=False, md=md)
            # The disk is held open: right after a boot Pacemaker may be attaching it just now.
            time.sleep(1)
        raise HacloudError(
            f"{name}: a disk of DRBD resource {res.name} is in use but the resource is not up",
            "find what holds the disk (`fuser -v` on it, mounts) and stop it; hacloud will not touch it",
        )

    def _metadata_plan(self, res: DrbdResource, states: dict[str, DrbdState]) -> list[_NewMetadata]:
        """Every volume of ``res`` on every node that needs DRBD metadata, after probing them
        all: one disk that holds data (or cannot be read) stops the run before any create-md,
        so no node is left half-initialised."""
        plan: list[_NewMetadata] = []
        for name in self.names:
            conn = self.conns[name]
            for v in res.volumes:
                if states[name].md.get(v.number):
                    continue
                disk = self.inventory.node(name).volumes[v.spec.name]
                label = f"{res.name}/{v.number} ({v.spec.name})" if len(res.volumes) > 1 else res.name
                if conn.run(f"test -b {shlex.quote(disk)}", check=False).rc != 0:
                    raise HacloudError(
                        f"{name}: {disk} (volume {v.spec.name}) is not a block device",
                        "name the data disk's stable path in nodes[].volumes",
                    )
                try:
                    found, parts = disk_signatures(conn, name, disk)
                except HacloudError as err:
                    if not self.force:
                        raise
                    # The user said whatever the disk holds may go; say what we could not read.
                    plan.append(_NewMetadata(name, v, disk, label, [], 0, err.message))
                    continue
                if "drbd" in found:
                    # DRBD metadata is there (dump-md can fail while a booting node loads the
                    # module or Pacemaker attaches the disk). Never re-create it, not even with
                    # --force: that would throw away the data and the replication history.
                    states[name].md[v.number] = True
                    continue
                if (found or parts) and not self.force:
                    what = ", ".join(found) or f"{parts} partition(s)"
                    raise HacloudError(
                        f"{name}: {disk} already holds {what}; hacloud will not put DRBD metadata over it",
                        "if that data may be destroyed, run again with --force; otherwise name an empty "
                        "disk for this node in nodes[].volumes",
                    )
                plan.append(_NewMetadata(name, v, disk, label, found, parts, ""))
        return plan

    def _drbd_resource(self, res: DrbdResource, changed_files: dict[str, set[str]]) -> None:
        states = dict(zip(self.names, _parallel(lambda n: self._state(n, res), self.names), strict=True))
        fresh: dict[str, set[int]] = {n: set() for n in self.names}
        for new in self._metadata_plan(res, states):
            self.change(
                new.node,
                "drbd",
                f"create metadata for {new.label} on {new.disk}"
                + (f" (--force: wiping {', '.join(new.found)})" if new.found else "")
                + (f" (--force although {new.unread})" if new.unread else ""),
            )
            if self.apply:
                conn = self.conns[new.node]
                if new.found or new.parts:
                    conn.run(f"wipefs -a {shlex.quote(new.disk)}")
                conn.run(f"drbdadm -- --force create-md {res.name}/{new.volume.number}")
                fresh[new.node].add(new.volume.number)
        managed = self._managed_by_pacemaker(res.name)
        for name in self.names:
            if not states[name].up and managed and self._pacemaker_active(name):
                continue  # Pacemaker starts it (a node that just booted); two starters would collide
            if not states[name].up:
                self.change(name, "drbd", f"bring {res.name} up")
                if self.apply:
                    self.conns[name].run(f"drbdadm up {res.name}")
            elif (
                f"/etc/drbd.d/{res.name}.res" in changed_files[name]
                or "/etc/drbd.d/global_common.conf" in changed_files[name]
            ):
                self.change(name, "drbd", f"adjust {res.name} to the new configuration")
                if self.apply:
                    self.conns[name].run(f"drbdadm adjust {res.name}")
        if not self.apply or managed:
            return
        self._initialise(res)

    def _wait_connected(self, res: DrbdResource) -> dict[str, DrbdState]:
        deadline = time.monotonic() + 60
        while True:
            states = {n: self._state(n, res) for n in self.names}
            # Connected alone is not enough: right after the handshake the peer's disk state
            # may still read DUnknown, and deciding on that would skip the brand-new check.
            if all(
                s.cstate == "Connected"
                and all("DUnknown" not in d for d in s.dstates.values())
                and len(s.dstates) == len(res.volumes)
                for s in states.values()
            ):
                return states
            if time.monotonic() > deadline:
                raise HacloudError(
                    f"DRBD {res.name} did not connect: "
                    + "; ".join(f"{n}: {s.cstate or '?'} {s.dstates}" for n, s in states.items()),
                    "check that the nodes reach each other on the replication address and port (firewall)",
                )
            time.sleep(1)

    def _initialise(self, res: DrbdResource) -> None:
        """A resource Pacemaker does not manage yet: skip the initial sync of brand-new volumes,
        make the filesystems that are missing (all in one promote), create the mount points."""
        first = self.names[0]
        conn = self.conns[first]
        states = self._wait_connected(res)
        for v in res.volumes:
            if {s.dstates[v.number] for s in states.values()} != {"Inconsistent/Inconsistent"}:
                continue
            ref = f"{res.name}/{v.number}"
            gis = [self.conns[n].run(f"drbdadm get-gi {ref}").stdout.strip() for n in self.names]
            if not all(g.startswith("0000000000000004:") for g in gis):
                raise HacloudError(
                    f"DRBD {ref} is Inconsistent on both nodes but not brand-new ({gis})",
                    "inspect it with `drbdadm status`; hacloud will not guess which side to keep",
                )
            # Both sides carry brand-new metadata: nothing to sync (DRBD UG, MS-NFS).
            self.change(first, "drbd", f"skip the initial sync of brand-new {ref} (clear-bitmap)")
            clear = (
                f"drbdadm -- --clear-bitmap new-current-uuid {ref}"
                if self.bundle.targets.drbd == "8.4"
                else f"drbdadm new-current-uuid --clear-bitmap {ref}"
            )
            conn.run(clear)
            self._wait_dstate(ref, "UpToDate/UpToDate")
        mkfs: list[str] = []
        for v in res.volumes:
            device = f"/dev/drbd{v.minor}"
            disk = self.inventory.node(first).volumes[v.spec.name]
            # Every signature on the backing disk: with internal metadata a used disk carries the
            # filesystem at the start and DRBD's at the end. (`blkid -p` answers "ambivalent" with
            # empty output for two signatures: read as "no filesystem", that meant mkfs over data
            # when a drop-in `down` had left the disk and a later `up` found no CIB.)
            found, _ = disk_signatures(conn, first, disk, forceable=False)
            if set(found) - {"drbd"}:
                continue
            fstype = v.spec.filesystem
            self.change(first, "drbd", f"make a {fstype} filesystem on {v.spec.name} ({device})")
            # ext4: initialise inode tables and journal now. Lazy init would write across the
            # whole disk in the background for minutes, and a primary that dies meanwhile has
            # every extent in DRBD's activity log: a full resync instead of a few MiB.
            mkfs.append(
                f"mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 {device}"
                if fstype == "ext4"
                else f"mkfs.{fstype} -q -f {device}"
            )
        if mkfs:
            conn.run(
                f"drbdadm primary {res.name} && {' && '.join(mkfs)}; rc=$?; "
                f"drbdadm secondary {res.name}; exit $rc",
                timeout=600 * len(mkfs),
            )
        mounts = " ".join(shlex.quote(v.spec.mount_point) for v in res.volumes)
        for name in self.names:
            self.conns[name].run(f"mkdir -p {mounts}")

    def _wait_dstate(self, ref: str, want: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                self.conns[n].run(f"drbdadm dstate {ref}", check=False).stdout.strip() == want
                for n in self.names
            ):
                return
            time.sleep(1)
        raise HacloudError(f"DRBD {ref} did not reach {want}", "inspect it with `drbdadm status`")

    # -------------------------------------------------------------- corosync, pacemaker

    def _cluster_running(self) -> bool:
        return all(self.facts[n].services.get("pacemaker", ("", ""))[1] == "active" for n in self.names)

    def cluster_services(self, changed_files: dict[str, set[str]]) -> None:
        corosync_changed = [
            n
            for n in self.names
            if "/etc/corosync/corosync.conf" in changed_files[n]
            or "/etc/corosync/authkey" in changed_files[n]
        ]
        for service in ("corosync", "pacemaker"):
            to_start = [n for n in self.names if self.facts[n].services.get(service, ("", ""))[1] != "active"]
            to_enable = [
                n for n in self.names if self.facts[n].services.get(service, ("", ""))[0] != "enabled"
            ]
            for n in sorted(set(to_start) | set(to_enable)):
                self.change(n, service, "enable and start")
            if service == "corosync" and corosync_changed and not to_start:
                self.change("", "corosync", "reload the new configuration (corosync-cfgtool -R)")
                if self.apply:
                    self.conns[self.names[0]].run("corosync-cfgtool -R")
            if self.apply and (to_start or to_enable):
                # Both at once: with two_node/wait_for_all each waits for its peer once.
                command = f"systemctl enable {service} && systemctl start {service}"
                _parallel(partial(self._run_on, command=command), sorted(set(to_start) | set(to_enable)))
        if self.apply:
            self._wait(
                lambda mon: sorted(online_nodes(mon)) == sorted(self.names),
                "both nodes online in the cluster",
                240,
            )

    def _run_on(self, name: str, *, command: str) -> None:
        self.conns[name].run(command, timeout=180)

    def _wait(self, ok: Callable[[ET.Element], bool], what: str, timeout: float) -> ET.Element:
        deadline = time.monotonic() + timeout
        last: ET.Element | None = None
        while time.monotonic() < deadline:
            for name in self.names:
                try:
                    last = crm_mon(self.conns[name])
                except HacloudError:
                    last = None
                if last is not None:
                    break
            if last is not None and ok(last):
                return last
            time.sleep(2)
        failures = [
            f"{f.get('op_key')} on {f.get('node')}: {f.get('exitreason') or f.get('exitstatus')}"
            for f in (last.iter("failure") if last is not None else [])
        ]
        detail = "; ".join(failures) if failures else "no failed action recorded"
        raise HacloudError(
            f"timed out waiting for {what} ({detail})",
            "inspect the cluster with `hacloud status` and the node's /var/log/pacemaker/pacemaker.log; "
            "then run `hacloud up` again",
        )

    # -------------------------------------------------------------- CIB

    def cib(self) -> None:
        conn = self.conns[self.names[0]]
        live = conn.run("cibadmin -Q", timeout=60).stdout
        desired = merge_cib(live, self.bundle.cib)
        diffs = cib_differences(live, desired)
        if not diffs:
            return
        self.change("", "cib", f"update {', '.join(diffs)}")
        if not self.apply:
            return
        resources_change = any(d in ("resources", "constraints", "fencing-topology") for d in diffs)
        conn.run(f"mkdir -p {STATE} && chmod 700 {STATE}")
        live_cfg = ET.tostring(without_status(ET.fromstring(live)), encoding="unicode")
        conn.put(f"{STATE}/cib-live.xml", live_cfg.encode(), 0o600)
        conn.put(
            f"{STATE}/cib-desired.xml",
            ET.tostring(without_status(desired), encoding="unicode").encode(),
            0o600,
        )
        conn.run(
            f"crm_diff --no-version -o {STATE}/cib-live.xml -n {STATE}/cib-desired.xml "
            f"> {STATE}/cib.patch; test $? -le 1"
        )
        patch = conn.run(f"cat {STATE}/cib.patch").stdout
        if "/cib/status" in patch:
            raise HacloudError(
                "refusing a CIB patch that touches the status section",
                "this is a bug in hacloud; nothing was applied",
            )
        if resources_change:
            conn.run("crm_attribute -t crm_config -n maintenance-mode -v true")
        try:
            conn.run(f"cibadmin --patch --xml-file {STATE}/cib.patch")
        finally:
            if resources_change:
                conn.run("crm_attribute -t crm_config -n maintenance-mode -D")

    # -------------------------------------------------------------- health

    def wait_healthy(self, timeout: float = 300) -> None:
        devices = [d.primitive.id for d in self.bundle.fence_devices]
        clones = [f"drbd_{r.name}" for r in drbd_resources(self.spec)]
        filesystems = [f"fs_{v.name}" for v in self.spec.volumes]

        def healthy(mon: ET.Element) -> bool:
            started = all(any(role == "Started" for role, _ in resource_nodes(mon, d)) for d in devices)
            promoted = all(
                len([r for r, _ in resource_nodes(mon, c) if r in ("Promoted", "Master")]) == 1
                for c in clones
            )
            placed = [resource_nodes(mon, f) for f in filesystems]
            mounted = all(p and p[0][0] == "Started" for p in placed)
            return started and promoted and mounted and len({p[0][1] for p in placed}) == 1

        self.progress("waiting for fencing devices, DRBD and the service group to start")
        mon = self._wait(healthy, "fencing devices and the service group to start", timeout)
        if not fencing_enabled(mon):
            raise HacloudError(
                "fencing is not enabled on the cluster",
                "never run a DRBD pair without fencing: run `hacloud up` again",
            )
        self.service_check(mon)

    def service_node(self, mon: ET.Element) -> str | None:
        fs = resource_nodes(mon, f"fs_{self.spec.volumes[0].name}")
        return fs[0][1] if fs else None

    def service_check(self, mon: ET.Element, timeout: float = 60) -> str | None:
        """For the demo service on an IPaddr2 VIP: wait until /health answers on the VIP."""
        if not (isinstance(self.spec.service, DemoService) and isinstance(self.spec.vip, IPaddr2Vip)):
            return None
        url = f"http://{self.spec.vip.address}:{self.spec.service.port}/health"
        node = self.service_node(mon) or self.names[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.conns[node].run(f"curl -fsS --max-time 3 {url}", check=False)
            if result.ok:
                return result.stdout
            time.sleep(1)
        raise HacloudError(
            f"the service does not answer on {url}",
            "see `hacloud status` and the service's journal on the active node",
        )
