"""``hacloud fence-test``: prove that the pair fails over, with numbers a client would see.

One round: preflight (refuse an unhealthy cluster) -> a client writes sequenced records
through the VIP -> a fault is injected behind the cluster's back (or a fence is requested)
-> wait until the client's writes are acknowledged again -> confirm through the provider that
the fenced node really is off -> check every acknowledged record is in the store, unchanged,
once -> read where the time went from the survivor's journal -> power the node back, wait for
it to rejoin and DRBD to resync -> healthy again.

Contract: no fault is injected unless preflight passes; a partition is always healed, and the
client always stopped, whatever happens; nothing here prints (progress goes to ``progress``).
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hacloud.deploy.remote import Connection
from hacloud.errors import HacloudError, Interrupted, InterruptedWork, UsageError
from hacloud.provision.dropin import provider_for
from hacloud.provision.provider import Provider
from hacloud.render.resources import DrbdResource, drbd_resources
from hacloud.spec.model import DemoService, Spec
from hacloud.spec.workspace import Workspace
from hacloud.verify.fencetest.analysis import Attempt, availability, check_data, load_attempts, summary
from hacloud.verify.fencetest.timeline import METHODS, floor, parse_journal, stage_patterns, stages

Progress = Callable[[str], None]
ROLE_PROBE = (
    "if grep -q 'ro:' /proc/drbd 2>/dev/null; then grep -o 'ro:[A-Za-z]*' /proc/drbd; "
    "else drbdadm role all 2>/dev/null; fi"
)


@dataclass(frozen=True)
class Options:
    method: str = "power"
    node: str | None = None
    rounds: int = 1
    recover: bool = True
    rate: float = 20.0  # client writes per second
    request_timeout: float = 1.0
    warmup: float = 3.0
    settle: float = 3.0
    takeover_timeout: float = 180.0
    recover_timeout: float = 300.0


@dataclass
class RoundResult:
    method: str
    node: str  # the node that was fenced (for partition: the side that lost)
    survivor: str
    started: str
    rto_seconds: float | None = None
    outage_seconds: float | None = None
    floor_seconds: float | None = None
    floor_parts: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    acknowledged: int = 0
    lost: int = 0
    duplicates: int = 0
    corrupt: int = 0
    committed_unacknowledged: int = 0
    failed_writes: int = 0
    serving: list[str] = field(default_factory=list)
    single_primary: bool = False
    max_primaries: int = 0
    fenced_confirmed_off: bool = False
    power_off_at: float | None = None  # seconds after the fault, from the provider's own record
    recovered: bool | None = None  # None: --no-recover
    rejoin_seconds: float | None = None
    resync_seconds: float | None = None
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    #: the profile in force for this round (with the nodes' OS variant, e.g. ``azure (rhel)``)
    profile: str = ""
    #: the timers in force for this round (see TIMER_KEYS)
    timers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the profile values a round's outcome depends on, recorded with it
TIMER_KEYS = (
    "corosync.token",
    "corosync.consensus",
    "pacemaker.priority_fencing_delay",
    "fencing.pcmk_delay_max",
    "fencing.pcmk_delay_base",
    "fencing.power_wait",
    "drbd.timeout",
    "drbd.ping_timeout",
)


def timers_of(profile: Any) -> dict[str, float]:
    """The values of TIMER_KEYS in ``profile`` (the effective one: variant and overrides)."""
    return {key: profile.num(key) for key in TIMER_KEYS}


# ---------------------------------------------------------------- validation


def validate(spec: Spec, provider: Provider, options: Options) -> None:
    """Everything that can be refused before touching the cluster."""
    if options.method not in METHODS:
        raise UsageError(f"unknown method {options.method!r}", f"use one of: {', '.join(METHODS)}")
    names = [n.name for n in spec.nodes]
    if options.node is not None and options.node not in names:
        raise UsageError(
            f"--node {options.node!r} is not a node of this cluster", f"use one of: {', '.join(names)}"
        )
    if options.method == "partition" and options.node is not None:
        raise UsageError(
            "--node does not apply to partition: both sides are cut, the cluster picks the survivor",
            "drop --node",
        )
    if options.rounds < 1:
        raise UsageError("--rounds must be at least 1", "pass --rounds 1 or more")
    if not isinstance(spec.service, DemoService):
        raise UsageError(
            "fence-test measures RTO and RPO through hacloud's demo record store, and this cluster runs "
            f"a {spec.service.kind} service",
            "run fence-test on a pair with `service: {kind: demo}` (a staging copy of the cluster)",
        )
    if vip_address(spec) is None:
        raise UsageError("fence-test needs the VIP's address to write through", "set vip.address")
    missing = provider.capabilities.missing
    need = {"power": "power_control", "crash": "power_control", "partition": "partition"}.get(options.method)
    if need == "power_control" and not provider.capabilities.power_control:
        raise UsageError(
            f"the {provider.name} provider cannot power nodes off behind the cluster's back"
            + (f" ({missing['power_control']})" if "power_control" in missing else ""),
            "use --method fence, which fences through the cluster",
        )
    if need == "partition" and "partition" not in provider.capabilities.faults:
        raise UsageError(
            f"the {provider.name} provider cannot cut the network between the nodes"
            + (f" ({missing['partition']})" if "partition" in missing else ""),
            "use --method power, crash or fence",
        )


def group_members(cib: str) -> list[str]:
    """The service group's primitives in start order, from the rendered CIB."""
    import xml.etree.ElementTree as ET

    from hacloud.render.resources import GROUP_ID

    group = ET.fromstring(cib).find(f".//group[@id='{GROUP_ID}']")
    return [p.get("id", "") for p in (group if group is not None else []) if p.tag == "primitive"]


