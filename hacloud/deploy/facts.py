"""A node's facts, read in one round trip: OS and package manager, the commands present, the
Pacemaker and DRBD versions, the checksums of the files hacloud writes, the cluster services,
the corosync log directories, the interfaces, and the limits the spec's service sets itself.

Contract: :func:`facts_script` is one POSIX shell script that only reads (it loads the DRBD
module so the version shows); :func:`parse_facts` is pure and reads what the script printed,
one ``@section`` marker per part; :func:`node_facts` decides what to render for. A fact the
node could not give stays empty (None, "", {}), never guessed.
"""

from __future__ import annotations

import math
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hacloud.render.files import COROSYNC_LOG_DIRS
from hacloud.spec.inventory import NodeFacts, NodeInfo, ServiceLimits

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection

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
    #: `uname -n` (DRBD knows a node by it), and whether cloud-init manages the host name
    hostname: str = ""
    cloud_init: bool = False


# systemd time spans as `systemctl show` prints them (format_timespan: "1min 30s", "1h",


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
echo @host; uname -n; [ -d /etc/cloud ] && echo cloud-init
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
_SECTION = re.compile(r"@(os|pm|cmds|pacemaker|drbd|host|sums|services|logdirs|ifaces|service|agent|end)")


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
        elif section == "host":
            if line.strip() == "cloud-init":
                facts.cloud_init = True
            else:
                facts.hostname = line.strip()
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
