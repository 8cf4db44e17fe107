"""Fencing rules: delays and timeouts of the fence devices against the cluster's (HAC010-HAC014,
HAC100, HAC102), every node covered by a device (HAC040-HAC042), BMC secrets (HAC105)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AzureFencing, Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, Severity, conf_value, first_node_file, ok, seconds


def fence_delay(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC010: priority-fencing-delay at least twice the largest device delay."""
    pfd = seconds(cib.prop("priority-fencing-delay"))
    worst = max(
        (
            seconds(Cib.params(d).get("pcmk_delay_base")) + seconds(Cib.params(d).get("pcmk_delay_max"))
            for d in cib.stonith_devices()
        ),
        default=0.0,
    )
    src = "PX cluster-options.rst (priority-fencing-delay 'safely twice' the device delay); crmsh"
    if pfd < 2 * worst:
        yield Finding(
            "HAC010",
            "error",
            f"priority-fencing-delay {pfd:g}s < 2 x largest device delay {worst:g}s",
            f"set overrides: pacemaker.priority_fencing_delay: {int(2 * worst)} "
            "(or lower fencing.pcmk_delay_max)",
            src,
        )
    else:
        yield ok("HAC010", f"priority-fencing-delay {pfd:g}s >= 2 x device delay {worst:g}s", src)


def _action(cib: Cib) -> str:
    """The fence action the cluster requests (stonith-action / fencing-action, default reboot)."""
    action = cib.prop("fencing-action", "stonith-action") or "reboot"
    return "off" if action in ("off", "poweroff") else "reboot"