def vip_address(spec: Spec) -> str | None:
    value = getattr(spec.vip, "address", None) or getattr(spec.vip, "elastic_ip", None)
    return str(value) if value else None


# ---------------------------------------------------------------- the client


class Client:
    """The writer process, run where the provider says a client sits."""

    def __init__(
        self, ws: Workspace, provider: Provider, url: str, directory: Path, options: Options
    ) -> None:
        self.ws, self.provider, self.url = ws, provider, url
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{self.run_id}.jsonl"
        self.stop_file = directory / f"{self.run_id}.stop"
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    def _python(self, *args: str) -> list[str]:
        return self.provider.client_command(
            self.ws, [sys.executable, "-m", "hacloud.verify.fencetest.client", *args]
        )

    def health(self) -> dict[str, Any]:
        cmd = self._python("health", "--url", self.url)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise HacloudError(
                f"the demo service does not answer on {self.url}: {proc.stderr.strip()[-300:]}",
                "see `hacloud status`; the VIP must be reachable from this machine",
            )
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def start(self) -> None:
        cmd = self._python(
            "write", "--url", self.url, "--run", self.run_id, "--out", str(self.log),
            "--rate", str(self.options.rate), "--timeout", str(self.options.request_timeout),
            "--stop-file", str(self.stop_file),
            "--max-seconds", str(self.options.takeover_timeout + 120),
        )  # fmt: skip
        self.log.touch()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def attempts(self) -> list[Attempt]:
        return load_attempts(self.log)

    def stop(self) -> None:
        self.stop_file.touch()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=self.options.request_timeout + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stop_file.unlink(missing_ok=True)

    def digest(self, after: int) -> list[list[Any]]:
        cmd = self._python("digest", "--url", self.url, "--after", str(after), "--timeout", "120")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise HacloudError(
                f"could not read the records back through {self.url}: {proc.stderr.strip()[-300:]}",
                "see `hacloud status`",
            )
        records: list[list[Any]] = json.loads(proc.stdout)["records"]
        return records


# ---------------------------------------------------------------- sampling DRBD roles


def is_primary(probe_output: str) -> bool:
    """The local role from ROLE_PROBE's output ("ro:Primary/Secondary" or "Primary/...")."""
    return probe_output.strip().removeprefix("ro:").split("/")[0].startswith("Primary")


