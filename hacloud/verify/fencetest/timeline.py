"""Where the failover time went: the cluster's own history, and the floor its timers allow (pure).

The stages come from the survivor's journal (microsecond timestamps, unlike Pacemaker's log
file), corrected by the node's clock offset from this machine. Each stage is the first
matching message after the fault; its value is seconds since the fault was injected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from hacloud.spec.profiles import Profile

METHODS = ("fence", "power", "crash", "partition")


@dataclass(frozen=True)
class StagePattern:
    name: str
    regex: str  # {victim} {survivor} {rid} are filled in


def stage_patterns(
    victim: str, survivor: str, drbd: str, fs: str, service: str, vips: list[str]
) -> list[StagePattern]:
    """The milestones of a failover in Pacemaker 2.1-3.x and corosync 3 messages, in order."""
    v, s = re.escape(victim), re.escape(survivor)

    def started(rid: str, op: str = "start") -> str:
        return rf"Result of {op} operation for {re.escape(rid)} on {s}: (ok|OK)"

    out = [
        StagePattern("token_lost", r"A processor failed, forming new configuration"),
        StagePattern(
            "detected",
            rf"(Node {v} state is now lost|Our peer on the DC \({v}\) is dead|Members\[1\]:"
            rf"|Requesting fencing \(\w+\) (of|targeting) node {v}\b)",
        ),
        StagePattern(
            "fence_requested",
            rf"(Requesting fencing \(\w+\) (of|targeting) node {v}\b|wants to fence \(\w+\) '?{v}'?"
            rf"|Requesting peer fencing \(\w+\) targeting {v}\b)",
        ),
        StagePattern(
            "fenced",
            rf"(Operation '\w+' targeting {v} (by|on) \S+ for \S+: (OK|ok)"
            rf"|Peer {v} was terminated \(\w+\) by \S+ on behalf of .*: (OK|ok))",
        ),
        StagePattern("promoted", started(drbd, "promote")),
        StagePattern("mounted", started(fs)),
        StagePattern("service_started", started(service)),
    ]
    out += [
        StagePattern("vip_up" if i == len(vips) - 1 else f"vip_{rid}", started(rid))
        for i, rid in enumerate(vips)
    ]
    return out


def parse_journal(text: str, offset: float) -> list[tuple[float, str]]:
    """``journalctl -o json`` lines -> [(epoch on this machine's clock, message)]."""
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        message = entry.get("MESSAGE")
        stamp = entry.get("__REALTIME_TIMESTAMP")
        if not isinstance(message, str) or stamp is None:
            continue
        out.append((int(stamp) / 1e6 - offset, message))
    return sorted(out)


def stages(events: list[tuple[float, str]], patterns: list[StagePattern], t0: float) -> dict[str, float]:
    """Seconds from ``t0`` to the first message of each stage at or after ``t0``."""
    found: dict[str, float] = {}
    for pattern in patterns:
        rx = re.compile(pattern.regex)
        for when, message in events:
            if when >= t0 - 0.5 and rx.search(message):
                found[pattern.name] = round(max(0.0, when - t0), 3)
                break
    return found


@dataclass(frozen=True)
class Floor:
    total: float
    parts: dict[str, float]
    assumes: str


def floor(method: str, profile: Profile, victim_was_active: bool, pacemaker_delay: bool = True) -> Floor:
    """The least time the configured timers allow before the survivor may even start promoting:
    failure detection plus fencing delays (the random ``pcmk_delay_max`` at its minimum, 0).
    Agent operations (fence, promote, mount, start) have no timer floor; they are measured."""
    p = profile.num
    parts: dict[str, float] = {}
    if method in ("power", "crash", "partition"):
        # corosync declares the token lost after `token`, then waits `consensus` to form
        # the new membership without the peer (corosync.conf(5)).
        parts["detection"] = (p("corosync.token") + p("corosync.consensus")) / 1000
    if method == "partition":
        # with writes in flight DRBD notices the lost peer after `timeout` (0.1 s units)
        parts["detection"] = max(parts["detection"], p("drbd.timeout") / 10)
    parts["fence_delay"] = float(p("fencing.pcmk_delay_base"))
    if method in ("power", "crash") and victim_was_active and pacemaker_delay:
        # fencing the node that held the promoted instance waits priority-fencing-delay
        # (Pacemaker Explained, cluster options): the price of winning fence races.
        parts["priority_fencing_delay"] = float(p("pacemaker.priority_fencing_delay"))
    total = round(sum(parts.values()), 3)
    return Floor(total, parts, "pcmk_delay_max at its minimum (0 s); agent operations not included")
