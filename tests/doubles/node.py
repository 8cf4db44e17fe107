"""A scripted node double: stands where :class:`hacloud.deploy.remote.Connection` stands, so the
deploy engine runs its real code against two "nodes" without root, guests, network or HA tools.

Two ways to answer a command, tried in this order (the script is the idea of pcs's
``pcs_test/tools/command_env`` call queue: an exact queue of expected external calls):

1. the **script**: ``node.expect(pattern, stdout=, stderr=, rc=)`` queues an answer; the next
   command that ``re.search``-matches the head of the queue consumes it (order is enforced:
   a later expectation is not looked at before the head is consumed);
2. the **model** of the node (:class:`NodeState`) and of the pair (:class:`Cluster`): files
   with their checksums and modes, disks with their signatures, DRBD metadata and resources,
   services, the CIB. Each command the engine runs has one handler (commands.py) that reads
   and changes the model as the real tool would, so the facts a second run reads are what the
   first run left.

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
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from hacloud.deploy.facts import REQUIRED
from hacloud.deploy.remote import Endpoint, RemoteError, Result
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
    #: `. /etc/os-release; echo "$ID ${ID_LIKE:-}"` and the package manager found
    os_line: str = "debian "
    package_manager: str = "apt-get"
    #: what the service probe prints after the service id: `systemctl show -p ...` Key=Value
    #: lines for a unit, the agent's meta-data for an OCF agent ("" when not installed)
    service_text: str = ""
    #: `uname -n` ("": the node's own name, as a host named for its node answers)
    hostname: str = ""
    cloud_init: bool = False


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
        from doubles.commands import HANDLERS  # the handlers import this module

        for pattern, handler in HANDLERS:
            m = pattern.search(command)
            if m:
                return handler(self, m)
        head = f" (the script's next expected command: /{self.script[0][0].pattern}/)" if self.script else ""
        raise AssertionError(f"{self.name}: unexpected command {command!r}{head}")

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
