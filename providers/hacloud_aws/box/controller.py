"""The box's guest controller: keeps one UML guest per EC2 instance, in the state moto holds.

Contract (level-triggered, in the daemon, one thread):
- It runs after every successful mutating API call (seen in the action log, as ``netloop``
  does), every ``TICK`` s regardless, and every ``FAST`` s while a transition is under way.
- ``pending`` → the guest is booted (root = ``guests/<iid>/root.cow`` over the image, the attached
  volumes as ubd disks with their EBS serial) and moto says ``running`` once its process runs.
- ``stopping`` → the stop model (``stopmodel.py``); moto says ``stopped`` once the guest is off.
- ``shutting-down`` → the guest is killed, its directory (the root COW) and tap removed, then
  ``terminated``. A guest whose instance moto no longer holds is removed the same way.
- ``running`` → attached volumes are hot-plugged (mconsole ``config``) and detached ones removed
  (``remove``; refused while the guest uses the disk: retried, and said once in the events). A
  guest that went off by itself (``poweroff`` inside) makes the instance ``stopped``, as the
  default shutdown behaviour of EC2 does.
- Volumes are sparse files ``volumes/<vol-id>.img``; a deleted volume's file is removed.
- Every change is an event ({t, instance, event}) in ``events.jsonl`` and in memory.
- ``stop()`` kills every guest (moto's state dies with the daemon).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacloud_lab import guest
from hacloud_lab.guest import GuestConfig

from hacloud.errors import HacloudError
from hacloud_aws.box import guests, moto_power, state
from hacloud_aws.box.frontend import ActionLog
from hacloud_aws.box.layout import ACCOUNT_ID
from hacloud_aws.box.netloop import mutating
from hacloud_aws.box.stopmodel import StopJob, merge, next_step

POLL = 0.05
FAST = 0.25
TICK = 2.0
ROOT_DEVICES = ("/dev/sda1", "/dev/xvda")  # moto's root volume: the guest's root is the COW
TRANSIENT = ("pending", "stopping", "shutting-down")


class GuestController:
    def __init__(
        self,
        inputs: guests.GuestInputs,
        requests: moto_power.Requests,
        log: ActionLog,
        graceful_timeout_s: float,
        hypervisor_delay_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inputs, self.requests, self.log, self.clock = inputs, requests, log, clock
        self.graceful_timeout_s, self.hypervisor_delay_s = graceful_timeout_s, hypervisor_delay_s
        self.configs: dict[str, GuestConfig] = {}
        self.plugged: dict[str, dict[str, int]] = {}  # instance → volume → ubd slot
        self.stops: dict[str, StopJob] = {}
        self.frozen: set[str] = set()
        self.refused: set[tuple[str, str]] = set()  # (instance, volume) detaches said once
        self.error = ""
        self._events: list[dict[str, Any]] = []
        self._events_out = (inputs.root / "events.jsonl").open("a", encoding="utf-8")
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="box-guests", daemon=True)
        self._seen = 0

    # -- events ---------------------------------------------------------------------------

    def event(self, instance: str, what: str) -> None:
        entry = {"t": round(time.time(), 3), "instance": instance, "event": what}
        self._events.append(entry)
        self._events_out.write(json.dumps(entry, sort_keys=True) + "\n")
        self._events_out.flush()

    def events(self, since: float) -> list[dict[str, Any]]:
        return [e for e in list(self._events) if e["t"] >= since]

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        """Clear what an earlier box left (before any API call can run), then start the loop."""
        self.clear_stale()
        self._seen = len(self.log.since(0))
        self._thread.start()

    def clear_stale(self) -> None:
        """An earlier box's guests and volumes: its instances died with it, and moto's seeded ids
        repeat, so a new instance or volume would otherwise reuse an old root disk or old data.
        Root disks (copy-on-write layers over the image) are removed; volume files, which may
        hold a cluster's data, are moved to ``orphaned/<epoch>/`` and said in the events."""
        stale = self.inputs.root / "guests"
        if stale.is_dir():
            for directory in sorted(stale.iterdir()):
                shutil.rmtree(directory)
                self.event(directory.name, "an earlier box's guest removed")
        folder = self.inputs.root / "volumes"
        files = sorted(folder.glob("vol-*.img")) if folder.is_dir() else []
        if files:
            keep = self.inputs.root / "orphaned" / str(int(time.time()))
            keep.mkdir(parents=True, exist_ok=True, mode=0o700)
            for path in files:
                path.rename(keep / path.name)
                self.event("", f"an earlier box's volume file kept as {keep / path.name}")

    def _run(self) -> None:
        last = 0.0
        busy = False
        while not self._stop.wait(POLL):
            fresh = self.log.since(self._seen)
            self._seen += len(fresh)
            now = time.monotonic()
            due = TICK if not busy else FAST
            if any(mutating(e) for e in fresh) or now - last >= due:
                last = now
                try:
                    busy = self.reconcile()
                    self.error = ""
                except HacloudError as exc:  # kept for status; the next tick retries
                    if exc.message != self.error:
                        self.event("", f"reconcile failed: {exc.message}")
                    self.error = exc.message
                except Exception as exc:  # a box bug: keep the box serving, say it in status
                    self.error = repr(exc)

    def reconcile(self) -> bool:
        """One pass; True while a transition is under way (the loop then runs faster)."""
        with self._lock:
            for request in self.requests.drain():
                if request.kind == "stop":
                    job = StopJob(request.instance, request.skip_os_shutdown, self.clock())
                    self.stops[request.instance] = merge(self.stops.get(request.instance), job)
                    mode = "skip-os-shutdown" if request.skip_os_shutdown else "graceful"
                    self.event(request.instance, f"stop requested ({mode}, force={request.force})")
            cloud = state.snapshot(self.inputs.region)
            for inst in cloud.instances:
                self._instance(inst, cloud.volumes)
            live = {i.id for i in cloud.instances}
            for iid in [i for i in self._known() if i not in live]:
                self._remove(iid)
            self._volume_files(cloud.volumes)
            return any(i.state in TRANSIENT for i in cloud.instances)

    def _known(self) -> set[str]:
        on_disk = self.inputs.root / "guests"
        found = {p.name for p in on_disk.iterdir()} if on_disk.is_dir() else set()
        return found | set(self.configs)

    def _instance(self, inst: state.Instance, volumes: tuple[state.Volume, ...]) -> None:
        if inst.state == "pending":
            self._boot(inst, volumes)
        elif inst.state == "running":
            self._running(inst, volumes)
        elif inst.state == "stopping":
            self._stopping(inst)
        elif inst.state == "stopped":
            config = self.configs.get(inst.id)
            if config is not None and guest.running_pgid(config) is not None:
                self._kill(inst.id, "guest of a stopped instance killed")
        elif inst.state == "shutting-down":
            self._remove(inst.id)
            self._set(inst.id, "terminated")

    # -- transitions ----------------------------------------------------------------------

    def _set(self, instance: str, name: str) -> None:
        from moto.ec2.models import ec2_backends

        with contextlib.suppress(Exception):  # an instance gone meanwhile has no state to set
            moto_power.set_state(ec2_backends[ACCOUNT_ID][self.inputs.region].get_instance(instance), name)
            self.event(instance, f"state {name}")

    def _attached(self, inst: state.Instance, volumes: tuple[state.Volume, ...]) -> dict[str, state.Volume]:
        return {v.id: v for v in volumes if v.instance == inst.id and (v.device or "") not in ROOT_DEVICES}

    def _boot(self, inst: state.Instance, volumes: tuple[state.Volume, ...]) -> None:
        attached = self._attached(inst, volumes)
        order = sorted(attached)
        for vid in order:
            guests.write_sparse(guests.volume_file(self.inputs.root, vid), attached[vid].size_gib)
        disks = tuple((str(guests.volume_file(self.inputs.root, v)), guests.volume_serial(v)) for v in order)
        config = guests.guest_config(self.inputs, inst, disks)
        directory = Path(config.directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name, _cidr = guests.subnet_cidr(inst.interfaces[0].subnet, self.inputs.subnet_ids)
        guests.ensure_tap(self.inputs.router, config.taps[0][0], name)
        config.save(directory / "guest.json")
        self.configs[inst.id] = config
        self.plugged[inst.id] = {v: i + 1 for i, v in enumerate(order)}
        self.frozen.discard(inst.id)
        pid = guest.start(config)
        if guest.running_pgid(config) is None:
            raise HacloudError(
                f"the guest of {inst.id} did not start (pid {pid})",
                f"see {directory / 'console.log'}",
                code="HAC707",
            )
        self.event(inst.id, f"boot (pid {pid})")
        self._set(inst.id, "running")

    def _running(self, inst: state.Instance, volumes: tuple[state.Volume, ...]) -> None:
        config = self.configs.get(inst.id)
        if config is None or guest.running_pgid(config) is None:
            self.event(inst.id, "guest off by itself (OS shutdown)")
            self._set(inst.id, "stopped")
            return
        self._plug(inst, config, self._attached(inst, volumes))

    def _plug(self, inst: state.Instance, config: GuestConfig, attached: dict[str, state.Volume]) -> None:
        plugged = self.plugged.setdefault(inst.id, {})
        sock = guests.mconsole_socket(config)
        for vid in sorted(set(attached) - set(plugged)):
            slot = min(set(range(1, 26)) - set(plugged.values()))
            path = guests.volume_file(self.inputs.root, vid)
            guests.write_sparse(path, attached[vid].size_gib)
            guests.mconsole(sock, f"config ubd{slot}={path},,{guests.volume_serial(vid)}")
            plugged[vid] = slot
            self.event(inst.id, f"attach {vid} as ubd{slot}")
        for vid in sorted(set(plugged) - set(attached)):
            try:
                guests.mconsole(sock, f"remove ubd{plugged[vid]}")
            except HacloudError as exc:
                if (inst.id, vid) not in self.refused:
                    self.refused.add((inst.id, vid))
                    self.event(inst.id, f"detach {vid} refused: {exc.message}")
                continue
            self.refused.discard((inst.id, vid))
            del plugged[vid]
            self.event(inst.id, f"detach {vid}")

    def _stopping(self, inst: state.Instance) -> None:
        job = self.stops.setdefault(inst.id, StopJob(inst.id, False, self.clock()))
        config = self.configs.get(inst.id)
        on = config is not None and guest.running_pgid(config) is not None
        step = next_step(job, self.clock(), on, self.graceful_timeout_s, self.hypervisor_delay_s)
        if step == "cad" and config is not None:
            job.cad_sent = True
            try:
                # short: a frozen guest never answers, and the loop serves every instance
                guests.mconsole(guests.mconsole_socket(config), "cad", timeout=3.0)
                self.event(inst.id, "power button (cad)")
            except HacloudError as exc:
                self.event(inst.id, f"power button failed: {exc.message}")
        elif step == "kill":
            job.killed = True
            self._kill(inst.id, "killed" if job.skip_os_shutdown else "killed after the grace period")
        elif step == "done":
            del self.stops[inst.id]
            self.frozen.discard(inst.id)
            self.plugged.pop(inst.id, None)
            self.event(inst.id, "guest off")
            self._set(inst.id, "stopped")

    def _kill(self, instance: str, why: str) -> None:
        config = self.configs.get(instance)
        if config is not None and guest.kill(config):
            self.event(instance, why)

    def _remove(self, instance: str) -> None:
        directory = guests.guest_dir(self.inputs.root, instance)
        config = self.configs.pop(instance, None)
        if config is None and (directory / "guest.json").exists():
            config = GuestConfig.load(directory / "guest.json")
        if config is not None:
            guest.kill(config)
            guests.remove_tap(self.inputs.router, config.taps[0][0])
            shutil.rmtree(config.runtime_dir / config.umid, ignore_errors=True)
        self.plugged.pop(instance, None)
        self.stops.pop(instance, None)
        self.frozen.discard(instance)
        if directory.exists():
            shutil.rmtree(directory)
            self.event(instance, "guest removed (root disk deleted)")

    def _volume_files(self, volumes: tuple[state.Volume, ...]) -> None:
        folder = self.inputs.root / "volumes"
        wanted = {f"{v.id}.img" for v in volumes}
        for path in folder.glob("vol-*.img") if folder.is_dir() else ():
            if path.name not in wanted:  # DeleteVolume: EBS deletes the data too
                path.unlink()
                self.event("", f"volume file {path.name} deleted")

    # -- control ops ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for iid, config in self.configs.items():
                pgid = guest.running_pgid(config)
                power = "off" if pgid is None else ("frozen" if iid in self.frozen else "on")
                console = str(Path(config.directory) / "console.log")
                out[iid] = {"power": power, "pid": pgid, "console": console}
        return out

    def problem(self) -> str:
        """The last reconcile's error ("" when it converged): retried every tick."""
        return self.error

    def signal(self, instance: str, freeze: bool) -> dict[str, Any]:
        """Freeze (SIGSTOP the guest's process group: a hung kernel; EC2 still says running)
        or thaw it (SIGCONT)."""
        with self._lock:
            config = self.configs.get(instance)
            pgid = guest.running_pgid(config) if config is not None else None
            if pgid is None:
                raise HacloudError(
                    f"instance {instance!r} has no running guest",
                    "give the id of a running instance (op guests lists them)",
                    code="HAC708",
                )
            os.killpg(pgid, signal.SIGSTOP if freeze else signal.SIGCONT)
            (self.frozen.add if freeze else self.frozen.discard)(instance)
            self.event(instance, "frozen" if freeze else "thawed")
        return self.status()

    def stop(self) -> None:
        """End the loop and kill every guest."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        with self._lock:
            for iid in list(self.configs):
                self._kill(iid, "killed (box stopped)")
        shutil.rmtree(guests.runtime_dir(self.inputs.root), ignore_errors=True)
        self._events_out.close()
