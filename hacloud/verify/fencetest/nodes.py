"""The cluster as a fence-test round reads it, over SSH to its nodes (:class:`NodeCluster`).

Contract: every read is one small method or function (the node-query layer replaces their
insides); nothing here changes the cluster except :meth:`NodeCluster.request_fence` and
:meth:`NodeCluster.crash_kernel`, the two faults injected through a node. The preflight's fence
device checks make only non-destructive status calls.
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from hacloud.deploy.query.drbd import READ_COMMAND, is_primary, pair_state, read_volumes
from hacloud.deploy.query.pacemaker import crm_mon
from hacloud.errors import HacloudError
from hacloud.poll import SYSTEM, Clock
from hacloud.verify.fencetest.ports import Pending, Preflight

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection, Result
    from hacloud.provision.provider import NodeProbe
    from hacloud.render.resources import DrbdResource

CRASH = (
    "echo 1 > /proc/sys/kernel/sysrq; sysctl -qw kernel.panic=0; "
    "nohup sh -c 'sleep 0.5; echo c > /proc/sysrq-trigger' >/dev/null 2>&1 &"
)


class Shell(Protocol):
    """A root shell on a node (:class:`hacloud.deploy.remote.Connection`)."""

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120.0, stdin: bytes | None = None
    ) -> Result: ...


def status_problems(st: dict[str, Any]) -> list[str]:
    """Why ``hacloud status``'s view of the cluster is not healthy enough to fail it on purpose:
    its reasons, the one judgement `status` and `up` make (hacloud.deploy.query.health.judge)."""
    return list(st["reasons"])


def read_status(spec_path: Path) -> dict[str, Any]:
    """The cluster's state as ``hacloud status --json`` reads it."""
    from hacloud.deploy.query.health import judge
    from hacloud.deploy.query.status import as_json, current_status
    from hacloud.deploy.session import workspace

    status = current_status(workspace(spec_path))
    return as_json(status, judge(status).texts())


def agent_options(cib_resources: str, device: str, target: str) -> tuple[str, dict[str, str]]:
    """(agent, stdin options for a status call) of a fence device as the live CIB defines it.
    Pacemaker's own ``pcmk_*`` parameters are left out; a host map names the agent's plug."""
    import xml.etree.ElementTree as ET

    prim = ET.fromstring(cib_resources).find(f".//primitive[@id='{device}']")
    if prim is None:
        raise HacloudError(f"fence device {device} is not in the live CIB", "run `hacloud up`", code="HAC522")
    params = {nv.get("name", ""): nv.get("value", "") for nv in prim.iterfind("./instance_attributes/nvpair")}
    options = {k: v for k, v in params.items() if not k.startswith("pcmk_")}
    for pair in params.get("pcmk_host_map", "").split(";"):
        host, _, plug = pair.partition(":")
        if host.strip() == target and plug:
            options["plug"] = plug.strip()
    options["action"] = "status"
    return prim.get("type", ""), options


def _device_problem(conn: Shell, name: str, device: str, target: str, resources: str) -> str | None:
    """From node ``name``: Pacemaker lists ``device`` for ``target``, and the agent itself, with
    the live parameters and credentials, reads the target's power state."""
    listed = conn.run(f"stonith_admin --list {shlex.quote(target)} 2>&1", check=False, timeout=60)
    if device not in listed.stdout:
        return (
            f"{name} would not fence {target} with {device} (stonith_admin --list: "
            f"{listed.stdout.strip()[-200:] or 'nothing'})"
        )
    agent, options = agent_options(resources, device, target)
    stdin = "".join(f"{k}={v}\n" for k, v in options.items()).encode()
    status = conn.run(f"{shlex.quote(agent)} 2>&1", check=False, timeout=120, stdin=stdin)
    if status.rc in (0, 2):  # fencing.py: 0 on, 2 off, anything else failed
        return None
    # the agent's own error lines, without Python's deprecation chatter
    lines = [ln for ln in status.stdout.splitlines() if "Warning" not in ln and "import" not in ln]
    detail = " ".join(" ".join(lines).split())[-300:]
    why = detail or f"exit {status.rc}"
    return f"fence device {device} (fences {target} from {name}) fails a status call: {why}"


def fence_device_checks(conns: dict[str, Shell], devices: list[tuple[str, str]]) -> list[str]:
    """For each device, from each node that would fence with it, :func:`_device_problem`.
    `stonith_admin --query` is not enough: it answers from the registration, without calling
    the device."""
    problems: list[str] = []
    first = next(iter(conns.values()))
    resources = first.run("cibadmin -Q -o resources", timeout=60).stdout
    for device, target in devices:
        for name, conn in conns.items():
            if name != target and (problem := _device_problem(conn, name, device, target, resources)):
                problems.append(problem)
    return problems