class RoleSampler(threading.Thread):
    """Counts DRBD Primaries across the nodes about once a second (split brain shows as 2)."""

    def __init__(self, conns: dict[str, Connection]) -> None:
        super().__init__(daemon=True)
        self.conns = dict(conns)
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, dict[str, bool]]] = []
        self.unreachable: set[str] = set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            roles: dict[str, bool] = {}
            for name, conn in self.conns.items():
                if name in self.unreachable:
                    continue
                try:
                    out = conn.run(ROLE_PROBE, check=False, timeout=3).stdout
                except Exception:  # paramiko raises many kinds once a node dies
                    self.unreachable.add(name)  # dead, frozen or fenced: it cannot serve either
                    continue
                roles[name] = is_primary(out)
            self.samples.append((time.time(), roles))
            self.stop_event.wait(1.0)

    def max_primaries(self) -> int:
        return max((sum(r.values()) for _, r in self.samples), default=0)


# ---------------------------------------------------------------- helpers on the nodes


def clock_offset(conn: Connection) -> float:
    """The node's clock minus this machine's, from the midpoint of a round trip (seconds)."""
    best: tuple[float, float] | None = None
    for _ in range(3):
        before = time.time()
        remote = float(conn.run("date +%s.%N", timeout=10).stdout.strip())
        after = time.time()
        rtt = after - before
        if best is None or rtt < best[0]:
            best = (rtt, remote - (before + after) / 2)
    assert best is not None
    return best[1]


def journal(conn: Connection, since: float) -> str:
    return conn.run(
        f"journalctl -o json --no-pager --since=@{int(since) - 2} -u corosync -u pacemaker 2>/dev/null",
        check=False,
        timeout=120,
    ).stdout


def drbd_state(conn: Connection, resources: list[DrbdResource]) -> tuple[str, str]:
    """(connection state, disk states) over every volume of ``resources`` on a node: the one
    value all share (``Connected``, ``UpToDate/UpToDate``), else the first that differs (the
    one still syncing or down); '' when DRBD reports nothing."""
    from hacloud.deploy.engine import drbd_status_command, parse_drbd_status

    st = parse_drbd_status(conn.run(drbd_status_command(resources), check=False, timeout=20).stdout)
    conns = [r["connection"] or "" for r in st["resources"]]
    disks = [
        f"{v['disk']}/{v['peer_disk']}" if v["disk"] else "" for r in st["resources"] for v in r["volumes"]
    ]
    cstate = next((c for c in conns if c != "Connected"), "Connected") if conns else ""
    dstate = next((d for d in disks if d != "UpToDate/UpToDate"), "UpToDate/UpToDate") if disks else ""
    return cstate, dstate


# ---------------------------------------------------------------- preflight


@dataclass(frozen=True)
class Preflight:
    active: str
    standby: str
    problems: list[str]


def preflight(spec_path: Path, conns: dict[str, Connection], devices: list[tuple[str, str]]) -> Preflight:
    """The cluster must be healthy, and every fence device must answer a non-destructive status
    call for its target, made from the node that would fence with it."""
    from hacloud.ops.commands import cluster_status

    st = cluster_status(spec_path)
    problems = []
    for n in st["nodes"]:
        if not n["online"]:
            problems.append(f"{n['name']} is not online in the cluster")
        if n["drbd_disk"] != "UpToDate" or n["drbd_connection"] != "Connected":
            problems.append(
                f"{n['name']}: DRBD is {n['drbd_disk'] or '?'}/{n['drbd_connection'] or '?'}, "
                "not UpToDate/Connected"
            )
    if not st["quorum"]:
        problems.append("the cluster has no quorum")
    if not st["fencing_enabled"]:
        problems.append("fencing is disabled")
    for dev in st["fencing"]:
        if dev["state"] != "Started":
            problems.append(f"fence device {dev['id']} is {dev['state']}")
    problems += [f"failed action: {f}" for f in st["failed_actions"]]
    if st["service_node"] is None:
        problems.append("the service is not running")
    problems += _fence_device_status(conns, devices)
    active = st["service_node"] or ""
    standby = next((n["name"] for n in st["nodes"] if n["name"] != active), "")
    return Preflight(active, standby, problems)


