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
- Every wait runs on the ``clock`` the engine is given (default the system clock).

The steps live by stage: :mod:`hacloud.deploy.facts` (what a node has),
:mod:`hacloud.deploy.install` (packages, provider checks, files), :mod:`hacloud.deploy.drbdsteps`
(metadata, initial sync, filesystems), :mod:`hacloud.deploy.cib` (the configuration diff); this
module composes them and owns the cluster services and the health wait.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hacloud.deploy.cib import CibSteps
from hacloud.deploy.drbdsteps import DrbdSteps
from hacloud.deploy.install import InstallSteps
from hacloud.deploy.remote import Connection
from hacloud.deploy.step import on_nodes
from hacloud.errors import HacloudError
from hacloud.poll import poll_until
from hacloud.provision.changes import Change
from hacloud.render.resources import DrbdResource, drbd_resources
from hacloud.spec.model import DemoService, IPaddr2Vip

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


@dataclass
class DrbdState:
    """One DRBD resource on one node: ``md`` and ``dstates`` ("UpToDate/UpToDate") by volume
    number; ``role``/``cstate`` only when the resource is up."""

    up: bool
    md: dict[int, bool]
    role: str = ""
    cstate: str = ""
    dstates: dict[int, str] = field(default_factory=dict)


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


class Engine(InstallSteps, DrbdSteps, CibSteps):
    """Converges two nodes to the bundle rendered for them (see the module doc). Construct with
    the spec, inventory, bundle, a connection per node and a progress callback; ``apply=False``
    only plans; ``force`` lets create-md go over a disk that holds a signature; ``needs`` are
    the provider's packages, commands and checks; ``clock`` drives every wait."""

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
                on_nodes(partial(self._run_on, command=command), sorted(set(to_start) | set(to_enable)))
        if self.apply:
            self._wait(
                lambda mon: sorted(online_nodes(mon)) == sorted(self.names),
                "both nodes online in the cluster",
                240,
            )

    def _run_on(self, name: str, *, command: str) -> None:
        self.conns[name].run(command, timeout=180)

    def _wait(self, ok: Callable[[ET.Element], bool], what: str, timeout: float) -> ET.Element:
        """The first cluster state (crm_mon from the first node that answers) that ``ok``
        accepts within ``timeout``; else an error naming the failed actions last recorded."""
        last: list[ET.Element | None] = [None]

        def probe() -> ET.Element | None:
            last[0] = self._mon()
            return last[0] if last[0] is not None and ok(last[0]) else None

        mon = poll_until(probe, timeout=timeout, interval=2, clock=self.clock)
        if mon is not None:
            return mon
        failures = [
            f"{f.get('op_key')} on {f.get('node')}: {f.get('exitreason') or f.get('exitstatus')}"
            for f in (last[0].iter("failure") if last[0] is not None else [])
        ]
        detail = "; ".join(failures) if failures else "no failed action recorded"
        raise HacloudError(
            f"timed out waiting for {what} ({detail})",
            "inspect the cluster with `hacloud status` and the node's /var/log/pacemaker/pacemaker.log; "
            "then run `hacloud up` again",
            code="HAC425",
        )

    def _mon(self) -> ET.Element | None:
        """crm_mon's XML from the first node that answers; None when none does."""
        for name in self.names:
            try:
                mon = crm_mon(self.conns[name])
            except HacloudError:
                mon = None
            if mon is not None:
                return mon
        return None

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
                code="HAC426",
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

        def answer() -> str | None:
            result = self.conns[node].run(f"curl -fsS --max-time 3 {url}", check=False)
            return result.stdout if result.ok else None

        body = poll_until(answer, timeout=timeout, clock=self.clock)
        if body is not None:
            return body
        raise HacloudError(
            f"the service does not answer on {url}",
            "see `hacloud status` and the service's journal on the active node",
            code="HAC427",
        )