def probe_problems(conns: dict[str, Shell], probes: tuple[NodeProbe, ...]) -> list[str]:
    """Each failed probe on each node, as "node: what failed (output); fix: remedy"."""
    problems = []
    for probe in probes:
        for name, conn in conns.items():
            res = conn.run(probe.command, check=False, timeout=120)
            if res.rc != 0:
                detail = " / ".join((res.stdout + res.stderr).strip().splitlines()[-3:]) or f"rc {res.rc}"
                problems.append(f"{name}: {probe.what} failed ({detail}); fix: {probe.remedy}")
    return problems


def drbd_state(conn: Shell, resources: list[DrbdResource]) -> tuple[str, str]:
    """(link, disks) over every volume of ``resources`` on a node (see
    :func:`hacloud.deploy.query.drbd.pair_state`)."""
    return pair_state(read_volumes(cast("Connection", conn), resources))


def online(conn: Shell, node: str) -> bool:
    """Whether Pacemaker, asked on ``conn``'s node, counts ``node`` online."""
    view = crm_mon(cast("Connection", conn))  # a Connection, or a stand-in with its run()
    return view is not None and node in view.online_nodes()


class NodeCluster:
    """:class:`~hacloud.verify.fencetest.ports.Cluster` over root shells on both nodes."""

    def __init__(
        self,
        spec_path: Path,
        conns: dict[str, Shell],
        resources: list[DrbdResource],
        devices: list[tuple[str, str]],
        clock: Clock = SYSTEM,
        status: Any = read_status,
        probes: tuple[NodeProbe, ...] = (),
    ) -> None:
        self.spec_path, self.conns, self.resources, self.devices = spec_path, conns, resources, devices
        self.clock = clock
        self._status = status  # the spec path -> `hacloud status`'s dict
        self.probes = probes  # the provider's checks of what the fence agents may do

    def preflight(self) -> Preflight:
        """The cluster must be healthy, every fence device must answer a non-destructive
        status call for its target, made from the node that would fence with it, and every
        provider probe marked ``before_faults`` (e.g. a cloud permission, checked by a dry
        run) must pass on every node."""
        st = self._status(self.spec_path)
        problems = status_problems(st) + fence_device_checks(self.conns, self.devices)
        problems += probe_problems(self.conns, self.probes)
        active = st["service_node"] or ""
        standby = next((n["name"] for n in st["nodes"] if n["name"] != active), "")
        return Preflight(active, standby, problems)

    def healthy(self) -> bool:
        return bool(self._status(self.spec_path)["healthy"])

    def clock_offset(self, node: str) -> float:
        """The node's clock minus this machine's, from the midpoint of the shortest of three
        round trips (seconds)."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            before = self.clock.time()
            remote = float(self.conns[node].run("date +%s.%N", timeout=10).stdout.strip())
            after = self.clock.time()
            if best is None or after - before < best[0]:
                best = (after - before, remote - (before + after) / 2)
        assert best is not None
        return best[1]

    def journal(self, node: str, since: float) -> str:
        units = "-u corosync -u pacemaker"
        command = f"journalctl -o json --no-pager --since=@{int(since) - 2} {units} 2>/dev/null"
        return self.conns[node].run(command, check=False, timeout=120).stdout

    def is_primary(self, node: str, timeout: float = 3.0) -> bool:
        return is_primary(self.conns[node].run(READ_COMMAND, check=False, timeout=timeout).stdout)

    def online(self, asked: str, node: str) -> bool:
        return online(self.conns[asked], node)

    def drbd_state(self, node: str) -> tuple[str, str]:
        return drbd_state(self.conns[node], self.resources)

    def request_fence(self, survivor: str, victim: str, timeout: int) -> Pending:
        """``stonith_admin --fence`` on ``survivor``, running on in a thread (it returns once
        the fence is done, or at the cluster's own fencing ``timeout``)."""
        conn = self.conns[survivor]
        thread = threading.Thread(
            target=lambda: conn.run(
                f"stonith_admin --fence {shlex.quote(victim)} --timeout {timeout}",
                check=False,
                timeout=timeout + 30,
            ),
            daemon=True,
        )
        thread.start()
        return thread

    def crash_kernel(self, node: str) -> None:
        self.conns[node].run(CRASH, check=False, timeout=10)