def agent_options(cib_resources: str, device: str, target: str) -> tuple[str, dict[str, str]]:
    """(agent, stdin options for a status call) of a fence device as the live CIB defines it.
    Pacemaker's own ``pcmk_*`` parameters are left out; a host map names the agent's plug."""
    import xml.etree.ElementTree as ET

    prim = ET.fromstring(cib_resources).find(f".//primitive[@id='{device}']")
    if prim is None:
        raise HacloudError(f"fence device {device} is not in the live CIB", "run `hacloud up`")
    params = {nv.get("name", ""): nv.get("value", "") for nv in prim.iterfind("./instance_attributes/nvpair")}
    options = {k: v for k, v in params.items() if not k.startswith("pcmk_")}
    for pair in params.get("pcmk_host_map", "").split(";"):
        host, _, plug = pair.partition(":")
        if host.strip() == target and plug:
            options["plug"] = plug.strip()
    options["action"] = "status"
    return prim.get("type", ""), options


def _fence_device_status(conns: dict[str, Connection], devices: list[tuple[str, str]]) -> list[str]:
    """For each device, from each node that would fence with it: Pacemaker lists it for the
    target, and the agent itself, with the live parameters and credentials, reaches the device
    and reads the target's power state (a status call changes nothing). `stonith_admin
    --query` is not enough: it answers from the registration, without calling the device."""
    problems: list[str] = []
    first = next(iter(conns.values()))
    resources = first.run("cibadmin -Q -o resources", timeout=60).stdout
    for device, target in devices:
        agent, options = agent_options(resources, device, target)
        stdin = "".join(f"{k}={v}\n" for k, v in options.items()).encode()
        for name, conn in conns.items():
            if name == target:
                continue
            listed = conn.run(f"stonith_admin --list {shlex.quote(target)} 2>&1", check=False, timeout=60)
            if device not in listed.stdout:
                problems.append(
                    f"{name} would not fence {target} with {device} (stonith_admin --list: "
                    f"{listed.stdout.strip()[-200:] or 'nothing'})"
                )
                continue
            status = conn.run(f"{shlex.quote(agent)} 2>&1", check=False, timeout=120, stdin=stdin)
            if status.rc not in (0, 2):  # fencing.py: 0 on, 2 off, anything else failed
                # the agent's own error lines, without Python's deprecation chatter
                lines = [
                    ln for ln in status.stdout.splitlines() if "Warning" not in ln and "import" not in ln
                ]
                detail = " ".join(" ".join(lines).split())[-300:]
                problems.append(
                    f"fence device {device} (fences {target} from {name}) fails a status call: "
                    f"{detail or f'exit {status.rc}'}"
                )
    return problems


# ---------------------------------------------------------------- one round


