"""DRBD data safety against the fence path (HAC080-HAC084): the fence-peer handler keeps I/O
frozen until the peer is fenced, split brain is never resolved by discarding writes unasked,
and DRBD does not give up on a peer corosync still counts alive."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.render.fencepath import DC_MARGIN, PING_TIMEOUT_MAX, FencePath, fence_path, freeze_tolerance
from hacloud.render.fencepath import Device as FenceDevice
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, conf_value, first_node_file, ok, seconds

# crm-fence-peer's own defaults when the handler line passes no argument (its argument parser).
_HANDLER_DEFAULTS = {"timeout": 90, "dc_timeout": 20}


def _fence_peer_args(conf: str) -> tuple[str, dict[str, int]] | None:
    """The fence-peer handler command of a DRBD config and its --timeout/--dc-timeout, parsed
    the way crm-fence-peer parses them (``-t N``, ``--timeout N``, ``--timeout=N``); None
    when no fence-peer handler is configured."""
    import shlex

    m = re.search(r'^\s*fence-peer\s+"([^"]*)"', conf, re.MULTILINE)
    if not m:
        return None
    words = shlex.split(m.group(1))
    found = dict(_HANDLER_DEFAULTS)
    names = {"-t": "timeout", "--timeout": "timeout", "-d": "dc_timeout", "--dc-timeout": "dc_timeout"}
    for i, word in enumerate(words):
        key, _, value = word.partition("=")
        if key in names and (value or i + 1 < len(words)):
            text = value or words[i + 1]
            if text.isdigit():
                found[names[key]] = int(text)
    return m.group(1), found


def _device_target(params: dict[str, str]) -> str:
    hosts = [h for h in re.split(r"[\s,]+", params.get("pcmk_host_list", "")) if h]
    hosts += [e.split(":", 1)[0] for e in re.split(r"[;\s,]+", params.get("pcmk_host_map", "")) if ":" in e]
    return hosts[0] if hosts else ""


def rendered_fence_path(b: Bundle, cib: Cib) -> FencePath:
    """The fence path as the rendered corosync.conf and CIB define it (not as the renderer
    meant it): token + consensus, priority-fencing-delay, fencing-timeout, action, devices."""
    corosync = first_node_file(b, "corosync.conf")
    return fence_path(
        int(conf_value(corosync, "token") or 0),
        int(conf_value(corosync, "consensus") or 0),
        seconds(cib.prop("priority-fencing-delay")),
        seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s"),
        cib.prop("fencing-action", "stonith-action") or "reboot",
        (
            FenceDevice(_device_target(params), params)
            for params in (Cib.params(d) for d in cib.stonith_devices())
        ),
    )


def drbd_fence_peer_timeout(
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib
) -> Iterator[Finding]:
    """HAC080/HAC081: crm-fence-peer must keep I/O frozen for the whole fence path."""
    handler = _fence_peer_args(first_node_file(b, "global_common.conf"))
    if handler is None:
        return  # HAC021 reports a missing handler
    command, args = handler
    path = rendered_fence_path(b, cib)
    timeout, dc_timeout = args["timeout"], args["dc_timeout"]
    need = math.ceil(round(path.total, 6))
    src = (
        "LINBIT crm-fence-peer.9.sh / crm-fence-peer.sh header ('timeout >= deadtime', stonith "
        "timeout; 'dc-timeout > timeout'); Pacemaker fenced_remote.c (fencer timeout)"
    )
    if timeout < need:
        yield Finding(
            "HAC080",
            "error",
            f"DRBD fence-peer gives up after {timeout}s, before the fence path ends ({path.explain()}, "
            f"target {path.target or '-'}): if this primary cannot fence its peer, DRBD resumes I/O "
            "and acknowledges writes the peer will not have when it fences this node and promotes",
            "render with hacloud (it derives the handler timeouts), or set "
            f'`fence-peer "{command.split()[0]} --timeout {need} --dc-timeout {need + DC_MARGIN}";`',
            src,
        )
    else:
        yield ok("HAC080", f"DRBD fence-peer --timeout {timeout}s >= fence path {path.total:g}s", src)
    if dc_timeout <= timeout:
        yield Finding(
            "HAC081",
            "error",
            f"DRBD fence-peer --dc-timeout {dc_timeout}s <= --timeout {timeout}s: the handler stops "
            "waiting for a DC (and gives up) before its own timeout",
            f"set --dc-timeout {timeout + DC_MARGIN} (above --timeout) in the fence-peer handler",
            src,
        )
    else:
        yield ok("HAC081", f"DRBD fence-peer --dc-timeout {dc_timeout}s > --timeout {timeout}s", src)


# after-sb policies that never throw data away on their own (DRBD-opts after-sb-*pri)
_SAFE_SB = {
    "after-sb-0pri": {"disconnect", "discard-zero-changes"},
    "after-sb-1pri": {"disconnect"},
    "after-sb-2pri": {"disconnect"},
}


def drbd_split_brain_policy(
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib
) -> Iterator[Finding]:
    """HAC082: automatic split-brain recovery discards one side's acknowledged writes."""
    text = first_node_file(b, "global_common.conf")
    src = "DRBD-opts after-sb-0pri/1pri/2pri; UG9 ('configuring for potential automatic data loss')"
    risky = [
        f"{key} {value}"
        for key, safe in _SAFE_SB.items()
        if (value := conf_value(text, key) or "disconnect") not in safe
    ]
    if not risky:
        yield ok("HAC082", "after a split brain DRBD disconnects and waits for the operator", src)
        return
    opted = spec.drbd.split_brain_recovery != "manual"
    yield Finding(
        "HAC082",
        "warning" if opted else "error",
        f"automatic split-brain recovery ({', '.join(risky)}): DRBD discards one node's writes "
        "since the split, acknowledged ones included"
        + (" (opted in with drbd.split_brain_recovery)" if opted else ""),
        "set `drbd: {split_brain_recovery: manual}` (the default) and recover by hand with the "
        "commands `hacloud status` prints"
        if opted
        else "render with hacloud (after-sb-1pri disconnect), or opt in knowingly with "
        "`drbd: {split_brain_recovery: discard-secondary}`",
        src,
    )


