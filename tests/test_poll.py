"""hacloud.poll: the one polling loop, on the manual clock and on the real one."""

from __future__ import annotations

import time

from hacloud.poll import SYSTEM, ManualClock, poll_until


def test_returns_the_first_answer_without_sleeping() -> None:
    clock = ManualClock()
    assert poll_until(lambda: "up", timeout=10, clock=clock) == "up"
    assert clock.slept == 0


def test_polls_at_the_interval_until_an_answer() -> None:
    clock = ManualClock()
    calls: list[float] = []

    def probe() -> str | None:
        calls.append(clock.monotonic())
        return "ok" if clock.monotonic() >= 7 else None

    assert poll_until(probe, timeout=60, interval=2, clock=clock) == "ok"
    assert calls == [0, 2, 4, 6, 8]


def test_gives_up_after_the_timeout_with_a_last_look_at_the_deadline() -> None:
    clock = ManualClock()
    calls: list[float] = []

    def probe() -> None:
        calls.append(clock.monotonic())

    assert poll_until(probe, timeout=5, interval=2, clock=clock) is None
    # the last sleep is shortened so the final look happens exactly at the deadline
    assert calls == [0, 2, 4, 5]
    assert clock.monotonic() == 5


def test_a_zero_timeout_still_looks_once() -> None:
    calls = []
    assert poll_until(lambda: calls.append(1), timeout=0, clock=ManualClock()) is None
    assert calls == [1]


def test_the_system_clock_really_waits() -> None:
    start = time.monotonic()
    assert poll_until(lambda: None, timeout=0.2, interval=0.05, clock=SYSTEM) is None
    waited = time.monotonic() - start
    assert 0.2 <= waited < 2
    assert abs(SYSTEM.time() - time.time()) < 1


def test_the_manual_wall_clock_moves_with_sleep() -> None:
    clock = ManualClock(wall=1000.0)
    clock.sleep(2.5)
    assert clock.time() == 1002.5
    clock.sleep(-1)  # a negative sleep (a deadline already passed) never moves time back
    assert clock.monotonic() == 2.5
