"""The lab provider: two user-mode Linux guests, a private network, and a virtual BMC each.

Layout (``.hacloud/<cluster>/lab`` next to the spec)::

    id_ed25519[.pub]   admin key the guests accept (root)
    ../known_hosts     guests' host keys, recorded at first contact and then enforced
    <node>/            root.cow (copy-on-write root), data-<volume>.img, console.log,
                       guest.json, guest.pid, bmc.json, bmc.pid, bmc.log

Contracts: ``ensure_nodes`` is idempotent (running guests and BMCs are reused, existing disks
are never rewritten or shrunk); ``discover`` is read-only; ``power*`` go through the BMC over
IPMI, the same path fence_ipmilan takes; ``teardown`` leaves no process, tap or namespace.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from hacloud.errors import HacloudError
from hacloud.poll import SYSTEM, Clock, poll_until
from hacloud.provision.endpoint import Endpoint
from hacloud.provision.provider import BaseProvider, Capabilities, PowerChange, PowerState
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeFacts, NodeInfo
from hacloud.spec.model import IpmiFencing, IpmiTarget, LabProviderSpec, Spec
from hacloud.spec.secrets import check_private
from hacloud.spec.workspace import Workspace
from hacloud_lab import guest, image, kernel, net, power

SSH_TIMEOUT = 180.0
LINK_NETWORKS = (IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24"))


@dataclass(frozen=True)
class NodeStatus:
    name: str
    power: PowerState
    process: str  # "running" | "stopped"
    ssh_address: str
    links: tuple[str, ...]
    bmc: str


class LabProvider(BaseProvider):
    name = "lab"
    capabilities = Capabilities(
        create_nodes=True,
        power_control=True,
        faults=("fence", "power", "crash", "partition"),
        missing={
            "terraform": "the lab's guests are made by hacloud on this machine, never by Terraform",
            "account": "the lab has no cloud account: `up` checks this machine instead (root, tools)",
        },
    )
    tracking = "issue #3 (lab provider)"

    def default_device(self, spec: Spec, index: int) -> str | None:
        # ubd0 is the root disk; ubd1, ubd2, ... are the data disks, one per volume.
        return f"/dev/ubd{chr(ord('b') + index)}"

    # ------------------------------------------------------------ layout

    @staticmethod
    def lab_dir(ws: Workspace) -> Path:
        return ws.state_dir / "lab"

    @staticmethod
    def namespace(ws: Workspace) -> str:
        return net.namespace_name(ws.spec.cluster.name)

    def _targets(self, ws: Workspace) -> dict[str, IpmiTarget]:
        method = next((m for m in ws.spec.fencing if isinstance(m, IpmiFencing)), None)
        if method is None:
            raise HacloudError(
                "the lab fences through its virtual BMCs, but the spec has no fence_ipmilan",
                "add a fence_ipmilan method (see `hacloud init --provider lab`)",
                code="HAC620",
            )
        for name, target in method.nodes.items():
            try:
                address = IPv4Address(target.ip)
            except ValueError:
                raise HacloudError(
                    f"lab BMC address {target.ip!r} for {name} is not an IPv4 address",
                    "use an address from 192.0.2.0/24, e.g. 192.0.2.201",
                    code="HAC621",
                ) from None
            if address not in LINK_NETWORKS[0] or str(address).endswith(".254"):
                raise HacloudError(
                    f"lab BMC address {address} for {name} is outside 192.0.2.0/24",
                    "lab BMCs sit on the lab bridge: use e.g. 192.0.2.201 and .202",
                    code="HAC622",
                )
        return dict(method.nodes)

    def _password_file(self, ws: Workspace, target: IpmiTarget) -> Path:
        if target.password_file:
            return ws.resolve(target.password_file)
        raise HacloudError(
            "the lab creates its BMC passwords and needs password_file, not password_env",
            "set password_file: .hacloud/<cluster>/bmc-<node>.secret",
            code="HAC623",
        )

    def _links(self, spec: Spec, index: int) -> tuple[str, ...]:
        node = spec.nodes[index]
        return tuple(str(a) for a in node.links) or (str(node.address),)

    def _guest_config(
        self, ws: Workspace, index: int, base: Path, key: str, uml: kernel.Kernel
    ) -> guest.GuestConfig:
        spec = ws.spec
        node = spec.nodes[index]
        directory = self.lab_dir(ws) / node.name
        links = self._links(spec, index)
        hosts = ",".join(f"{n.name}:{self._links(spec, i)[0]}" for i, n in enumerate(spec.nodes))
        memory = spec.provider.options.memory_mib if isinstance(spec.provider, LabProviderSpec) else 1024
        return guest.GuestConfig(
            name=node.name,
            umid=f"{spec.cluster.name}-{node.name}",
            directory=str(directory),
            base_image=str(base),
            data_disks=tuple(str(directory / f"data-{v.name}.img") for v in spec.volumes),
            taps=tuple((net.tap_name(index, k), net.mac_address(index, k)) for k in range(len(links))),
            addresses=tuple(f"{a}/24" for a in links),
            hosts=hosts,
            admin_key=key,
            memory_mib=memory,
            kernel=uml.binary,
            network=uml.network,
            seccomp=uml.seccomp,
        )

    # ------------------------------------------------------------ ensure

    def check_environment(self) -> None:
        net.preflight()

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        net.preflight()
        for tool in ("ipmitool", "ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise HacloudError(
                    f"{tool} is missing", "run `apt-get install ipmitool openssh-client`", code="HAC624"
                )
        targets = self._targets(ws)
        lab = self.lab_dir(ws)
        lab.mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = [lab / n.name / "guest.json" for n in ws.spec.nodes]
        if all(p.exists() for p in existing):
            # Disks exist: keep the image (and kernel) they were made with, even if newer ones exist.
            old = guest.GuestConfig.load(existing[0])
            base = Path(old.base_image)
            if not base.exists() or not Path(old.kernel).exists():
                raise HacloudError(
                    f"the lab disks were made from {base} for kernel {old.kernel}, which is gone",
                    "run `hacloud down --purge` to start the lab from scratch",
                    code="HAC625",
                )
            uml = kernel.Kernel(old.kernel, "", "", old.network, "as recorded in guest.json", old.seccomp)
        else:
            uml = image.select_kernel(ws.progress)
            base = image.ensure_image(uml, ws.progress)
        key = self._ensure_key(lab)
        password_files = {name: self._password_file(ws, t) for name, t in targets.items()}
        for path in password_files.values():
            self._ensure_password(path)
        ns = self._ensure_network(ws, targets)
        for index, node in enumerate(ws.spec.nodes):
            config = self._guest_config(ws, index, base, key, uml)
            directory = Path(config.directory)
            directory.mkdir(parents=True, exist_ok=True)
            for vol, disk in zip(ws.spec.volumes, config.data_disks, strict=True):
                _ensure_disk(Path(disk), vol.size_gib)
            config.save(directory / "guest.json")
            target = targets[node.name]
            power.ensure_bmc(ns, directory, target, password_files[node.name])
            if guest.running_pgid(config) is None:
                # fenced off (stonith-action off, `fence-test --no-recover`) or powered off by hand
                ws.progress(f"{node.name}: powered off; powering it on through its BMC")
                self.power_on(ws, node.name)
        ws.progress("guests: waiting for SSH")
        with ThreadPoolExecutor(max_workers=2) as pool:
            facts = list(pool.map(lambda n: self._wait_ssh(ws, n.name), ws.spec.nodes))
        inventory = self._inventory(ws, facts)
        (ws.state_dir / "inventory.json").write_text(inventory.to_json(), encoding="utf-8")
        return inventory

    def _ensure_network(self, ws: Workspace, targets: dict[str, IpmiTarget]) -> str:
        """The lab's namespace with one bridge per corosync link (the BMCs on the first)."""
        ns = self.namespace(ws)
        link_count = len(self._links(ws.spec, 0))
        bmc_ips = tuple(IPv4Interface(f"{t.ip}/24") for t in targets.values())
        plans = [
            net.LinkPlan(
                f"br{k}",
                IPv4Interface(f"{LINK_NETWORKS[k].network_address + 254}/24"),
                bmc_ips if k == 0 else (),
            )
            for k in range(link_count)
        ]
        ws.progress(f"network: namespace {ns}, {link_count} link(s)")
        net.ensure_network(ns, plans, len(ws.spec.nodes))
        return ns

    @staticmethod
    def _ensure_key(lab: Path) -> str:
        key = lab / "id_ed25519"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hacloud-lab", "-f", str(key)],
                check=True,
                capture_output=True,
            )
        return key.with_suffix(".pub").read_text(encoding="utf-8").split()[1]

    @staticmethod
    def _ensure_password(path: Path) -> str:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(12) + "\n")
        check_private(
            path, "a lab BMC password", "the password exposed: delete the file and run `hacloud up`"
        )
        password = path.read_text(encoding="utf-8").strip()
        if not password:
            raise HacloudError(
                f"{path} is empty", "delete it; hacloud makes a new BMC password", code="HAC626"
            )
        return password

    def ssh_command(self, ws: Workspace) -> list[str]:
        lab = self.lab_dir(ws)
        return [
            "ip",
            "netns",
            "exec",
            self.namespace(ws),
            "ssh",
            "-i",
            str(lab / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={ws.state_dir / 'known_hosts'}",
            # first contact records the guest's key; a changed key later is refused
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
        ]

    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint:
        return Endpoint(
            node.name,
            node.ssh_address,
            22,
            "root",
            str(self.lab_dir(ws) / "id_ed25519"),
            None,
            self.namespace(ws),
        )

    def ssh(
        self, ws: Workspace, node: str, command: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        index = [n.name for n in ws.spec.nodes].index(node)
        address = self._links(ws.spec, index)[0]
        return subprocess.run(
            [*self.ssh_command(ws), f"root@{address}", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _wait_ssh(self, ws: Workspace, node: str, clock: Clock = SYSTEM) -> NodeFacts:
        """The guest's software facts, once it answers SSH (a booting guest is waited for)."""
        probe = "dpkg-query -W -f='${Version}' pacemaker; echo; modprobe drbd && head -1 /proc/drbd"

        def answered() -> subprocess.CompletedProcess[str] | None:
            try:
                proc = self.ssh(ws, node, probe, timeout=15)
            except subprocess.TimeoutExpired:
                return None
            return proc if proc.returncode == 0 else None

        proc = poll_until(answered, timeout=SSH_TIMEOUT, interval=1.0, clock=clock)
        if proc is None:
            raise HacloudError(
                f"{node} did not answer SSH within {SSH_TIMEOUT:.0f} s",
                f"see {self.lab_dir(ws) / node / 'console.log'}",
                code="HAC627",
            )
        lines = proc.stdout.splitlines()
        pacemaker = re.match(r"(\d+\.\d+\.\d+)", lines[0]) if lines else None
        drbd = re.search(r"version: (\d+)\.(\d+)", proc.stdout)
        drbd_gen = None if not drbd else ("9" if drbd.group(1) == "9" else f"{drbd.group(1)}.{drbd.group(2)}")
        ws.progress(
            f"{node}: SSH up, pacemaker {pacemaker.group(1) if pacemaker else '?'}, DRBD {drbd_gen or '?'}"
        )
        return NodeFacts(
            drbd=drbd_gen if drbd_gen in ("8.4", "9") else None,  # type: ignore[arg-type]
            pacemaker=pacemaker.group(1) if pacemaker else None,
            os_family="debian",
        )

    def _inventory(self, ws: Workspace, facts: list[NodeFacts] | None = None) -> Inventory:
        planned = self.planned_inventory(ws.spec)
        targets = self._targets(ws)
        nodes = []
        for i, node in enumerate(planned.nodes):
            nodes.append(
                NodeInfo(
                    name=node.name,
                    id=node.id,
                    ssh_address=node.ssh_address,
                    links=node.links,
                    replication_address=node.replication_address,
                    volumes=node.volumes,
                    bmc_address=targets[node.name].ip if node.name in targets else None,
                    facts=facts[i] if facts else NodeFacts(drbd="8.4", os_family="debian"),
                    extra={"namespace": self.namespace(ws)},
                )
            )
        return Inventory(
            1,
            ws.spec.cluster.name,
            self.name,
            (nodes[0], nodes[1]),
            NetworkInfo(extra={"namespace": self.namespace(ws)}),
        )

    # ------------------------------------------------------------ read-only

    def discover(self, ws: Workspace) -> Inventory | None:
        lab = self.lab_dir(ws)
        if not all((lab / n.name / "guest.json").exists() for n in ws.spec.nodes):
            return None
        return self._inventory(ws)

    def status(self, ws: Workspace) -> list[NodeStatus]:
        targets = self._targets(ws)
        out = []
        for i, node in enumerate(ws.spec.nodes):
            cfg_path = self.lab_dir(ws) / node.name / "guest.json"
            running = cfg_path.exists() and guest.running_pgid(guest.GuestConfig.load(cfg_path)) is not None
            power = self.power(ws, node.name) if net.namespace_exists(self.namespace(ws)) else "off"
            target = targets[node.name]
            out.append(
                NodeStatus(
                    node.name,
                    power,
                    "running" if running else "stopped",
                    self._links(ws.spec, i)[0],
                    self._links(ws.spec, i),
                    f"{target.ip}:{target.port}",
                )
            )
        return out

    # ------------------------------------------------------------ power, through the BMC

    def _ipmitool(self, ws: Workspace, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        target = self._targets(ws)[node]
        return power.ipmitool(self.namespace(ws), target, self._password_file(ws, target), *args)

    def power(self, ws: Workspace, node: str) -> PowerState:
        if not net.namespace_exists(self.namespace(ws)):
            return "off"
        proc = self._ipmitool(ws, node, "chassis", "power", "status")
        m = re.search(r"Chassis Power is (on|off)", proc.stdout)
        return "unknown" if m is None else "on" if m.group(1) == "on" else "off"

    def power_off(self, ws: Workspace, node: str) -> None:
        self._power(ws, node, "off")

    def power_on(self, ws: Workspace, node: str) -> None:
        self._power(ws, node, "on")

    def _power(self, ws: Workspace, node: str, state: str) -> None:
        proc = self._ipmitool(ws, node, "chassis", "power", state)
        if proc.returncode != 0:
            raise HacloudError(
                f"the BMC of {node} refused power {state}: {proc.stderr.strip()}",
                "run `hacloud up` to restart the lab's BMCs",
                code="HAC628",
            )

    def power_events(self, ws: Workspace, node: str, since: float) -> list[PowerChange]:
        """The BMC's own log: it is the guest's power supply, so its timestamps are when the
        plug was pulled or put back, whoever asked (fence_ipmilan or fence-test)."""
        return power.power_events(self.lab_dir(ws) / node / "bmc.log", since)

    def freeze(self, ws: Workspace, node: str) -> bool:
        """SIGSTOP the guest's whole process group: its kernel stops, its memory and disks stay,
        and the BMC still reports it on (a hung kernel, not a dead machine)."""
        cfg = guest.GuestConfig.load(self.lab_dir(ws) / node / "guest.json")
        pgid = guest.running_pgid(cfg)
        if pgid is None:
            raise HacloudError(
                f"{node} is not running", "power it on with `hacloud lab power NODE on`", code="HAC629"
            )
        os.killpg(pgid, signal.SIGSTOP)
        return True

    def partition(self, ws: Workspace, cut: bool) -> None:
        """Bridge port isolation on every link: the guests' taps cannot reach each other, but
        each still reaches the namespace (clients, BMCs), like a failed inter-node switch."""
        ns = self.namespace(ws)
        for k in range(len(self._links(ws.spec, 0))):
            for index in range(len(ws.spec.nodes)):
                net.set_isolated(ns, net.tap_name(index, k), cut)

    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(ws), *argv]

    def power_on_hint(self, ws: Workspace, node: str) -> str:
        return f"`hacloud lab power {node} on -f {ws.spec_path}`"

    def power_cycle_hint(self, ws: Workspace, node: str) -> str:
        return f"`hacloud lab power {node} off -f {ws.spec_path}`, then {self.power_on_hint(ws, node)}"

    def freeze_hint(self, node: str) -> str:
        return (
            f"{node} was frozen (SIGSTOP of its guest: the BMC still reports it on) unless the "
            "cluster has fenced it since"
        )

    # ------------------------------------------------------------ hooks

    def purge(self, ws: Workspace) -> None:
        """`down --purge`: the guest image cache too (shared by every lab on this machine)."""
        purge_images()

    def login_failed(self, ws: Workspace, error: HacloudError) -> HacloudError:
        """The guests are on this machine: the SSH error itself says what to fix."""
        return error

    # ------------------------------------------------------------ teardown

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        lab = self.lab_dir(ws)
        for node in ws.spec.nodes:
            directory = lab / node.name
            pid = power.bmc_pid(directory)
            if pid is not None:
                power.kill_group(pid)
            if (directory / "guest.json").exists():
                guest.kill(guest.GuestConfig.load(directory / "guest.json"))
        net.delete_network(self.namespace(ws))
        if delete_volumes and lab.exists():
            shutil.rmtree(lab)
            # New disks mean new host keys: forget the old ones with them.
            (ws.state_dir / "known_hosts").unlink(missing_ok=True)


def _ensure_disk(path: Path, size_gib: int) -> None:
    """Create a sparse data disk; an existing one is never rewritten or shrunk."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size_gib * 1024**3)
    finally:
        os.close(fd)


def purge_images() -> None:
    shutil.rmtree(image.data_dir() / "images", ignore_errors=True)