def drbd_freeze_tolerance(
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib
) -> Iterator[Finding]:
    """HAC083/HAC084: DRBD must not give up on a peer that corosync still counts alive."""
    text = first_node_file(b, "global_common.conf")
    token = int(conf_value(first_node_file(b, "corosync.conf"), "token") or 0) / 1000
    ping_timeout = int(conf_value(text, "ping-timeout") or 5)
    timeout = int(conf_value(text, "timeout") or 60)
    ko = int(conf_value(text, "ko-count") or 7)
    tolerance = freeze_tolerance(ping_timeout, timeout, ko)
    src = "DRBD-opts ping-timeout ('maximum of 30 seconds'), ko-count, timeout; corosync.conf(5) token"
    if tolerance < token:
        want = min(PING_TIMEOUT_MAX, math.ceil(token * 10))
        fix = f"set overrides: drbd.ping_timeout: {want}"
        if ping_timeout >= want and ko > 0:
            ko_need = math.ceil(token * 10 / timeout)
            fix = f"set overrides: drbd.ko_count: {ko_need} (ko-count x timeout >= token)"
        if token * 10 > PING_TIMEOUT_MAX:
            fix += (
                f"; DRBD waits at most {PING_TIMEOUT_MAX / 10:g}s, so also lower corosync.token to "
                f"{PING_TIMEOUT_MAX * 100}"
            )
        yield Finding(
            "HAC083",
            "warning",
            f"DRBD drops a peer that pauses {tolerance:g}s, corosync only after {token:g}s (token): a "
            "pause the cluster rides out (VM maintenance, live migration) still costs an I/O freeze, "
            "a fence constraint and a resync",
            fix,
            src,
        )
    else:
        yield ok("HAC083", f"DRBD tolerates a {tolerance:g}s pause >= corosync token {token:g}s", src)
    check = int(conf_value(text, "socket-check-timeout") or 0)
    if ping_timeout > 10 and check == 0:
        yield Finding(
            "HAC084",
            "warning",
            f"socket-check-timeout unset with ping-timeout {ping_timeout / 10:g}s: every DRBD "
            "(re)connect waits that long before replicating or resyncing",
            "set overrides: drbd.socket_check_timeout: 5",
            "DRBD-opts socket-check-timeout",
        )