def run_round(ws: Workspace, provider: Provider, options: Options, progress: Progress) -> RoundResult:
    from hacloud.deploy.session import open_session
    from hacloud.render import effective_profile
    from hacloud.spec.profiles import load_profile

    spec = ws.spec
    inventory = provider.discover(ws)
    if inventory is None:
        raise HacloudError("the cluster's nodes do not exist", "run `hacloud up` first")
    session = open_session(ws, inventory)
    profile = effective_profile(spec, load_profile(spec.profile_name), session.inventory)
    # the demo's records live on the first volume: its DRBD resource and filesystem are the
    # ones the failover stages are timed on; recovery waits for every resource
    resources = drbd_resources(spec)
    res = spec.volumes[0].drbd_resource
    first_fs = f"fs_{spec.volumes[0].name}"
    #: the fault is in place (set once injected, cleared once recovered): an interrupt must say so
    injected: list[str] = []
    try:
        devices = [(d.primitive.id, d.target) for d in session.bundle.fence_devices]
        progress("preflight: cluster health, DRBD, and a status call of every fence device")
        pre = preflight(ws.spec_path, session.conns, devices)
        if pre.problems:
            raise HacloudError(
                "fence-test refused: the cluster is not healthy enough to inject a fault:\n  - "
                + "\n  - ".join(pre.problems),
                "fix these (fence device: check the BMC address, user and password the spec names, then "
                "`hacloud up`; failed actions: `crm_resource --cleanup`), then run fence-test again",
            )
        victim = options.node or pre.active
        survivor = next(n for n in session.conns if n != victim)
        for name in session.conns:
            # fails now, before any fault, when the provider has no power switch for a node
            if provider.power(ws, name) != "on":
                raise HacloudError(
                    f"the provider does not report {name} powered on; fence-test could not confirm a fence",
                    "check the node's BMC (or cloud API) access from this machine",
                )
        if options.method == "partition":
            victim, survivor = pre.standby, pre.active  # expected; the cluster decides below
        offsets = {name: clock_offset(conn) for name, conn in session.conns.items()}
        url = f"http://{vip_address(spec)}:{spec.service.port}"  # type: ignore[union-attr]
        client = Client(ws, provider, url, ws.state_dir / "fence-test", options)
        baseline = int(client.health().get("last_id", 0))
        result = RoundResult(
            options.method, victim, survivor, datetime.now(UTC).isoformat(timespec="seconds")
        )
        # the timers this round ran with: the nodes' OS variant and the spec's overrides applied
        result.profile, result.timers = profile.label, timers_of(profile)
        sampler = RoleSampler(session.conns)
        client.start()
        try:
            _warm_up(client, options, pre.active)
            sampler.start()
            where = "the links between the nodes" if options.method == "partition" else victim
            progress(f"{options.method}: injecting the fault on {where}")
            t0 = time.time()
            injected.append(victim)
            fence_thread = _inject(ws, provider, session.conns, options.method, victim, survivor, profile)
            try:
                _wait_answering(client, t0, options, progress)
            except HacloudError as exc:
                # Still a result: record it, confirm the fence, recover, and report the failure.
                result.problems.append(exc.message)
            if options.method == "partition":
                victim, survivor = _partition_loser(ws, provider, session.conns)
                result.node, result.survivor = victim, survivor
            result.fenced_confirmed_off, result.power_off_at = _confirm_off(ws, provider, victim, t0)
            time.sleep(options.settle)
        finally:
            client.stop()
            sampler.stop_event.set()
            if options.method == "partition":
                provider.partition(ws, False)
        sampler.join(timeout=10)
        if fence_thread is not None:
            fence_thread.join(timeout=5)
        attempts = client.attempts()
        avail = availability(attempts, t0)
        data = check_data(attempts, client.digest(baseline), client.run_id)
        result.rto_seconds, result.outage_seconds = avail.rto_seconds, avail.outage_seconds
        result.failed_writes, result.serving = avail.failed_writes, list(avail.serving)
        result.acknowledged, result.lost, result.duplicates = (
            data.acknowledged,
            len(data.lost),
            data.duplicates,
        )
        result.corrupt, result.committed_unacknowledged = len(data.corrupt), data.committed_unacknowledged
        result.problems += list(data.notes)
        result.max_primaries = sampler.max_primaries()
        fl = floor(options.method, profile, victim_was_active=victim == pre.active)
        result.floor_seconds, result.floor_parts = fl.total, fl.parts
        survivor_conn = session.conns[survivor]
        events = parse_journal(journal(survivor_conn, t0), offsets[survivor])
        group = group_members(session.bundle.cib)
        service_id = next(r for r in group if r.startswith("svc_"))
        vips = [r for r in group if r.startswith("vip_")]
        result.stages = stages(
            events, stage_patterns(victim, survivor, f"drbd_{res}", first_fs, service_id, vips), t0
        )
        if avail.rto_seconds is not None:
            result.stages["answering"] = avail.rto_seconds
        if result.power_off_at is not None:
            result.stages.setdefault("power_off", result.power_off_at)
        final_primary = _primary_count(session.conns, survivor)
        result.single_primary = result.max_primaries <= 1 and final_primary == 1 and not avail.interleaved
        if avail.interleaved:
            result.problems.append(f"writes were acknowledged by {' and '.join(avail.serving)} alternately")
        if options.recover:
            result.recovered, result.rejoin_seconds, result.resync_seconds = _recover(
                ws, provider, session.conns[survivor], victim, resources, options, progress
            )
            if result.recovered:
                injected.clear()
        _judge(result, avail.rto_seconds is not None, options)
        return result
    except Interrupted:
        if not injected:
            raise  # nothing was done to the cluster yet
        raise interrupted_after_fault(ws, options.method, injected[-1]) from None
    finally:
        session.close()


