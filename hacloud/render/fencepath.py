"""How long the cluster may take to fence a node, and the DRBD fence-peer timeouts that cover it.

Contract: everything here is pure arithmetic on timer values, shared by the renderer (which
derives ``crm-fence-peer`` arguments from the profile and the fence devices) and by
:mod:`hacloud.verify.invariants` (which reads the same values back from the rendered files).

Why it matters: with ``fencing resource-and-stonith`` DRBD freezes I/O on a primary that lost
its peer and runs ``crm-fence-peer``. The script polls the cluster until the peer is confirmed
fenced or ``--timeout`` passes; on timeout it places its constraint anyway, exits 5 and DRBD
*resumes I/O*. If that happens while the peer is still trying to fence this primary, the
primary acknowledges writes the peer will never see once it promotes. So ``--timeout`` must
outlast the whole path: membership loss (token + consensus) plus everything Pacemaker's
fencer allows for one fencing operation (LINBIT, header of crm-fence-peer.9.sh: "timeout >=
deadtime, dc-timeout > timeout").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# pacemaker daemons/fenced/fenced_remote.c: the fencer's timer for a remote operation is
# TIMEOUT_MULTIPLY_FACTOR x the sum of the devices' timeouts (+ their delays) + the requested
# (priority) delay.
FENCER_TIMEOUT_FACTOR = 1.2
# crm-fence-peer's own default --dc-timeout: the time it allows to reach a (newly elected) DC.
DC_MARGIN = 20
# DRBD's range for ping-timeout (tenths of a second): DRBD-opts "maximum of 30 seconds".
PING_TIMEOUT_MAX = 300


@dataclass(frozen=True)
class Device:
    """One fence device as the fencer sees it: the node it fences and its parameters."""

    target: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class FencePath:
    """The worst-case time, in seconds, from losing the peer to the fencer giving up."""

    detection: float  # corosync token + consensus
    priority_delay: float  # priority-fencing-delay, added once per operation
    devices: float  # sum over the devices tried for the slowest target: timeout + delay
    target: str  # the node whose fencing takes longest

    @property
    def fencer(self) -> float:
        return FENCER_TIMEOUT_FACTOR * (self.priority_delay + self.devices)

    @property
    def total(self) -> float:
        return self.detection + self.fencer

    def explain(self) -> str:
        return (
            f"token + consensus {self.detection:g}s + {FENCER_TIMEOUT_FACTOR:g} x (priority-fencing-delay "
            f"{self.priority_delay:g}s + device timeouts and delays {self.devices:g}s) = {self.total:g}s"
        )


def seconds(text: str | None) -> float:
    """Pacemaker interval text (``90``, ``90s``, ``2min``, ``500ms``) in seconds; 0 if unset."""
    import re

    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|msec|s|sec|m|min|h|hr)?\s*", text)
    if not m:
        return 0.0
    scale = {"ms": 0.001, "msec": 0.001, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    return float(m.group(1)) * scale.get(m.group(2) or "s", 1.0)


def device_time(params: Mapping[str, str], action: str, fencing_timeout: float) -> float:
    """What one device may take: the larger of its ``pcmk_<action>_timeout`` (which the fencer
    uses, fenced_remote.c get_device_timeout()) and the cluster's fencing-timeout (which the
    controller asks for), plus its delay (``pcmk_delay_max`` when set, else
    ``pcmk_delay_base``). The larger keeps the bound safe whichever of the two applies."""
    own = seconds(params.get(f"pcmk_{action}_timeout"))
    delay = seconds(params.get("pcmk_delay_max")) or seconds(params.get("pcmk_delay_base"))
    return max(own, fencing_timeout) + delay


def fence_path(
    token_ms: float,
    consensus_ms: float,
    priority_delay: float,
    fencing_timeout: float,
    action: str,
    devices: Iterable[Device],
) -> FencePath:
    """The fence path of the slowest target; every device that can fence a target counts
    (with fencing levels the fencer tries them one after another)."""
    per_target: dict[str, float] = {}
    for dev in devices:
        per_target[dev.target] = per_target.get(dev.target, 0.0) + device_time(
            dev.params, action, fencing_timeout
        )
    target, worst = max(per_target.items(), key=lambda kv: kv[1], default=("", fencing_timeout))
    return FencePath((token_ms + consensus_ms) / 1000, priority_delay, worst, target)


def handler_timeouts(path: FencePath) -> tuple[int, int]:
    """``(--timeout, --dc-timeout)`` for crm-fence-peer: the whole path rounded up, and the
    DC timeout above it (LINBIT: dc-timeout > timeout)."""
    timeout = math.ceil(round(path.total, 6))  # 1.2 x 630 must stay 756, not 756.0000001
    return timeout, timeout + DC_MARGIN


def freeze_tolerance(ping_timeout_ds: int, timeout_ds: int, ko_count: int) -> float:
    """Seconds a peer may stop answering before DRBD drops the connection.

    A keep-alive ping must be answered within ping-timeout (DRBD-opts); a write the peer
    does not complete within ko-count x timeout expels it (ko-count 0 disables that).
    The shorter of the two decides.
    """
    ping = ping_timeout_ds / 10
    ko = ko_count * timeout_ds / 10 if ko_count > 0 else math.inf
    return min(ping, ko)
