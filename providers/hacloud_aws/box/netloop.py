"""The box daemon's network reconciler: keeps the router (``net.Router``) equal to moto's state.

Contract: ``NetLoop.start()`` builds the router and applies once before it returns, so the
daemon serves nothing before the network exists. Then a thread applies again after every
successful mutating API call it sees in the action log (checked every ``POLL`` s: the log is
in memory, a check costs a lock and a slice) and every ``TICK`` s regardless (level-triggered: a
change made some other way, or a failed apply, converges at the next tick). ``fault`` switches
a network fault and applies before it returns, so the fault is in force when the caller hears
back. ``stop()`` ends the thread and removes the router's namespaces (everything it built).
Apply failures are kept (``status()['error']``) and retried; they never stop the box.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from hacloud.errors import HacloudError
from hacloud_aws.box import state
from hacloud_aws.box.frontend import ActionLog
from hacloud_aws.box.net import Router
from hacloud_aws.box.netstate import NetworkState, read_groups

POLL = 0.05
TICK = 2.0
READ_ONLY = ("Describe", "Get", "List")


def mutating(entry: dict[str, Any]) -> bool:
    """An action log entry of a call that may have changed the account."""
    action = str(entry.get("action", ""))
    return bool(action) and not action.startswith(READ_ONLY) and int(entry.get("status", 500)) < 300


class NetLoop:
    def __init__(
        self, router: Router, region: str, subnets: tuple[tuple[str, str, str, str], ...], log: ActionLog
    ) -> None:
        self.router, self.region, self.subnets, self.log = router, region, subnets, log
        self._lock = threading.Lock()  # one apply at a time (the thread, control requests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="box-net", daemon=True)
        self._seen = 0
        self.applies = 0
        self.kicks = 0  # applies made because an API call changed the account (not the tick)
        self.last_ms = 0.0
        self.error = ""

    def state(self) -> NetworkState:
        return NetworkState(state.snapshot(self.region), self.subnets, read_groups(self.region))

    def apply(self) -> list[str]:
        """Converge now; returns the changes (an error is kept in ``error`` and raised)."""
        with self._lock:
            started = time.perf_counter()
            try:
                changes = self.router.apply(self.state())
            except HacloudError as exc:
                self.error = exc.message
                raise
            self.error = ""
            self.applies += 1
            self.last_ms = round((time.perf_counter() - started) * 1000, 3)
            return changes

    def start(self) -> None:
        self.router.create(self.subnets)
        self._seen = len(self.log.since(0))
        self.apply()
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(POLL):
            fresh = self.log.since(self._seen)
            self._seen += len(fresh)
            kicked = any(mutating(e) for e in fresh)
            if kicked or time.monotonic() - last >= TICK:
                last = time.monotonic()
                self.kicks += kicked
                with contextlib.suppress(HacloudError):  # kept in self.error; the next tick retries
                    self.apply()

    def fault(self, kind: str, on: bool, zone: str | None) -> dict[str, Any]:
        self.router.fault(kind, on, zone)
        self.apply()
        return self.status()

    def status(self) -> dict[str, Any]:
        return {
            "router": self.router.name,
            "faults": sorted(self.router.faults),
            "applies": self.applies,
            "kicks": self.kicks,
            "last_apply_ms": self.last_ms,
            "error": self.error,
        }

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.router.destroy()


def start(name: str, region: str, subnet_ids: dict[str, str], log: ActionLog) -> NetLoop:
    """The daemon's hook: build router ``name`` for the layout's subnets and keep it converged."""
    from hacloud_aws.box.netstate import layout_subnets

    loop = NetLoop(Router(name), region, layout_subnets(subnet_ids, region), log)
    try:
        loop.start()
    except BaseException:
        loop.stop()
        raise
    return loop