def fence_timeout(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC011: the cluster's fencing timeout covers every device's timeout for its action."""
    timeout = seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    knob = f"pcmk_{_action(cib)}_timeout"
    src = f"best-practices §3.5 (2): fencing-timeout >= {knob} (AWS 600/600, Azure 900/900)"
    for dev in cib.stonith_devices():
        used = seconds(Cib.params(dev).get(knob))
        if used > timeout:
            yield Finding(
                "HAC011",
                "error",
                f"stonith-timeout {timeout:g}s < {dev.get('id')} {knob} {used:g}s",
                f"set overrides: pacemaker.stonith_timeout: {int(used)} (or lower fencing.reboot_timeout)",
                src,
            )
            return
    yield ok("HAC011", f"stonith-timeout {timeout:g}s covers every device's {knob}", src)


def action_knobs(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """Per-action device knobs for an action the cluster never requests are dead configuration:
    under stonith-action=off a pcmk_reboot_timeout/_retries is ignored and the off action runs
    with stonith-timeout and 2 retries."""
    action = _action(cib)
    other = "reboot" if action == "off" else "off"
    src = "PX fencing.rst (pcmk_<action>_timeout, pcmk_<action>_retries); pacemaker-fenced metadata"
    for dev in cib.stonith_devices():
        params = Cib.params(dev)
        dead = [k for k in (f"pcmk_{other}_timeout", f"pcmk_{other}_retries") if k in params]
        if dead and not any(k in params for k in (f"pcmk_{action}_timeout", f"pcmk_{action}_retries")):
            yield Finding(
                "HAC100",
                "warning",
                f"{dev.get('id')} sets {', '.join(dead)} but the cluster fences with '{action}': "
                f"they are never used",
                f"set pcmk_{action}_timeout/pcmk_{action}_retries instead (`hacloud up` renders them)",
                src,
            )
            return
    yield ok("HAC100", f"fence devices tune the '{action}' action the cluster uses", src)


def sbd(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC012-HAC014: SBD's stonith-timeout, msgwait against the watchdog, and its start timeout."""
    text = first_node_file(b, "/sbd")
    if not text:
        return
    timeout = seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    watchdog = prof.num("sbd.watchdog_timeout")
    msgwait = prof.num("sbd.msgwait")
    corosync = first_node_file(b, "corosync.conf")
    tc = (int(conf_value(corosync, "token") or 0) + int(conf_value(corosync, "consensus") or 0)) / 1000
    need = max(1.2 * msgwait, 60) + tc
    src = "crmsh sbd.py; TRENTO 373DB8/68626E; MS-SLES"
    if timeout < need:
        yield Finding(
            "HAC012",
            "error",
            f"stonith-timeout {timeout:g}s < max(1.2 x msgwait, 60) + token + consensus = {need:g}s",
            f"set overrides: pacemaker.stonith_timeout_sbd: {int(need) + 1}",
            src,
        )
    else:
        yield ok("HAC012", f"stonith-timeout {timeout:g}s >= SBD minimum {need:g}s", src)
    if msgwait < 2 * watchdog:
        yield Finding(
            "HAC013",
            "error",
            f"SBD msgwait {msgwait}s < 2 x watchdog {watchdog}s",
            f"set overrides: sbd.msgwait: {2 * watchdog}",
            src,
        )
    else:
        yield ok("HAC013", f"SBD msgwait {msgwait}s >= 2 x watchdog {watchdog}s", src)
    delay = int(conf_value(text, "SBD_DELAY_START") or 0)
    start = int(conf_value(first_node_file(b, "sbd.service.d/hacloud.conf"), "TimeoutStartSec") or 0)
    if start <= delay:
        yield Finding(
            "HAC014",
            "error",
            f"sbd TimeoutStartSec {start}s <= SBD_DELAY_START {delay}s",
            "systemd would kill sbd at boot; re-render with hacloud (it sets 1.2 x delay)",
            src,
        )
    else:
        yield ok("HAC014", f"sbd TimeoutStartSec {start}s > SBD_DELAY_START {delay}s", src)


def sbd_device_timing(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """SBD devices must carry SBD's timing, not a power agent's: fence_sbd wants power_timeout >
    msgwait, an SBD-only cluster the SBD stonith-timeout (Azure: 210, not fence_azure_arm's 900),
    and a disk read needs no hour-long monitor interval (that one spares the ARM API)."""
    sbd = [d for d in cib.stonith_devices() if d.get("type") in ("fence_sbd", "external/sbd")]
    if not sbd:
        return
    src = "fence_sbd (power timeout must exceed msgwait); MS-SLES (SBD: stonith-timeout 210, monitor 600/15)"
    msgwait = prof.num("sbd.msgwait")
    rerender = "run `hacloud up`: it renders SBD devices with SBD's timing"
    found: list[tuple[Severity, str, str]] = []  # severity, message, remedy
    for dev in sbd:
        power = seconds(Cib.params(dev).get("power_timeout") or "30")
        if power <= msgwait:
            found.append(
                ("error", f"{dev.get('id')} power_timeout {power:g}s <= msgwait {msgwait}s", rerender)
            )
        for op in dev.iterfind("./operations/op[@name='monitor']"):
            if seconds(op.get("interval")) > 600:
                found.append(
                    (
                        "warning",
                        f"{dev.get('id')} is monitored every {op.get('interval')}: a lost SBD disk "
                        "goes unnoticed that long",
                        "set overrides: fencing.sbd_monitor_interval: 600 (or run `hacloud up`)",
                    )
                )
    timeout = seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    wanted = prof.num("pacemaker.stonith_timeout_sbd")
    if len(sbd) == len(cib.stonith_devices()) and timeout > wanted:
        found.append(
            (
                "warning",
                f"stonith-timeout {timeout:g}s with SBD the only fencing method, which needs {wanted}s: "
                "a fence that fails is retried only after the timeout",
                rerender,
            )
        )
    for severity, message, remedy in found:
        yield Finding("HAC102", severity, message, remedy, src)
    if not found:
        yield ok("HAC102", f"SBD devices use SBD timing (power_timeout > msgwait {msgwait}s)", src)


def host_map(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC040-HAC042: every node fenced by some device, no placeholder id, levels for several methods."""
    src = "MS-SLES; SAPHA PR #439; best-practices §3.5 (6)"
    covered: dict[str, int] = {n.name: 0 for n in inv.nodes}
    for dev in cib.stonith_devices():
        params = Cib.params(dev)
        hosts = [h for h in re.split(r"[\s,]+", params.get("pcmk_host_list", "")) if h]
        hosts += [
            e.split(":", 1)[0] for e in re.split(r"[;\s,]+", params.get("pcmk_host_map", "")) if ":" in e
        ]
        for host in hosts:
            if host in covered:
                covered[host] += 1
        if any("PLACEHOLDER" in e for e in params.get("pcmk_host_map", "").split(";")):
            yield Finding(
                "HAC041",
                "warning",
                f"{dev.get('id')} maps to a placeholder id",
                "render with --inventory once the instances exist",
                src,
            )
    missing = [n for n, c in covered.items() if not c]
    if missing:
        yield Finding(
            "HAC040",
            "error",
            f"no fencing device can fence {', '.join(missing)}",
            "add the node to pcmk_host_map/pcmk_host_list of a device",
            src,
        )
    else:
        yield ok("HAC040", "every node is covered by a fencing device", src)
    if len(spec.fencing) > 1 and not cib.root.findall(".//fencing-topology/fencing-level"):
        severity: Severity = "error" if any(isinstance(m, AzureFencing) for m in spec.fencing) else "warning"
        yield Finding(
            "HAC042",
            severity,
            "more than one fencing method per node without fencing levels",
            "set fencing_topology: true, or keep one method (Azure: agent or SBD, not both)",
            "Azure/sap-hana #739; MS-SLES",
        )


def bmc_secrets(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """Least privilege: a node holds its peer's BMC password, never its own (the device that
    fences a node is banned from that node, so it never needs it)."""
    from hacloud.render.fencing import FENCING_SECRET_DIR, secret_path

    src = "least privilege; the device fencing a node never runs on it (rsc_location -INFINITY)"
    holders = [node for node, files in b.files.items() if any(f.path == secret_path(node) for f in files)]
    if holders:
        yield Finding(
            "HAC105",
            "warning",
            f"{', '.join(holders)} hold their own BMC password, which they never use (the device that "
            "fences a node never runs on it): a compromised node gets a credential it does not need",
            "run `hacloud up`: it renders only the peer's password and removes the node's own",
            src,
        )
    elif any(f.path.startswith(FENCING_SECRET_DIR + "/") for files in b.files.values() for f in files):
        yield ok("HAC105", "each node holds only its peer's BMC password", src)