def interrupted_after_fault(ws: Workspace, method: str, victim: str) -> InterruptedWork:
    """What Ctrl-C after the fault leaves behind, and how to bring the node back. The links of
    a partition are healed on the way out (``run_round``'s ``finally``) before this is shown."""
    lab = ws.spec.provider.kind == "lab"
    power_on = (
        f"`hacloud lab power {victim} on -f {ws.spec_path}`"
        if lab
        else f"the provider's console or CLI (power {victim} on)"
    )
    state = {
        "power": f"{victim} was powered off by the test and stays off",
        "fence": f"the cluster was asked to fence {victim}; it is off or being powered off",
        "partition": "the links between the nodes were cut and have been restored; the cluster may "
        f"have fenced one node ({victim} was expected to lose), which then stays off",
    }.get(method, "")
    if method == "crash":
        state = (
            f"{victim} was frozen (SIGSTOP of its guest: the BMC still reports it on) unless the "
            "cluster has fenced it since"
            if lab
            else f"{victim}'s kernel was crashed (sysrq, no reboot): it hangs until power-cycled"
        )
        cycle = (
            f"`hacloud lab power {victim} off -f {ws.spec_path}`, then {power_on}"
            if lab
            else f"power-cycle {victim} through the provider's console or CLI"
        )
        remedy = f"bring it back with {cycle}"
    else:
        remedy = f"if it is off, power it on with {power_on}"
    return InterruptedWork(
        f"fence-test interrupted after the {method} fault: {state}; the round was not recorded",
        f"{remedy}; it rejoins and DRBD resyncs by itself: wait until `hacloud status -f "
        f"{ws.spec_path}` reports healthy before anything else",
    )


def _warm_up(client: Client, options: Options, active: str) -> None:
    """Steady writes acknowledged by the active node before any fault, or refuse."""
    deadline = time.monotonic() + options.warmup + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        acks = [a for a in client.attempts() if a.ok]
        if len(acks) >= 10 and acks[-1].done - acks[0].done >= options.warmup:
            if any(a.node != active for a in acks):
                raise HacloudError(
                    f"writes through the VIP were acknowledged by {sorted({a.node or '?' for a in acks})}, "
                    f"not only by the active node {active}",
                    "check that the VIP is not configured on both nodes (`hacloud status`)",
                )
            return
    tried = client.attempts()
    last = next((a.error for a in reversed(tried) if a.error), "no answer")
    raise HacloudError(
        f"the client could not write steadily through the VIP before the fault ({len(tried)} tries, "
        f"last error: {last})",
        "check the service with `hacloud status`; nothing was injected",
    )


def _inject(
    ws: Workspace,
    provider: Provider,
    conns: dict[str, Connection],
    method: str,
    victim: str,
    survivor: str,
    profile: Any,
) -> threading.Thread | None:
    if method == "power":
        provider.power_off(ws, victim)
        return None
    if method == "crash":
        if not provider.freeze(ws, victim):
            # A kernel crash that leaves the machine on (no reboot on panic): it stops answering.
            conns[victim].run(
                "echo 1 > /proc/sys/kernel/sysrq; sysctl -qw kernel.panic=0; "
                "nohup sh -c 'sleep 0.5; echo c > /proc/sysrq-trigger' >/dev/null 2>&1 &",
                check=False,
                timeout=10,
            )
        return None
    if method == "partition":
        provider.partition(ws, True)
        return None
    # fence: ask the cluster itself, from the survivor, as an administrator would
    from hacloud.render.cib import stonith_timeout

    timeout = stonith_timeout(ws.spec, profile)  # the cluster's (SBD-only: the SBD timeout)
    thread = threading.Thread(
        target=lambda: conns[survivor].run(
            f"stonith_admin --fence {shlex.quote(victim)} --timeout {timeout}",
            check=False,
            timeout=timeout + 30,
        ),
        daemon=True,
    )
    thread.start()
    return thread


