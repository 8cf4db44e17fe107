"""A scripted node double: stands where :class:`hacloud.deploy.remote.Connection` stands, so the
deploy engine runs its real code against two "nodes" without root, guests, network or HA tools.

Two ways to answer a command, tried in this order (the idea of pcs's ``command_env`` call
queue, Fabric's ``MockRemote`` sessions and pyinfra's fact/command cases):

1. the **script**: ``node.expect(pattern, stdout=, stderr=, rc=)`` queues an answer; the next
   command that ``re.search``-matches the head of the queue consumes it (order is enforced:
   a later expectation is not looked at before the head is consumed);
2. the **model** of the node (:class:`NodeState`) and of the pair (:class:`Cluster`): files
   with their checksums and modes, disks with their signatures, DRBD metadata and resources,
   services, the CIB. Each command the engine runs has one handler that reads and changes the
   model as the real tool would, so the facts a second run reads are what the first run left.

A command neither answers raises ``AssertionError`` naming the node and the command (nothing
is answered by default); :meth:`Cluster.verify` fails on an expectation never consumed.

Where the answers come from (tests/fixtures/engine, made by capture.py with the real tools):
wipefs's TYPE lines and drbdmeta's get-gi/dump-md text on image files (disk-probes.json), the
CIB a new cluster starts from (cibadmin --empty: cib-fresh.xml), crm_mon's XML for a cluster
online without resources, running the test spec's resources, and with a failure left behind
(crm_simulate + crm_mon: mon-*.xml), and a crm_diff patch that touches the status section
(patch-status.xml). Output formats the engine parses but no tool here can produce without a
node (the facts script's sections, /proc/drbd's first line, `pacemakerd --version`, systemd
states) follow those tools' documented formats and are noted where they are made.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hacloud.deploy.facts import REQUIRED
from hacloud.deploy.remote import Endpoint, RemoteError, Result
from hacloud.render.files import LINKS_SCRIPT
from hacloud.render.resources import DrbdResource, drbd_resources
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "engine"
PROBES = json.loads((FIXTURES / "disk-probes.json").read_text())
#: what `drbdmeta` (and so `drbdadm dump-md`) prints when another holder has the disk open
#: exclusively: strerror(EBUSY) after the failed open (drbdmeta.c, open_backing_dev)
BUSY = "open(/dev/sdb) failed: Device or resource busy\n"
#: a generation identifier after `new-current-uuid --clear-bitmap`: a current UUID that is no
#: longer UUID_JUST_CREATED (4); the value itself is arbitrary
SYNCED_GI = "8A3C1F2E4B5D6A70:0000000000000000:0000000000000000:0000000000000000:1:1:0:0:0:0:0\n"
CURL_REFUSED = "curl: (7) Failed to connect to 192.0.2.100 port 8080 after 0 ms: Connection refused\n"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@dataclass
class File:
    content: bytes
    mode: int
    owner: str = "root:root"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Disk:
    """A backing disk: the signature types wipefs finds, in its order (a disk with DRBD's
    metadata at the end and a filesystem at the start lists both)."""

    signatures: list[str] = field(default_factory=list)
    block: bool = True
    partitions: int = 0
    #: wipefs cannot probe it: its error text (from the real wipefs on a missing path)
    unreadable: str = ""

    @classmethod
    def captured(cls, kind: str) -> Disk:
        """A disk as wipefs saw the image of that kind (blank, ext4, drbd9, drbd84, used)."""
        return cls(PROBES["wipefs"][kind].split())


@dataclass
class NodeState:
    files: dict[str, File] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    #: "res/vol" -> what `drbdadm get-gi` prints (metadata present)
    md: dict[str, str] = field(default_factory=dict)
    #: "res/vol" -> a disk state the model would not derive (e.g. "Inconsistent" on old metadata)
    dstate: dict[str, str] = field(default_factory=dict)
    up: set[str] = field(default_factory=set)
    services: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"corosync": ("disabled", "inactive"), "pacemaker": ("disabled", "inactive")}
    )
    commands: set[str] = field(default_factory=lambda: set(REQUIRED))
    #: how many more dump-md calls find a disk busy
    busy: int = 0


Handler = Callable[["ScriptedNode", re.Match[str]], Result]


class ScriptedNode:
    """One node: the engine's ``Connection`` (run, put, read, connect, close)."""

    def __init__(self, name: str, address: str, cluster: Cluster) -> None:
        self.endpoint = Endpoint(name, address)
        self.name = name
        self.cluster = cluster
        self.state = NodeState()
        self.script: deque[tuple[re.Pattern[str], Result]] = deque()
        self.log: list[str] = []

    def expect(self, pattern: str, stdout: str = "", stderr: str = "", rc: int = 0) -> None:
        self.script.append((re.compile(pattern), Result(rc, stdout, stderr)))

    # -- the Connection interface

    def connect(self) -> ScriptedNode:
        return self

    def close(self) -> None:
        pass

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120.0, stdin: bytes | None = None
    ) -> Result:
        self.log.append(command)
        self.cluster.commands.append((self.name, command))
        result = self._answer(command)
        if check and result.rc != 0:
            raise RemoteError(self.name, command, result.rc, result.stdout + result.stderr)
        return result

    def put(self, path: str, content: bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        self.log.append(f"put {path} {mode:04o}")
        self.cluster.commands.append((self.name, f"put {path}"))
        self.state.files[path] = File(content, mode, owner)

    def read(self, path: str) -> bytes | None:
        f = self.state.files.get(path)
        return f.content if f else None

    # -- answering

    def _answer(self, command: str) -> Result:
        if self.script and self.script[0][0].search(command):
            return self.script.popleft()[1]
        for pattern, handler in HANDLERS:
            m = pattern.search(command)
            if m:
                return handler(self, m)
        raise AssertionError(f"{self.name}: unexpected command {command!r}")

    @property
    def peer(self) -> ScriptedNode:
        return next(n for n in self.cluster.nodes.values() if n is not self)


class Cluster:
    """Two scripted nodes and what they share: DRBD replication, the CIB, crm_mon's view."""

    def __init__(self, spec: Spec, inventory: Inventory, *, disk: str = "blank") -> None:
        self.spec = spec
        self.resources: list[DrbdResource] = drbd_resources(spec)
        self.drbd = "8.4" if spec.targets.drbd == "8.4" else "9"
        self.nodes = {n.name: ScriptedNode(n.name, n.ssh_address, self) for n in inventory.nodes}
        for node in inventory.nodes:
            for disk_path in node.volumes.values():
                self.nodes[node.name].state.disks[disk_path] = Disk.captured(disk)
        self.disk_of = {
            (n.name, r.name, v.number): n.volumes[v.spec.name]
            for n in inventory.nodes
            for r in self.resources
            for v in r.volumes
        }
        self.cib = fixture("cib-fresh.xml")
        self.synced: set[str] = set()
        #: (node, command) in the order run, on both nodes
        self.commands: list[tuple[str, str]] = []
        #: the CIB events in order: "maintenance-mode=true", "patch", "maintenance-mode deleted"
        self.timeline: list[str] = []
        self.failures_recorded = False
        self.fail_patch = ""  # cibadmin --patch fails with this text
        self.patch_override = ""  # crm_diff writes this patch instead of the model's
        self.mon_override = ""  # crm_mon prints this instead of the model's
        self.service_answers = True
        #: the desired CIB the last crm_diff was given (what its patch leads to)
        self.pending = b""

    def conns(self) -> dict[str, ScriptedNode]:
        return dict(self.nodes)

    def verify(self) -> None:
        left = {n: [p.pattern for p, _ in node.script] for n, node in self.nodes.items() if node.script}
        assert not left, f"expected commands never run: {left}"

    def ran(self, pattern: str) -> list[tuple[str, str]]:
        """(node, command) for every command so far matching ``pattern``."""
        return [(n, c) for n, c in self.commands if re.search(pattern, c)]

    def running(self) -> bool:
        return all(n.state.services["pacemaker"][1] == "active" for n in self.nodes.values())

    def has_resources(self) -> bool:
        res = ET.fromstring(self.cib).find("./configuration/resources")
        return res is not None and len(res) > 0

    def configuration(self) -> ET.Element:
        cfg = ET.fromstring(self.cib).find("configuration")
        assert cfg is not None
        return cfg

    def set_option(self, name: str, value: str | None) -> None:
        """crm_attribute -t crm_config: set (or with None delete) a cib-bootstrap-options nvpair."""
        root = ET.fromstring(self.cib)
        props = root.find("./configuration/crm_config/cluster_property_set[@id='cib-bootstrap-options']")
        assert props is not None
        for nv in props.findall(f"nvpair[@name='{name}']"):
            props.remove(nv)
        if value is not None:
            ET.SubElement(props, "nvpair", id=f"cib-bootstrap-options-{name}", name=name, value=value)
        self.cib = ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------- handlers


def ok(stdout: str = "") -> Result:
    return Result(0, stdout, "")


def _facts(node: ScriptedNode, m: re.Match[str]) -> Result:
    """The facts script's output (hacloud.deploy.facts.facts_script) for the modelled node.
    Line formats: os-release ID, `command -v`, `pacemakerd --version` ("Pacemaker X.Y.Z"),
    /proc/drbd's first line ("version: 9.2.12 (api:2/proto:86-122)"), sha256sum ("HASH  PATH"),
    `systemctl is-enabled`/`is-active`."""
    script = m.string
    paths = shlex.split(re.search(r"for f in (.*?); do", script).group(1))  # type: ignore[union-attr]
    wanted = shlex.split(re.search(r"for c in (.*?); do command", script).group(1))  # type: ignore[union-attr]
    s = node.state
    drbd = (
        "version: 8.4.11 (api:1/proto:86-101)"
        if node.cluster.drbd == "8.4"
        else "version: 9.2.12 (api:2/proto:86-122)"
    )
    lines = ["@os", "debian ", "@pm", "apt-get", "@cmds", *[c for c in wanted if c in s.commands]]
    lines += ["@pacemaker", "Pacemaker 2.1.5" if "pacemakerd" in s.commands else "", "@drbd", drbd, "@sums"]
    lines += [f"{s.files[p].sha256}  {p}" if p in s.files else f"- {p}" for p in paths]
    lines += ["@services", *[f"{k} {e} {a}" for k, (e, a) in s.services.items()]]
    lines += ["@logdirs", "/var/log/cluster", "@ifaces", "default via 192.0.2.1 dev eth0 proto static"]
    lines += [f"2: eth0    inet {node.endpoint.address}/24 brd 192.0.2.255 scope global eth0", "@end"]
    return ok("\n".join(lines) + "\n")


def _layout(node: ScriptedNode, m: re.Match[str]) -> Result:
    minors = {r.name: [v.minor for v in r.volumes] for r in node.cluster.resources}
    return ok("".join(f"{r} {' '.join(map(str, minors.get(r, [])))}\n" for r in sorted(node.state.up)))


def _managed(node: ScriptedNode, m: re.Match[str]) -> Result:
    needle = f'drbd_resource" value="{m.group(1)}"'
    count = sum(needle in line for line in node.cluster.cib.splitlines())
    return Result(0 if count else 1, f"{count}\n", "")  # grep -c: exit 1 when nothing matched


def _role(node: ScriptedNode, m: re.Match[str]) -> Result:
    if m.group(1) not in node.state.up:
        return Result(10, "", "")  # drbdsetup: "No such resource" (stderr sent to /dev/null)
    return ok("Secondary/Secondary\n" if node.cluster.drbd == "8.4" else "Secondary\n")


def _connected(node: ScriptedNode, res: str) -> bool:
    return res in node.state.up and res in node.peer.state.up


def _cstate(node: ScriptedNode, m: re.Match[str]) -> Result:
    if m.group(1) not in node.state.up:
        return Result(10, "", "")
    waiting = "WFConnection" if node.cluster.drbd == "8.4" else "Connecting"
    return ok("Connected\n" if _connected(node, m.group(1)) else f"{waiting}\n")


def _disk_state(node: ScriptedNode, ref: str) -> str:
    if ref in node.state.dstate:
        return node.state.dstate[ref]
    return "UpToDate" if ref in node.cluster.synced else "Inconsistent"


def _dstate(node: ScriptedNode, m: re.Match[str]) -> Result:
    ref = m.group(1)
    res = ref.split("/")[0]
    if res not in node.state.up:
        return Result(10, "", "")
    peer = _disk_state(node.peer, ref) if _connected(node, res) else "DUnknown"
    return ok(f"{_disk_state(node, ref)}/{peer}\n")


def _dump_md(node: ScriptedNode, m: re.Match[str]) -> Result:
    # `drbdadm dump-md R/V 2>&1 >/dev/null`: only drbdmeta's stderr reaches stdout
    if node.state.busy:
        node.state.busy -= 1
        return Result(20, BUSY, "")
    if m.group(1) in node.state.md:
        return ok()
    blank = PROBES["dump-md-blank"]
    return Result(blank["rc"], blank["stderr"], "")


def _disk(node: ScriptedNode, path: str) -> Disk:
    disk = node.state.disks.get(path)
    assert disk is not None, f"{node.name}: the engine touched {path}, which is no disk of this node"
    return disk


def _test_b(node: ScriptedNode, m: re.Match[str]) -> Result:
    path = shlex.split(m.group(1))[0]
    return Result(0 if path in node.state.disks and node.state.disks[path].block else 1, "", "")


def _wipefs_probe(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    if disk.unreadable:
        return Result(1, "", disk.unreadable)
    return ok("".join(f"{t}\n" for t in disk.signatures))


def _lsblk(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    return ok(("disk\n" + "part\n" * disk.partitions) if disk.block else "")


def _wipe(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    disk.signatures, disk.partitions = [], 0
    return ok()


def _create_md(node: ScriptedNode, m: re.Match[str]) -> Result:
    ref = m.group(1)
    res, _, vol = ref.partition("/")
    disk = _disk(node, node.cluster.disk_of[(node.name, res, int(vol))])
    # drbdmeta refuses a disk that holds a filesystem where the metadata goes only
    # interactively; with --force (as the engine runs it) it writes. The metadata sits at the
    # end of the disk: what is at the start stays (the "used" capture lists both).
    disk.signatures = ["drbd", *[t for t in disk.signatures if t != "drbd"]]
    node.state.md[ref] = PROBES["get-gi"][node.cluster.drbd]
    node.state.dstate.pop(ref, None)
    return ok()


def _up(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.up.add(m.group(1))
    return ok()


def _get_gi(node: ScriptedNode, m: re.Match[str]) -> Result:
    gi = node.state.md.get(m.group(1))
    return ok(gi) if gi else Result(1, "", "No valid meta data found\n")


def _clear_bitmap(node: ScriptedNode, m: re.Match[str]) -> Result:
    ref = m.group(1) or m.group(2)
    node.cluster.synced.add(ref)
    node.cluster.timeline.append(f"clear-bitmap {ref}")
    for n in node.cluster.nodes.values():
        n.state.md[ref] = SYNCED_GI
        n.state.dstate.pop(ref, None)
    return ok()


def _mkfs(node: ScriptedNode, m: re.Match[str]) -> Result:
    """`drbdadm primary R && mkfs... /dev/drbdN ...`: the filesystem replicates to the peer's
    backing disk too (DRBD protocol C)."""
    for fstype, minor in re.findall(r"mkfs\.(\w+) .*?/dev/drbd(\d+)", m.string):
        res, vol = next(
            (r.name, v.number) for r in node.cluster.resources for v in r.volumes if v.minor == int(minor)
        )
        for n in node.cluster.nodes.values():
            disk = _disk(n, node.cluster.disk_of[(n.name, res, vol)])
            disk.signatures = [*disk.signatures, fstype]
    return ok()


def _systemctl_start(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.services[m.group(1)] = ("enabled", "active")
    return ok()


def _crm_mon(node: ScriptedNode, m: re.Match[str]) -> Result:
    c = node.cluster
    if c.mon_override:
        return ok(c.mon_override)
    if not c.running():
        return Result(102, "", "")  # CRM_EX_NOT_CONNECTED; the message went to /dev/null
    if not c.has_resources():
        return ok(fixture("mon-online.xml"))
    return ok(fixture("mon-failed.xml" if c.failures_recorded else "mon-healthy.xml"))


def _cibadmin_query(node: ScriptedNode, m: re.Match[str]) -> Result:
    if not node.cluster.running():
        return Result(102, "", "Could not connect to the CIB: Transport endpoint is not connected\n")
    return ok(node.cluster.cib)


def _crm_diff(node: ScriptedNode, m: re.Match[str]) -> Result:
    """The model's patch: one format-2 change per configuration section that differs (the real
    crm_diff lists element-level changes; the engine reads the patch only for /cib/status and
    hands it to cibadmin, whose model below applies the desired file crm_diff was given)."""
    old, new, out = m.group(1), m.group(2), m.group(3)
    c = node.cluster
    if c.patch_override:
        node.state.files[out] = File(c.patch_override.encode(), 0o644)
        return ok()
    a = ET.fromstring(node.state.files[old].content).find("configuration")
    b = ET.fromstring(node.state.files[new].content).find("configuration")
    assert a is not None and b is not None
    changed = [
        s.tag
        for s in b
        if ET.tostring(s) != ET.tostring(a.find(s.tag) if a.find(s.tag) is not None else ET.Element("x"))
    ]
    changes = "".join(f'  <change operation="modify" path="/cib/configuration/{t}"/>\n' for t in changed)
    node.state.files[out] = File(f'<diff format="2">\n{changes}</diff>\n'.encode(), 0o644)
    c.pending = node.state.files[new].content
    return ok()  # crm_diff exits 1 when there are differences; `test $? -le 1` makes that 0


def _cat(node: ScriptedNode, m: re.Match[str]) -> Result:
    f = node.state.files.get(m.group(1))
    return ok(f.content.decode()) if f else Result(1, "", f"cat: {m.group(1)}: No such file or directory\n")


def _maintenance(node: ScriptedNode, m: re.Match[str]) -> Result:
    c = node.cluster
    if m.group(3):
        c.set_option("maintenance-mode", None)
        c.timeline.append("maintenance-mode deleted")
    else:
        c.set_option("maintenance-mode", m.group(2))
        c.timeline.append(f"maintenance-mode={m.group(2)}")
    return ok()


def _patch(node: ScriptedNode, m: re.Match[str]) -> Result:
    c = node.cluster
    c.timeline.append("patch")
    if c.fail_patch:
        return Result(1, "", c.fail_patch)
    root = ET.fromstring(c.cib)
    maintenance = root.find(".//nvpair[@name='maintenance-mode']")
    desired = ET.fromstring(c.pending).find("configuration")
    assert desired is not None
    root.remove(root.find("configuration"))  # type: ignore[arg-type]
    root.insert(0, desired)
    c.cib = ET.tostring(root, encoding="unicode")
    if maintenance is not None:  # set after crm_diff read the CIB: the patch does not touch it
        c.set_option("maintenance-mode", maintenance.get("value"))
    return ok()


def _cleanup(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.cluster.failures_recorded = False
    return ok()


def _curl(node: ScriptedNode, m: re.Match[str]) -> Result:
    if node.cluster.service_answers and node.cluster.running() and node.cluster.has_resources():
        return ok('{"status": "ok"}\n')
    return Result(7, "", CURL_REFUSED)


def _rm(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.files.pop(shlex.split(m.group(1))[0], None)
    return ok()


def _retire_demo_unit(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.files.pop("/etc/systemd/system/hacloud-demo.service", None)
    return ok()


def _install(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.commands |= set(REQUIRED)
    return ok()


_REF = r"([\w.-]+/\d+)"
HANDLERS: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(p), h)
    for p, h in [
        (r"^\s*echo @os", _facts),
        (r"drbdadm sh-resources", _layout),
        (r"^cibadmin -Q -o resources .*grep -c 'drbd_resource\" value=\"([\w.-]+)\"'", _managed),
        (r"^drbdadm role ([\w.-]+) 2>/dev/null$", _role),
        (r"^drbdadm cstate ([\w.-]+)$", _cstate),
        (rf"^drbdadm dstate {_REF}$", _dstate),
        (rf"^drbdadm dump-md {_REF} 2>&1 >/dev/null$", _dump_md),
        (r"^test -b (\S+)$", _test_b),
        (r"^wipefs --no-act --noheadings --output TYPE (\S+)$", _wipefs_probe),
        (r"^if test -b (\S+); then lsblk -nro TYPE \S+; fi$", _lsblk),
        (r"^wipefs -a (\S+)$", _wipe),
        (rf"^drbdadm -- --force create-md {_REF}$", _create_md),
        (r"^drbdadm up ([\w.-]+)$", _up),
        (r"^drbdadm adjust ([\w.-]+)$", lambda n, m: ok()),
        (rf"^drbdadm get-gi {_REF}$", _get_gi),
        # DRBD 8.4's drbdadm takes the option after `--`; DRBD 9's after the command
        (
            rf"^(?:drbdadm -- --clear-bitmap new-current-uuid {_REF}"
            rf"|drbdadm new-current-uuid --clear-bitmap {_REF})$",
            _clear_bitmap,
        ),
        (r"^drbdadm primary [\w.-]+ && mkfs", _mkfs),
        (r"^mkdir -p \S", lambda n, m: ok()),
        (r"^systemctl enable (\w+) && systemctl start \w+$", _systemctl_start),
        (r"^systemctl daemon-reload$|^sysctl --system >/dev/null$|^corosync-cfgtool -R$", lambda n, m: ok()),
        (rf"^{re.escape(LINKS_SCRIPT)}$", lambda n, m: ok()),
        (r"^crm_mon -1 --output-as=xml 2>/dev/null$", _crm_mon),
        (r"^cibadmin -Q$", _cibadmin_query),
        (r"^crm_diff --no-version -o (\S+) -n (\S+) > (\S+); test \$\? -le 1$", _crm_diff),
        (r"^cat (\S+)$", _cat),
        (r"^crm_attribute -t crm_config -n maintenance-mode (?:(-v) (\w+)|(-D))$", _maintenance),
        (r"^cibadmin --patch --xml-file \S+$", _patch),
        (r"^crm_resource --cleanup >/dev/null$", _cleanup),
        (r"^curl -fsS --max-time 3 \S+$", _curl),
        (r"^rm -f -- (\S+)$", _rm),
        (r"^systemctl stop hacloud-demo", _retire_demo_unit),
        (r"^apt-get update -q$|^DEBIAN_FRONTEND=noninteractive apt-get install ", _install),
    ]
]
