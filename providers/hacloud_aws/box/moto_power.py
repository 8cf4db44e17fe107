"""moto's instance power transitions, held until the guest really changed state (box with guests).

moto 5.2.5 switches an instance's state at once: RunInstances and StartInstances leave it
``running``, StopInstances ``stopped``, TerminateInstances ``terminated``. EC2 passes through
``pending``, ``stopping`` and ``shutting-down`` while the machine boots or goes down, and the
agents depend on it (``fence_aws`` polls until ``stopped``). ``install(requests)`` wraps, in this
one place, ``InstanceBackend.run_instances``, ``Instance.start/stop/terminate`` and the
StopInstances response (for its ``Force``/``SkipOsShutdown`` parameters), so that:

- RunInstances / StartInstances leave the instance ``pending``;
- StopInstances leaves it ``stopping`` and records a :class:`PowerRequest` with the flags;
- TerminateInstances leaves it ``shutting-down`` and records a request.

The controller (``controller.py``) finishes each transition with :func:`set_state` once the
guest is on or off. ``tests/test_aws_box_guests_units.py`` holds the contract test (with the
hooks) and the canary (what unpatched moto does), so a moto upgrade that changes either fails.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hacloud_aws.box import moto_ext

#: EC2's instance state codes (DescribeInstances ``State.Code``)
CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}


@dataclass(frozen=True)
class PowerRequest:
    instance: str
    kind: str  # "stop" | "terminate"
    skip_os_shutdown: bool = False
    force: bool = False
    t: float = 0.0


class Requests:
    """Power requests the API made, drained by the controller (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[PowerRequest] = []

    def add(self, request: PowerRequest) -> None:
        with self._lock:
            self._items.append(request)

    def drain(self) -> list[PowerRequest]:
        with self._lock:
            items, self._items = self._items, []
        return items


_flags = threading.local()  # the StopInstances call's flags, seen by Instance.stop in that thread


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def set_state(instance: Any, name: str) -> None:
    """Put moto ``instance`` in EC2 state ``name`` (the controller's half of a transition)."""
    instance._state.name = name
    instance._state.code = CODES[name]


def _wrap_stop_response(orig: Any) -> Any:
    def stop_instances(self: Any) -> Any:
        _flags.value = (_true(self._get_param("SkipOsShutdown")), _true(self._get_param("Force")))
        try:
            return orig(self)
        finally:
            _flags.value = None

    return stop_instances


def _wrap_instance(requests: Requests, kind: str, transient: str) -> Any:
    def wrap(orig: Any) -> Any:
        def method(self: Any) -> Any:
            before = self._state.name
            previous = orig(self)
            if kind == "start":
                if before in ("stopped", "stopping"):
                    set_state(self, "pending")
                else:  # EC2 leaves a running instance as it is
                    set_state(self, before)
                return previous
            set_state(self, transient)
            skip, force = getattr(_flags, "value", None) or (False, False)
            requests.add(PowerRequest(self.id, kind, skip, force, time.time()))
            return previous

        return method

    return wrap


def _wrap_run(orig: Any) -> Any:
    def run_instances(self: Any, *a: Any, **kw: Any) -> Any:
        reservation = orig(self, *a, **kw)
        for instance in reservation.instances:
            set_state(instance, "pending")
        return reservation

    return run_instances


def install(requests: Requests) -> list[tuple[Any, str, Any]]:
    """Apply the hooks; returns what ``uninstall`` needs."""
    from moto.ec2.models.instances import Instance, InstanceBackend
    from moto.ec2.responses.instances import InstanceResponse

    targets = [
        (InstanceBackend, "run_instances", _wrap_run),
        (Instance, "start", _wrap_instance(requests, "start", "pending")),
        (Instance, "stop", _wrap_instance(requests, "stop", "stopping")),
        (Instance, "terminate", _wrap_instance(requests, "terminate", "shutting-down")),
        (InstanceResponse, "stop_instances", _wrap_stop_response),
    ]
    return moto_ext.wrap_all(targets)


uninstall = moto_ext.uninstall


@contextlib.contextmanager
def patched(requests: Requests) -> Iterator[None]:
    undo = install(requests)
    try:
        yield
    finally:
        uninstall(undo)