def _wait_answering(client: Client, t0: float, options: Options, progress: Progress) -> float:
    """Block until a write sent after the outage began is acknowledged; returns that moment."""
    deadline = time.monotonic() + options.takeover_timeout
    reported = False
    while time.monotonic() < deadline:
        time.sleep(0.5)
        avail = availability(client.attempts(), t0, final=False)
        if avail.outage_began is not None and not reported:
            progress(f"writes fail since +{avail.outage_began - t0:.1f} s; waiting for the survivor")
            reported = True
        if avail.answered_again is not None:
            progress(
                f"writes acknowledged again by {avail.answered_by} at +{avail.answered_again - t0:.1f} s"
            )
            return avail.answered_again
        if avail.outage_began is None and time.time() - t0 > 90:
            progress("no write failed in 90 s: the service never stopped answering")
            return t0
    raise HacloudError(
        f"the service did not answer again within {options.takeover_timeout:.0f} s of the fault",
        "inspect the survivor with `hacloud status` and its /var/log/pacemaker/pacemaker.log",
    )


def _partition_loser(ws: Workspace, provider: Provider, conns: dict[str, Connection]) -> tuple[str, str]:
    """Which side was fenced: the one whose power the provider reports off."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        off = [n for n in conns if provider.power(ws, n) == "off"]
        if len(off) == 1:
            return off[0], next(n for n in conns if n != off[0])
        if len(off) == 2:
            raise HacloudError(
                "both nodes were fenced in the partition", "raise pacemaker.priority_fencing_delay"
            )
        time.sleep(1)
    raise HacloudError(
        "no node was fenced within 120 s of the partition",
        "check the fence devices and fencing history (`hacloud status`)",
    )


def _confirm_off(ws: Workspace, provider: Provider, victim: str, t0: float) -> tuple[bool, float | None]:
    """Ask the provider, not the cluster, whether the fenced node is off, and since when."""
    deadline = time.monotonic() + 120
    state = "unknown"
    while time.monotonic() < deadline:
        state = provider.power(ws, victim)
        if state == "off":
            break
        time.sleep(1)
    events = [when for when, what in provider.power_events(ws, victim, t0 - 1) if what == "off"]
    return state == "off", (round(events[0] - t0, 3) if events else None)


def _primary_count(conns: dict[str, Connection], survivor: str) -> int:
    out = conns[survivor].run(ROLE_PROBE, check=False, timeout=20).stdout
    return 1 if is_primary(out) else 0


def _recover(
    ws: Workspace,
    provider: Provider,
    survivor: Connection,
    victim: str,
    resources: list[DrbdResource],
    options: Options,
    progress: Progress,
) -> tuple[bool, float | None, float | None]:
    """Power the fenced node back; it must rejoin and DRBD must resync to UpToDate."""
    from hacloud.deploy.engine import crm_mon, online_nodes

    progress(f"recovery: powering {victim} back on")
    if provider.power(ws, victim) != "on":
        provider.power_on(ws, victim)
    on_at = time.monotonic()
    deadline = on_at + options.recover_timeout
    rejoin: float | None = None
    connected_at: float | None = None
    while time.monotonic() < deadline:
        time.sleep(1)
        if rejoin is None:
            mon = crm_mon(survivor)
            if mon is not None and victim in online_nodes(mon):
                rejoin = round(time.monotonic() - on_at, 1)
                progress(f"recovery: {victim} rejoined the cluster after {rejoin:.0f} s")
            continue
        cstate, dstate = drbd_state(survivor, resources)
        if connected_at is None and cstate in ("Connected", "SyncSource", "SyncTarget", "WFBitMapS"):
            connected_at = time.monotonic()
        if cstate == "Connected" and dstate == "UpToDate/UpToDate":
            resync = round(time.monotonic() - (connected_at or time.monotonic()), 1)
            names = ", ".join(r.name for r in resources)
            progress(f"recovery: DRBD {names} UpToDate on both nodes (resync {resync:.1f} s)")
            return _healthy_again(ws, deadline, progress), rejoin, resync
    progress(f"recovery: {victim} did not come back fully within {options.recover_timeout:.0f} s")
    return False, rejoin, None


def _healthy_again(ws: Workspace, deadline: float, progress: Progress) -> bool:
    from hacloud.ops.commands import cluster_status

    while time.monotonic() < deadline:
        st = cluster_status(ws.spec_path)
        if st["healthy"]:
            return True
        time.sleep(3)
    progress("recovery: the cluster did not report healthy again (see `hacloud status`)")
    return False


def _judge(result: RoundResult, answered: bool, options: Options) -> None:
    problems = result.problems
    if not answered and not any("did not answer again" in p for p in problems):
        problems.append("the service did not answer again")
    if result.lost:
        problems.append(f"{result.lost} acknowledged records are missing (RPO > 0)")
    if result.corrupt:
        problems.append(f"{result.corrupt} records differ from what was written")
    if result.duplicates:
        problems.append(f"{result.duplicates} duplicate records")
    if not result.single_primary:
        problems.append(f"DRBD was Primary on {result.max_primaries} nodes at once, or on none at the end")
    if not result.fenced_confirmed_off:
        problems.append(f"the provider does not report {result.node} off")
    if options.recover and not result.recovered:
        problems.append(f"{result.node} did not rejoin and resync")
    result.passed = not problems


# ---------------------------------------------------------------- rounds and history


def run(spec_path: Path, options: Options, progress: Progress) -> list[RoundResult]:
    """Run ``options.rounds`` rounds; each is appended to the history file as it ends."""
    from hacloud.deploy.session import ClusterLock, workspace

    ws = workspace(spec_path, progress)
    provider = provider_for(ws)
    validate(ws.spec, provider, options)
    results: list[RoundResult] = []
    with ClusterLock(ws):
        for index in range(options.rounds):
            if options.rounds > 1:
                progress(f"round {index + 1} of {options.rounds}")
            result = run_round(ws, provider, options, progress)
            results.append(result)
            append_history(ws, result)
            if not result.passed or not options.recover:
                break
    return results


def history_path(ws: Workspace) -> Path:
    return ws.state_dir / "fence-test-history.jsonl"


def append_history(ws: Workspace, result: RoundResult) -> None:
    """One JSON line per round, with the profile and timers in force for it (the nodes' OS
    variant and the spec's overrides applied), so runs before and after a change of profile
    can be compared."""
    from hacloud.render import effective_profile
    from hacloud.spec.profiles import load_profile

    fallback = effective_profile(ws.spec, load_profile(ws.spec.profile_name))
    line = {
        "cluster": ws.spec.cluster.name,
        **result.as_dict(),
        "profile": result.profile or fallback.label,
        "timers": result.timers or timers_of(fallback),
    }
    with open(history_path(ws), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def rto_summary(results: list[RoundResult]) -> dict[str, float]:
    return summary([r.rto_seconds for r in results if r.rto_seconds is not None])


def history_summary(ws: Workspace) -> list[dict[str, Any]]:
    """The history file grouped by method and the timers in force: rounds, passes, data lost,
    min/median/p95 RTO. A change of timers starts a new group, so before/after is one look."""
    path = history_path(ws)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (row.get("method", "?"), json.dumps(row.get("timers", {}), sort_keys=True))
            groups.setdefault(key, []).append(row)
    out = []
    for (method, timers), rows in groups.items():
        rto = [r["rto_seconds"] for r in rows if r.get("rto_seconds") is not None]
        out.append(
            {
                "method": method,
                "timers": json.loads(timers),
                "rounds": len(rows),
                "passed": sum(bool(r.get("passed")) for r in rows),
                "lost": sum(int(r.get("lost", 0)) for r in rows),
                "first": rows[0].get("started"),
                "last": rows[-1].get("started"),
                "rto": summary(rto),
            }
        )
    return out
