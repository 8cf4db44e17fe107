"""Time, injected: the one polling loop every wait in hacloud uses, and the clocks it runs on.

Contract: :func:`poll_until` calls ``probe`` at once and then every ``interval`` seconds until it
returns something other than None (returned) or ``timeout`` seconds have passed on ``clock``
(None returned; the caller raises its own error, which knows what was awaited). The probe is
called at least once, and once more at or after the deadline, so a state reached during the
last sleep is not missed. Code that waits takes a :class:`Clock` (default :data:`SYSTEM`) so
tests run the same code on a :class:`ManualClock` in microseconds: its ``sleep`` advances time
instead of blocking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic time for deadlines, wall time for timestamps users read, and sleeping."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM: Clock = SystemClock()


@dataclass
class ManualClock:
    """A clock that moves only when slept on (or :meth:`advance`d): waits in tests are instant
    and deterministic. ``wall`` is the epoch the wall clock starts at."""

    now: float = 0.0
    wall: float = 1_800_000_000.0
    slept: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        self.slept += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def poll_until(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 1.0, clock: Clock = SYSTEM
) -> T | None:
    """The probe's first non-None answer within ``timeout`` seconds, or None (see module doc)."""
    deadline = clock.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return None
        clock.sleep(min(interval, remaining))
