"""Cross-layer invariants (best-practices §3.5), checked on the rendered artefacts.

Contract: :func:`run_checks` is pure and reads the CIB XML and node files of a bundle (not the
code that made them), so the same rules can judge a live cluster's configuration. It returns
one :class:`Finding` per rule and subject, severity ``ok``, ``warning`` or ``error``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from hacloud.render import Bundle
from hacloud.render.fencepath import DC_MARGIN, PING_TIMEOUT_MAX, FencePath, fence_path, freeze_tolerance
from hacloud.render.fencepath import Device as FenceDevice
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsMoveIpVip, AzureFencing, AzureLbVip, Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.drbdconf import Resource, parse_resources


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # ok | warning | error
    message: str
    remedy: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _seconds(text: str | None) -> float:
    """Pacemaker interval text (``90``, ``90s``, ``2min``, ``500ms``) in seconds."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|msec|s|sec|m|min|h|hr)?\s*", text)
    if not m:
        return 0.0
    value = float(m.group(1))
    return value * {"ms": 0.001, "msec": 0.001, "m": 60, "min": 60, "h": 3600, "hr": 3600}.get(
        m.group(2) or "s", 1.0
    )


@dataclass(frozen=True)
class _Cib:
    root: ET.Element

    def prop(self, *names: str) -> str | None:
        for name in names:
            for nv in self.root.iterfind("./configuration/crm_config/cluster_property_set/nvpair"):
                if nv.get("name") == name:
                    return nv.get("value")
        return None

    def stonith_devices(self) -> list[ET.Element]:
        return [p for p in self.root.iter("primitive") if p.get("class") == "stonith"]

    @staticmethod
    def params(prim: ET.Element) -> dict[str, str]:
        """The parameters as Pacemaker reads them: of a duplicated name, the first wins."""
        out: dict[str, str] = {}
        for nv in prim.iterfind("./instance_attributes/nvpair"):
            out.setdefault(nv.get("name", ""), nv.get("value", ""))
        return out


def _conf_value(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(key)}\s*[:=]?\s*([^;\n]+?)\s*;?\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def _file(bundle: Bundle, suffix: str) -> str:
    """The text of the first node's file ending in ``suffix``, without comments."""
    node = next(iter(bundle.files.values()))
    for f in node:
        if f.path.endswith(suffix):
            text = f.content.decode("utf-8", "replace")
            return re.sub(r"(?m)^\s*#.*$|\s+#.*$", "", text)
    return ""


Rule = Callable[[Spec, Inventory, Profile, Bundle, _Cib], Iterator[Finding]]


def _ok(code: str, message: str, source: str) -> Finding:
    return Finding(code, "ok", message, "", source)


def consensus(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    text = _file(b, "corosync.conf")
    token = int(_conf_value(text, "token") or 0)
    cons = int(_conf_value(text, "consensus") or 0)
    src = "corosync.conf(5) (consensus defaults to 1.2 x token); best-practices §3.3"
    if cons < 1.2 * token:
        yield Finding(
            "HAC001",
            "error",
            f"corosync consensus {cons} ms < 1.2 x token {token} ms",
            f"set overrides: corosync.consensus: {int(token * 1.2)}",
            src,
        )
    else:
        yield _ok("HAC001", f"consensus {cons} ms >= 1.2 x token {token} ms", src)
    if prof.name in ("aws", "azure"):
        src = "crmsh profiles.yml; MS-SLES; SAPHA-AWS"
        if token < 20000:
            yield Finding(
                "HAC002",
                "warning",
                f"corosync token {token} ms on a cloud is below 20000 ms",
                "cloud maintenance events pause VMs for seconds; use token 30000 (vendor docs)",
                src,
            )
        else:
            yield _ok("HAC002", f"cloud corosync token {token} ms >= 20000 ms", src)


def fence_delay(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    pfd = _seconds(cib.prop("priority-fencing-delay"))
    worst = max(
        (
            _seconds(_Cib.params(d).get("pcmk_delay_base")) + _seconds(_Cib.params(d).get("pcmk_delay_max"))
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
        yield _ok("HAC010", f"priority-fencing-delay {pfd:g}s >= 2 x device delay {worst:g}s", src)


def _action(cib: _Cib) -> str:
    """The fence action the cluster requests (stonith-action / fencing-action, default reboot)."""
    action = cib.prop("fencing-action", "stonith-action") or "reboot"
    return "off" if action in ("off", "poweroff") else "reboot"


def fence_timeout(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    timeout = _seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    knob = f"pcmk_{_action(cib)}_timeout"
    src = f"best-practices §3.5 (2): fencing-timeout >= {knob} (AWS 600/600, Azure 900/900)"
    for dev in cib.stonith_devices():
        used = _seconds(_Cib.params(dev).get(knob))
        if used > timeout:
            yield Finding(
                "HAC011",
                "error",
                f"stonith-timeout {timeout:g}s < {dev.get('id')} {knob} {used:g}s",
                f"set overrides: pacemaker.stonith_timeout: {int(used)} (or lower fencing.reboot_timeout)",
                src,
            )
            return
    yield _ok("HAC011", f"stonith-timeout {timeout:g}s covers every device's {knob}", src)


def action_knobs(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """Per-action device knobs for an action the cluster never requests are dead configuration:
    under stonith-action=off a pcmk_reboot_timeout/_retries is ignored and the off action runs
    with stonith-timeout and 2 retries."""
    action = _action(cib)
    other = "reboot" if action == "off" else "off"
    src = "PX fencing.rst (pcmk_<action>_timeout, pcmk_<action>_retries); pacemaker-fenced metadata"
    for dev in cib.stonith_devices():
        params = _Cib.params(dev)
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
    yield _ok("HAC100", f"fence devices tune the '{action}' action the cluster uses", src)


def sbd(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    text = _file(b, "/sbd")
    if not text:
        return
    timeout = _seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    watchdog = prof.num("sbd.watchdog_timeout")
    msgwait = prof.num("sbd.msgwait")
    corosync = _file(b, "corosync.conf")
    tc = (int(_conf_value(corosync, "token") or 0) + int(_conf_value(corosync, "consensus") or 0)) / 1000
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
        yield _ok("HAC012", f"stonith-timeout {timeout:g}s >= SBD minimum {need:g}s", src)
    if msgwait < 2 * watchdog:
        yield Finding(
            "HAC013",
            "error",
            f"SBD msgwait {msgwait}s < 2 x watchdog {watchdog}s",
            f"set overrides: sbd.msgwait: {2 * watchdog}",
            src,
        )
    else:
        yield _ok("HAC013", f"SBD msgwait {msgwait}s >= 2 x watchdog {watchdog}s", src)
    delay = int(_conf_value(text, "SBD_DELAY_START") or 0)
    start = int(_conf_value(_file(b, "sbd.service.d/hacloud.conf"), "TimeoutStartSec") or 0)
    if start <= delay:
        yield Finding(
            "HAC014",
            "error",
            f"sbd TimeoutStartSec {start}s <= SBD_DELAY_START {delay}s",
            "systemd would kill sbd at boot; re-render with hacloud (it sets 1.2 x delay)",
            src,
        )
    else:
        yield _ok("HAC014", f"sbd TimeoutStartSec {start}s > SBD_DELAY_START {delay}s", src)


def drbd_policy(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    text = _file(b, "global_common.conf")
    stonith = (cib.prop("fencing-enabled", "stonith-enabled") or "true").lower() in ("true", "1", "yes")
    policy = _conf_value(text, "fencing")
    src = "DRBD-opts; UG9 drbd-pacemaker.adoc; best-practices §3.5 (10)"
    if not stonith:
        yield Finding(
            "HAC020",
            "error",
            "stonith is disabled",
            "never run a DRBD pair without fencing: set stonith-enabled=true",
            src,
        )
    elif policy != "resource-and-stonith":
        yield Finding(
            "HAC020",
            "error",
            f"DRBD fencing policy is {policy or 'unset'} with stonith on",
            "set `fencing resource-and-stonith;` so a disconnected primary freezes I/O",
            src,
        )
    else:
        yield _ok("HAC020", "DRBD fencing resource-and-stonith with stonith enabled", src)
    if b.targets.drbd == "9":
        handler = "unfence-peer" if "unfence-peer" in text and "crm-unfence-peer.9.sh" in text else ""
        if "after-resync-target" in text:
            yield Finding(
                "HAC021",
                "error",
                "DRBD 9 unfences in after-resync-target",
                'use `unfence-peer "/usr/lib/drbd/crm-unfence-peer.9.sh";`',
                "UG9 ('after-resync-target is wrong in some corner cases')",
            )
            return
    else:
        handler = (
            "after-resync-target" if re.search(r"after-resync-target\s+\S*crm-unfence-peer", text) else ""
        )
    if not handler or "fence-peer" not in text:
        yield Finding(
            "HAC021",
            "error",
            "no fence-peer/unfence handler pair in the DRBD config",
            "add crm-fence-peer and crm-unfence-peer handlers",
            "UG9 drbd-pacemaker.adoc",
        )
    else:
        yield _ok("HAC021", f"DRBD fence-peer and {handler} handlers present", "UG9 drbd-pacemaker.adoc")
    protocol = _conf_value(text, "protocol")
    if protocol != "C":
        yield Finding(
            "HAC022",
            "error",
            f"DRBD protocol {protocol}: acknowledged writes can be lost",
            "use `protocol C;` (synchronous, RPO 0)",
            "MS-NFS; drbd-formula",
        )
    else:
        yield _ok("HAC022", "DRBD protocol C (synchronous)", "MS-NFS; drbd-formula")
    timeout, ping, connect = (int(_conf_value(text, k) or 0) for k in ("timeout", "ping-int", "connect-int"))
    if timeout >= 10 * min(ping, connect):
        yield Finding(
            "HAC023",
            "error",
            f"DRBD timeout {timeout / 10:g}s is not below ping-int/connect-int",
            "lower drbd.timeout (unit 0.1 s) below drbd.ping_int and drbd.connect_int",
            "DRBD-opts",
        )
    else:
        yield _ok("HAC023", "DRBD timeout < ping-int and connect-int", "DRBD-opts")


def grouping(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    src = "MS-NFS; best-practices §3.5 (7)"
    groups = list(cib.root.iter("group"))
    clones = [
        c
        for c in cib.root.iter("clone")
        if any(nv.get("name") == "promotable" and nv.get("value") == "true" for nv in c.iter("nvpair"))
    ]
    vip_types = {"IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb"}
    group = next((g for g in groups if any(p.get("type") in vip_types for p in g.iter("primitive"))), None)
    if group is None:
        yield Finding(
            "HAC030",
            "error",
            "the VIP is not in a group with the service",
            "group filesystem, service, VIP (and azure-lb) together",
            src,
        )
        return
    members = {p.get("type") for p in group.iter("primitive")}
    loose = [
        p.get("id")
        for p in cib.root.iterfind("./configuration/resources/primitive")
        if p.get("class") != "stonith"
    ]
    if "Filesystem" not in members or loose:
        yield Finding(
            "HAC030",
            "error",
            f"resources outside the service group: {loose or 'Filesystem'}",
            "put every filesystem, the service and the VIP in one group",
            src,
        )
    else:
        yield _ok("HAC030", f"filesystem, service and VIP grouped in {group.get('id')}", src)
    gid = group.get("id")
    for clone in clones:
        cid = clone.get("id")
        colo = any(
            c.get("rsc") == gid
            and c.get("with-rsc") == cid
            and c.get("with-rsc-role") in ("Promoted", "Master")
            and c.get("score") == "INFINITY"
            for c in cib.root.iter("rsc_colocation")
        )
        order = any(
            o.get("first") == cid
            and o.get("first-action") == "promote"
            and o.get("then") == gid
            and o.get("then-action", "start") == "start"
            for o in cib.root.iter("rsc_order")
        )
        if not (colo and order):
            yield Finding(
                "HAC031",
                "error",
                f"{gid} is not {'colocated with' if not colo else 'ordered after'} the Promoted {cid}",
                "colocate the group with the Promoted role (INFINITY) and order it after promote",
                src,
            )
        else:
            yield _ok("HAC031", f"{gid} colocated with Promoted {cid} and ordered after promote", src)


def _drbd_files(b: Bundle) -> dict[str, list[Resource]]:
    """node -> the DRBD resources its ``/etc/drbd.d/*.res`` files define."""
    return {
        node: [
            r
            for f in files
            if f.path.startswith("/etc/drbd.d/") and f.path.endswith(".res")
            for r in parse_resources(f.content.decode("utf-8", "replace"))
        ]
        for node, files in b.files.items()
    }


def drbd_volumes(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """DRBD resources and their volumes, across the .res files and the CIB (HAC130-HAC134)."""
    src = "drbd.conf(5) (volume sections); UG9 drbd-pacemaker.adoc; issue 15 item 13"
    files = _drbd_files(b)
    yield from _drbd_hosts(files, src)
    resources = {r.name: r for rs in files.values() for r in rs}
    yield from _drbd_numbers(resources, src)
    yield from _drbd_clones(resources, cib, src)
    minor_of = {
        f"/dev/drbd{v.minor}": name for name, r in resources.items() for h in r.hosts[:1] for v in h.volumes
    }
    yield from _filesystems(minor_of, cib, src)


def _drbd_hosts(files: dict[str, list[Resource]], src: str) -> Iterator[Finding]:
    bad = []
    for node, resources in files.items():
        for r in resources:
            layouts = {tuple((v.number, v.minor) for v in h.volumes) for h in r.hosts}
            if len(r.hosts) != 2 or len(layouts) != 1:
                bad.append(f"{node}: {r.name} does not define the same volumes for both hosts")
            bad += [
                f"{node}: {r.name} volume {v.number} on {h.name} has no "
                + ("disk" if not v.disk else "device minor" if v.minor is None else "meta-disk")
                for h in r.hosts
                for v in h.volumes
                if not (v.disk and v.minor is not None and v.meta_disk)
            ]
    views = {tuple(sorted((r.name, len(r.hosts[0].volumes)) for r in rs if r.hosts)) for rs in files.values()}
    if len(views) > 1:
        bad.append("the nodes' DRBD files define different resources or volume counts")
    if bad:
        yield Finding(
            "HAC130",
            "error",
            "; ".join(bad),
            "every volume of a DRBD resource needs device, disk and meta-disk on both nodes: "
            "name each volume's disk in nodes[].volumes (or volumes[].device) and render again",
            src,
        )
    else:
        yield _ok("HAC130", "every volume of every DRBD resource has a disk on both nodes", src)


def _drbd_numbers(resources: dict[str, Resource], src: str) -> Iterator[Finding]:
    minors: dict[int, str] = {}
    ports: dict[str, str] = {}
    clash = []
    for name, r in resources.items():
        for v in r.hosts[0].volumes if r.hosts else ():
            if v.minor is not None and minors.setdefault(v.minor, name) != name:
                clash.append(f"minor {v.minor} in {minors[v.minor]} and {name}")
        if ports.setdefault(r.port, name) != name:
            clash.append(f"port {r.port} in {ports[r.port]} and {name}")
    if clash:
        yield Finding(
            "HAC131",
            "error",
            "DRBD resources share " + ", ".join(clash) + ": drbdadm refuses the configuration",
            "give each volume its own `minor:` and each resource its own `port:` (on its first volume)",
            src,
        )
    else:
        yield _ok("HAC131", "DRBD minors and ports unique", src)


def _drbd_clones(resources: dict[str, Resource], cib: _Cib, src: str) -> Iterator[Finding]:
    clones: dict[str, int] = {}
    for clone in cib.root.iter("clone"):
        for prim in clone.iter("primitive"):
            if prim.get("provider") == "linbit" and prim.get("type") == "drbd":
                res = _Cib.params(prim).get("drbd_resource", "")
                clones[res] = clones.get(res, 0) + 1
    missing = [r for r in resources if clones.get(r, 0) == 0]
    doubled = [r for r, n in clones.items() if n > 1]
    unknown = [r for r in clones if r not in resources]
    if missing or doubled or unknown:
        parts = [f"no ocf:linbit:drbd clone for {', '.join(missing)}"] if missing else []
        parts += [f"several clones drive {', '.join(doubled)}"] if doubled else []
        parts += [f"a clone names {', '.join(unknown)}, which no .res file defines"] if unknown else []
        yield Finding(
            "HAC132",
            "error",
            "; ".join(parts),
            "one promotable ocf:linbit:drbd clone per DRBD resource (not per volume): it promotes, "
            "demotes and fences all of the resource's volumes at once",
            src,
        )
    else:
        yield _ok("HAC132", f"one promotable clone per DRBD resource ({', '.join(resources)})", src)


def _filesystems(minor_of: dict[str, str], cib: _Cib, src: str) -> Iterator[Finding]:
    mounts = [
        (p.get("id", ""), _Cib.params(p).get("device", ""), _Cib.params(p).get("directory", ""))
        for p in cib.root.iter("primitive")
        if p.get("type") == "Filesystem"
    ]
    orphans = [f"{fid} ({dev})" for fid, dev, _ in mounts if dev not in minor_of]
    if orphans:
        yield Finding(
            "HAC133",
            "error",
            f"filesystems on no DRBD volume: {', '.join(orphans)}",
            "mount /dev/drbdN of a volume the .res files define (render again from the spec)",
            src,
        )
    else:
        yield _ok("HAC133", "every filesystem sits on a DRBD volume", src)
    split = [
        f"{inner} ({minor_of.get(idev)}) is mounted inside {outer} ({minor_of.get(odev)})"
        for _, odev, outer in mounts
        for _, idev, inner in mounts
        if inner != outer
        and inner.startswith(outer.rstrip("/") + "/")
        and minor_of.get(idev) != minor_of.get(odev)
    ]
    if split:
        yield Finding(
            "HAC134",
            "warning",
            "one filesystem stack spans several DRBD resources: "
            + "; ".join(split)
            + " (writes across resources are not ordered, and a fence constraint or a resync "
            "covers one resource at a time)",
            "give the volumes of one application the same `resource:` (one DRBD resource, several "
            "volumes), unless they are truly independent",
            src,
        )
    else:
        yield _ok("HAC134", "no filesystem is nested in another DRBD resource's filesystem", src)


def host_map(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    src = "MS-SLES; SAPHA PR #439; best-practices §3.5 (6)"
    covered: dict[str, int] = {n.name: 0 for n in inv.nodes}
    for dev in cib.stonith_devices():
        params = _Cib.params(dev)
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
        yield _ok("HAC040", "every node is covered by a fencing device", src)
    if len(spec.fencing) > 1 and not cib.root.findall(".//fencing-topology/fencing-level"):
        severity = "error" if any(isinstance(m, AzureFencing) for m in spec.fencing) else "warning"
        yield Finding(
            "HAC042",
            severity,
            "more than one fencing method per node without fencing levels",
            "set fencing_topology: true, or keep one method (Azure: agent or SBD, not both)",
            "Azure/sap-hana #739; MS-SLES",
        )


def links(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    count = len(re.findall(r"^\s*interface\s*\{", _file(b, "corosync.conf"), re.MULTILINE))
    src = "UG9 drbd-pacemaker.adoc; TRENTO 32CFC6 (>= 2 links for DRBD resource-level fencing)"
    if count < 2:
        yield Finding(
            "HAC050",
            "warning",
            "one corosync link: a single network fault looks like a node failure",
            "give each node a second address on an independent network (nodes[].links)",
            src,
        )
    else:
        yield _ok("HAC050", f"{count} corosync links", src)


def azure(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    if not isinstance(spec.vip, AzureLbVip):
        return
    src = "MS-NFS ('Enabling TCP timestamps will cause the health probes to fail')"
    sysctl = _file(b, "90-hacloud.conf")
    if not re.search(r"^net\.ipv4\.tcp_timestamps\s*=\s*0$", sysctl, re.MULTILINE):
        yield Finding(
            "HAC060",
            "error",
            "net.ipv4.tcp_timestamps is not 0 behind an Azure load balancer",
            "set overrides: sysctl.net.ipv4.tcp_timestamps: 0",
            src,
        )
    else:
        yield _ok("HAC060", "net.ipv4.tcp_timestamps = 0", src)
    lb = [p for p in cib.root.iter("primitive") if p.get("type") == "azure-lb"]
    port = _Cib.params(lb[0]).get("port") if lb else None
    if port != str(spec.vip.probe_port):
        yield Finding(
            "HAC061",
            "error",
            f"azure-lb listens on {port}, the probe uses {spec.vip.probe_port}",
            "make vip.probe_port and the azure-lb port equal",
            "STAF-const; best-practices §3.5 (8)",
        )
    else:
        yield _ok("HAC061", f"azure-lb port = probe port {port}", "best-practices §3.5 (8)")
    # a drop-in pair: the load balancer is Terraform's, and the VIP is one of its frontends
    fronts = [
        a for key in ("lb_frontend", "lb_frontends") for a in inv.network.extra.get(key, "").split(",") if a
    ]
    src = "MS-SLES (the load balancer's frontend IP is the cluster's virtual IP)"
    if fronts and str(spec.vip.address) not in fronts:
        yield Finding(
            "HAC062",
            "error",
            f"vip.address {spec.vip.address} is no frontend of the load balancer "
            f"(frontends: {', '.join(fronts)}): clients would never reach the service",
            "set vip.address to the load balancer's frontend address, or give the load balancer a "
            "frontend at vip.address in Terraform",
            src,
        )
    elif fronts:
        yield _ok("HAC062", f"vip.address {spec.vip.address} is the load balancer's frontend", src)


def overlay(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """The overlay IP against the network the inventory reports (on a drop-in pair the
    provider's own validation never saw the VPC)."""
    import ipaddress

    vip = spec.vip
    if not isinstance(vip, AwsMoveIpVip):
        return
    src = 'best-practices AWS "Overlay IP": a /32 outside the VPC CIDR (scalingbits.com)'
    cidr = inv.network.vpc_cidr
    if cidr:
        if vip.address in ipaddress.ip_network(cidr, strict=False):
            yield Finding(
                "HAC070",
                "error",
                f"overlay IP {vip.address} is inside the VPC CIDR {cidr}: the VPC routes it locally, "
                "the route table entry never applies",
                "choose vip.address outside every VPC CIDR (e.g. from 192.168.0.0/16 when the VPC is 10/8)",
                src,
            )
        else:
            yield _ok("HAC070", f"overlay IP {vip.address} is outside the VPC CIDR {cidr}", src)
    known = set(inv.network.route_tables)
    unknown = [r for r in vip.route_tables if known and r not in known]
    if unknown:
        yield Finding(
            "HAC071",
            "warning",
            f"vip.route_tables names {', '.join(unknown)}, which the inventory's network does not list "
            f"({', '.join(sorted(known))})",
            "check the route table ids (a typo leaves clients without a route to the VIP)",
            src,
        )


# ---------------------------------------------------------------- values the nodes supply


def _node_file(b: Bundle, node: str, path: str) -> str | None:
    """The text of the file at ``path`` rendered for ``node``; None when none is rendered."""
    return next((f.content.decode("utf-8", "replace") for f in b.files.get(node, ()) if f.path == path), None)


def corosync_log(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """HAC090: each node's corosync logfile lies in the log directory its corosync package made."""
    from hacloud.render.files import COROSYNC_LOG_DIRS

    src = "corosync.conf(5) logfile; Debian corosync /var/log/corosync, RHEL/SUSE /var/log/cluster"
    for node in inv.nodes:
        text = _node_file(b, node.name, "/etc/corosync/corosync.conf") or ""
        logfile = _conf_value(re.sub(r"(?m)^\s*#.*$", "", text), "logfile") or ""
        folder = logfile.rpartition("/")[0]
        known = node.facts.corosync_log_dir
        family = node.facts.os_family or b.targets.os_family
        want = (known or COROSYNC_LOG_DIRS.get(family, "")).rstrip("/")
        if logfile and folder != want:
            where = f"{node.name} has {want}" if known else f"{family} packages use {want}"
            yield Finding(
                "HAC090",
                "error",
                f"{node.name}: corosync logs to {logfile}, but {where}: corosync will not start "
                "without the directory",
                "render with the node's facts (`hacloud up` reads them), or create the directory the "
                "package's logrotate file names",
                src,
            )
        elif logfile:
            how = "read from the node" if known else f"the {family} package default; read at deploy"
            yield _ok("HAC090", f"{node.name}: corosync logs to {logfile} ({how})", src)


def vip_interface(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """HAC091: aws-vpc-move-ip adds the overlay IP to the interface that holds the node's address."""
    vip = spec.vip
    if not isinstance(vip, AwsMoveIpVip):
        return
    src = "aws-vpc-move-ip meta-data (interface, default eth0); Debian/Ubuntu Nitro AMIs name it ens5"
    agent = next((p for p in cib.root.iter("primitive") if p.get("type") == "aws-vpc-move-ip"), None)
    rendered = _Cib.params(agent).get("interface", "") if agent is not None else ""
    found = {n.name: n.facts.primary_interface for n in inv.nodes if n.facts.primary_interface}
    wrong = {n: i for n, i in found.items() if i != rendered}
    if wrong:
        named = ", ".join(f"{n} {i}" for n, i in sorted(wrong.items()))
        yield Finding(
            "HAC091",
            "error" if not vip.interface else "warning",
            f"aws-vpc-move-ip uses interface {rendered}, but the node's address is on {named}: the "
            "route moves, then `ip addr add` fails (or the route names the wrong ENI)",
            "drop vip.interface to use the discovered one, or set it to the interface holding the "
            "node's address",
            src,
        )
    elif len(found) < len(inv.nodes) and not vip.interface:
        yield Finding(
            "HAC091",
            "warning",
            f"the nodes' primary interface is not known yet: rendered the agent's default {rendered}",
            "`hacloud up` reads it from the nodes; to review the final value, render with "
            "--inventory from a deployed pair or set vip.interface",
            src,
        )
    else:
        how = "set in the spec" if vip.interface else "read from the nodes"
        yield _ok("HAC091", f"aws-vpc-move-ip interface {rendered} ({how})", src)


def _service_op(cib: _Cib, name: str) -> float | None:
    group = next(iter(cib.root.iter("group")), None)
    if group is None:
        return None
    vip_types = {"IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb", "Filesystem"}
    prims = [p for p in group.iter("primitive") if p.get("type") not in vip_types]
    for op in prims[0].iter("op") if prims else ():
        if op.get("name") == name:
            return _seconds(op.get("timeout"))
    return None


def service_timeouts(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """HAC092 (start) / HAC093 (stop): the service's operation timeouts are never below the limit
    the node's own unit (TimeoutStartSec/TimeoutStopSec) or agent meta-data sets."""
    from hacloud.render.resources import service_limits

    limits = service_limits(spec, inv)
    src = "systemd.service(5) TimeoutStartSec/TimeoutStopSec; OCF agent meta-data; PX start-failure-is-fatal"
    if not limits:
        if spec.service.kind != "demo":
            yield _ok("HAC092", "the service's own start/stop limits are read from the nodes at deploy", src)
        return
    for code, action in (("HAC092", "start"), ("HAC093", "stop")):
        timeout = _service_op(cib, action) or 0.0
        worst = [getattr(x, action) for x in limits]
        what = limits[0].service
        chosen = getattr(spec.service, f"{action}_timeout", None)
        if any(w is None for w in worst) and chosen:
            yield _ok(code, f"{what} sets no {action} limit; service.{action}_timeout {chosen}s chosen", src)
            continue
        if any(w is None for w in worst):
            consequence = (
                "a start that outlasts it fails for good on that node (start-failure-is-fatal)"
                if action == "start"
                else "a stop that outlasts it fences the node"
            )
            yield Finding(
                code,
                "warning",
                f"{what} sets no {action} limit (infinity): Pacemaker's {action} timeout {timeout:g}s "
                f"is the only one; {consequence}",
                f"set service.{action}_timeout to the longest {action} you accept (crash recovery)",
                src,
            )
            continue
        need = max(w for w in worst if w is not None)
        if timeout < need:
            yield Finding(
                code,
                "error",
                f"service {action} timeout {timeout:g}s is below the {need}s that {what} allows itself: "
                + (
                    "a slow start (crash recovery after a failover) fails for good on that node"
                    if action == "start"
                    else "Pacemaker gives up before systemd/the agent does, and a failed stop fences the node"
                ),
                f"raise service.{action}_timeout to at least {need} (or drop it: hacloud derives it)",
                src,
            )
        else:
            yield _ok(code, f"service {action} timeout {timeout:g}s >= {what}'s {need}s", src)


# Units that are umbrellas on Debian/Ubuntu: Type=oneshot, ExecStart=/bin/true, RemainAfterExit,
# so they stay active when the server they group dies (postgresql-common's postgresql.service).
# RHEL's postgresql.service is the server itself.
UMBRELLA_UNITS = {"postgresql.service": "postgresql@VERSION-CLUSTER.service (`pg_lsclusters` lists them)"}


def umbrella_unit(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """HAC094: a systemd service must be a unit whose state follows the server's process."""
    from hacloud.render.resources import service_limits, service_ref
    from hacloud.spec.model import SystemdService

    if not isinstance(spec.service, SystemdService):
        return
    unit = (service_ref(spec) or "").removeprefix("systemd:")
    src = "systemd.service(5) (Type=oneshot + RemainAfterExit=yes stays active); Debian postgresql-common"
    limits = service_limits(spec, inv)
    if limits:  # the nodes answered for this unit: their systemd decides
        umbrella = any(x.stays_active for x in limits)
    else:  # not read yet: by name, unless the nodes are known to be RHEL/SUSE (a real server unit)
        families = {n.facts.os_family for n in inv.nodes if n.facts.os_family}
        umbrella = unit in UMBRELLA_UNITS and not (families and families <= {"rhel", "suse"})
    if umbrella:
        instead = UMBRELLA_UNITS.get(unit, "the unit that runs the server process")
        yield Finding(
            "HAC094",
            "warning",
            f"{unit} is an umbrella unit (oneshot, RemainAfterExit) on "
            + ("the nodes" if limits else "Debian/Ubuntu")
            + ": it stays active when the server dies, so Pacemaker never notices a failure",
            f"set service.unit to the instance unit, e.g. {instead}"
            + ("" if limits else "; on RHEL/SUSE postgresql.service is the server itself"),
            src,
        )
    else:
        yield _ok("HAC094", f"{unit} is not a known umbrella unit", src)


def deprecated_options(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """Options Pacemaker 3.0.0 deprecated, set on a cluster that runs it."""
    src = "Pacemaker ChangeLog 3.0.0; PX cluster-options.rst, operations.rst"
    if b.targets.pacemaker < (3, 0, 0):
        return
    names = ["concurrent-fencing"] if cib.prop("concurrent-fencing") is not None else []
    op_defaults = cib.root.iterfind("./configuration/op_defaults/meta_attributes/nvpair")
    names += [nv.get("name", "") for nv in op_defaults if nv.get("name") == "record-pending"]
    version = ".".join(map(str, b.targets.pacemaker))
    if names:
        yield Finding(
            "HAC101",
            "warning",
            f"{', '.join(names)} set for Pacemaker {version}, which deprecated them "
            "(concurrent fencing is the default since 3.0.0, pending operations are always recorded)",
            "run `hacloud up`: it no longer renders them and removes them from the CIB",
            src,
        )
    else:
        yield _ok("HAC101", f"no option Pacemaker {version} deprecated", src)


def sbd_device_timing(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """SBD devices must carry SBD's timing, not a power agent's: fence_sbd wants power_timeout >
    msgwait, an SBD-only cluster the SBD stonith-timeout (Azure: 210, not fence_azure_arm's 900),
    and a disk read needs no hour-long monitor interval (that one spares the ARM API)."""
    sbd = [d for d in cib.stonith_devices() if d.get("type") in ("fence_sbd", "external/sbd")]
    if not sbd:
        return
    src = "fence_sbd (power timeout must exceed msgwait); MS-SLES (SBD: stonith-timeout 210, monitor 600/15)"
    msgwait = prof.num("sbd.msgwait")
    rerender = "run `hacloud up`: it renders SBD devices with SBD's timing"
    found: list[tuple[str, str, str]] = []  # severity, message, remedy
    for dev in sbd:
        power = _seconds(_Cib.params(dev).get("power_timeout") or "30")
        if power <= msgwait:
            found.append(
                ("error", f"{dev.get('id')} power_timeout {power:g}s <= msgwait {msgwait}s", rerender)
            )
        for op in dev.iterfind("./operations/op[@name='monitor']"):
            if _seconds(op.get("interval")) > 600:
                found.append(
                    (
                        "warning",
                        f"{dev.get('id')} is monitored every {op.get('interval')}: a lost SBD disk "
                        "goes unnoticed that long",
                        "set overrides: fencing.sbd_monitor_interval: 600 (or run `hacloud up`)",
                    )
                )
    timeout = _seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
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
        yield _ok("HAC102", f"SBD devices use SBD timing (power_timeout > msgwait {msgwait}s)", src)


def azure_rhel_delays(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """fence_azure_arm on RHEL follows Microsoft's RHEL guide: priority-fencing-delay alone (no
    random device delay) and pcmk_monitor_timeout=120; SUSE's values are for SLES."""
    arm = [d for d in cib.stonith_devices() if d.get("type") == "fence_azure_arm"]
    if not arm or b.targets.os_family != "rhel":
        return
    src = "MS-RHEL (priority-fencing-delay 15 without pcmk_delay_max, pcmk_monitor_timeout=120)"
    delayed = [d.get("id", "") for d in arm if "pcmk_delay_max" in _Cib.params(d)]
    untimed = [d.get("id", "") for d in arm if "pcmk_monitor_timeout" not in _Cib.params(d)]
    if delayed:
        yield Finding(
            "HAC103",
            "warning",
            f"{', '.join(delayed)} on RHEL nodes use pcmk_delay_max: a random delay on top of "
            "priority-fencing-delay slows every failover",
            "run `hacloud up` (it applies the azure profile's rhel variant), or set overrides: "
            "fencing.pcmk_delay_max: 0 and pacemaker.priority_fencing_delay: 15",
            src,
        )
    if untimed:
        yield Finding(
            "HAC103",
            "warning",
            f"{', '.join(untimed)} on RHEL nodes have no pcmk_monitor_timeout",
            "run `hacloud up`, or set overrides: fencing.pcmk_monitor_timeout: 120",
            src,
        )
    if not delayed and not untimed:
        yield _ok(
            "HAC103", "fence_azure_arm on RHEL: priority-fencing-delay alone, pcmk_monitor_timeout set", src
        )


def azure_cloud(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """fence_azure_arm talks to the cloud of the cluster's ARM endpoint (cloud=, none = public)."""
    from hacloud.spec.azurecloud import PUBLIC_ENDPOINT, cloud_of

    options = getattr(spec.provider, "options", None)
    endpoint = str(getattr(options, "arm_endpoint", "") or "")
    methods = [m for m in spec.fencing if isinstance(m, AzureFencing)]
    arm = [d for d in cib.stonith_devices() if d.get("type") == "fence_azure_arm"]
    if not arm:
        return
    wanted = next((m.cloud for m in methods if m.cloud), None) or cloud_of(endpoint or PUBLIC_ENDPOINT)
    src = "fence_azure_arm cloud= (fence-agents azure_fence.py); Azure SDK get_arm_endpoints"
    for dev in arm:
        cloud = _Cib.params(dev).get("cloud", "public")
        if wanted and cloud != wanted:
            yield Finding(
                "HAC104",
                "error",
                f"{dev.get('id')} talks to Azure {cloud}, the cluster's ARM endpoint "
                f"{endpoint or PUBLIC_ENDPOINT} is Azure {wanted}: every fence would fail",
                f"run `hacloud up` (it renders cloud={wanted})"
                if wanted != "public"
                else "run `hacloud up` (it renders no cloud= for public Azure)",
                src,
            )
            return
    yield _ok("HAC104", f"fence_azure_arm talks to Azure {wanted or 'public'}", src)


def bmc_secrets(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """Least privilege: a node holds its peer's BMC password, never its own (the device that
    fences a node is banned from that node, so it never needs it)."""
    from hacloud.render.resources import FENCING_SECRET_DIR, secret_path

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
        yield _ok("HAC105", "each node holds only its peer's BMC password", src)


# ---------------------------------------------------------------- DRBD data safety (HAC080-HAC089)

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


def rendered_fence_path(b: Bundle, cib: _Cib) -> FencePath:
    """The fence path as the rendered corosync.conf and CIB define it (not as the renderer
    meant it): token + consensus, priority-fencing-delay, fencing-timeout, action, devices."""
    corosync = _file(b, "corosync.conf")
    return fence_path(
        int(_conf_value(corosync, "token") or 0),
        int(_conf_value(corosync, "consensus") or 0),
        _seconds(cib.prop("priority-fencing-delay")),
        _seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s"),
        cib.prop("fencing-action", "stonith-action") or "reboot",
        (
            FenceDevice(_device_target(params), params)
            for params in (_Cib.params(d) for d in cib.stonith_devices())
        ),
    )


def drbd_fence_peer_timeout(
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib
) -> Iterator[Finding]:
    """HAC080/HAC081: crm-fence-peer must keep I/O frozen for the whole fence path."""
    handler = _fence_peer_args(_file(b, "global_common.conf"))
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
        yield _ok("HAC080", f"DRBD fence-peer --timeout {timeout}s >= fence path {path.total:g}s", src)
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
        yield _ok("HAC081", f"DRBD fence-peer --dc-timeout {dc_timeout}s > --timeout {timeout}s", src)


# after-sb policies that never throw data away on their own (DRBD-opts after-sb-*pri)
_SAFE_SB = {
    "after-sb-0pri": {"disconnect", "discard-zero-changes"},
    "after-sb-1pri": {"disconnect"},
    "after-sb-2pri": {"disconnect"},
}


def drbd_split_brain_policy(
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib
) -> Iterator[Finding]:
    """HAC082: automatic split-brain recovery discards one side's acknowledged writes."""
    text = _file(b, "global_common.conf")
    src = "DRBD-opts after-sb-0pri/1pri/2pri; UG9 ('configuring for potential automatic data loss')"
    risky = [
        f"{key} {value}"
        for key, safe in _SAFE_SB.items()
        if (value := _conf_value(text, key) or "disconnect") not in safe
    ]
    if not risky:
        yield _ok("HAC082", "after a split brain DRBD disconnects and waits for the operator", src)
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
    spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib
) -> Iterator[Finding]:
    """HAC083/HAC084: DRBD must not give up on a peer that corosync still counts alive."""
    text = _file(b, "global_common.conf")
    token = int(_conf_value(_file(b, "corosync.conf"), "token") or 0) / 1000
    ping_timeout = int(_conf_value(text, "ping-timeout") or 5)
    timeout = int(_conf_value(text, "timeout") or 60)
    ko = int(_conf_value(text, "ko-count") or 7)
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
        yield _ok("HAC083", f"DRBD tolerates a {tolerance:g}s pause >= corosync token {token:g}s", src)
    check = int(_conf_value(text, "socket-check-timeout") or 0)
    if ping_timeout > 10 and check == 0:
        yield Finding(
            "HAC084",
            "warning",
            f"socket-check-timeout unset with ping-timeout {ping_timeout / 10:g}s: every DRBD "
            "(re)connect waits that long before replicating or resyncing",
            "set overrides: drbd.socket_check_timeout: 5",
            "DRBD-opts socket-check-timeout",
        )


def drbd_verify_alg(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """HAC085: without verify-alg `drbdadm verify` (and `hacloud verify`) cannot run."""
    alg = _conf_value(_file(b, "global_common.conf"), "verify-alg")
    src = "DRBD-opts verify-alg ('must be set ... before online verify can be used')"
    if not alg:
        yield Finding(
            "HAC085",
            "warning",
            "no verify-alg: online verify cannot run, silent divergence between the disks goes unseen",
            "render with hacloud (verify-alg sha256, spec drbd.verify_alg)",
            src,
        )
    else:
        yield _ok("HAC085", f"verify-alg {alg}: `hacloud verify` can compare the disks", src)


def _aws_profiles(text: str) -> dict[str, dict[str, str]]:
    """The profiles of an AWS CLI config file (``[default]``, ``[profile NAME]``) and their keys."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        section = re.fullmatch(r"\[\s*(?:profile\s+)?([^\]\s]+)\s*\]", line)
        if section:
            current = out.setdefault(section.group(1), {})
        elif current is not None and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = value
    return out


def aws_cli(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """Every AWS CLI agent in the CIB finds its profile (and a region) in /root/.aws/config on
    every node, and every AWS region the cluster names is the one its nodes live in."""
    from hacloud.render.files import AWS_CLI_AGENTS, AWS_CONFIG_PATH

    agents = [
        p for p in cib.root.iter("primitive") if p.get("class") == "ocf" and p.get("type") in AWS_CLI_AGENTS
    ]
    src = (
        "resource-agents awseip/aws-vpc-move-ip meta-data (`profile`: a profile of ~/.aws/config, "
        "default 'default'; the agents run `aws --profile`); AWS CLI configuration files"
    )
    regions: dict[str, set[str]] = {}
    bad: list[Finding | None] = []
    for node in b.files:
        text = _node_file(b, node, AWS_CONFIG_PATH)
        profiles = _aws_profiles(text or "")
        for name, keys in profiles.items():
            if keys.get("region"):
                regions.setdefault(keys["region"], set()).add(f"{AWS_CONFIG_PATH} [{name}] on {node}")
        bad += [_aws_cli_profile(agent, node, text, profiles, src) for agent in agents]
    found = [f for f in bad if f is not None]
    yield from found
    if agents and not found:
        yield _ok("HAC110", f"{AWS_CONFIG_PATH} defines a region for every AWS CLI agent's profile", src)
    yield from _aws_regions(inv, cib, regions)


def _aws_cli_profile(
    agent: ET.Element, node: str, text: str | None, profiles: dict[str, dict[str, str]], src: str
) -> Finding | None:
    from hacloud.render.files import AWS_CONFIG_PATH

    want = _Cib.params(agent).get("profile") or "default"
    if want not in profiles:
        where = "no such file" if text is None else f"no [{want}] profile in it"
        return Finding(
            "HAC110",
            "error",
            f"{agent.get('id')} ({agent.get('type')}) runs `aws --profile {want}` on {node}, but "
            f"{AWS_CONFIG_PATH} has {where}: the AWS CLI refuses the call and the VIP never starts",
            "re-render and deploy with hacloud (it writes the file wherever an AWS CLI agent runs), "
            f"or add a [{want}] profile with the region to {AWS_CONFIG_PATH}",
            src,
        )
    if not profiles[want].get("region"):
        return Finding(
            "HAC111",
            "warning",
            f"{AWS_CONFIG_PATH} [{want}] on {node} names no region: AWS CLI v2 asks the instance "
            "metadata for it, AWS CLI v1 (SLES aws-cli) stops with 'You must specify a region'",
            "give the fence_aws method a `region:` (hacloud writes it into the file)",
            src,
        )
    return None


def _aws_regions(inv: Inventory, cib: _Cib, regions: dict[str, set[str]]) -> Iterator[Finding]:
    for dev in cib.stonith_devices():
        if dev.get("type") == "fence_aws" and _Cib.params(dev).get("region"):
            regions.setdefault(_Cib.params(dev)["region"], set()).add(f"{dev.get('id')} region")
    if inv.provider == "aws" and inv.network.extra.get("region"):
        regions.setdefault(inv.network.extra["region"], set()).add("the nodes (provider.options.region)")
    if not regions:
        return
    src = "fence-agents fence_aws (instances are looked up by id in `region` only); AWS CLI region"
    if len(regions) > 1:
        said = "; ".join(f"{r}: {', '.join(sorted(w))}" for r, w in sorted(regions.items()))
        yield Finding(
            "HAC112",
            "error",
            f"the cluster names more than one AWS region ({said}): an agent asking the wrong region "
            "finds no instance, route or address, so fencing or the VIP fails",
            "use one region: drop fencing[].region (it defaults to provider.options.region) and re-render",
            src,
        )
    else:
        yield _ok("HAC112", f"one AWS region: {next(iter(regions))}", src)


_NVPAIR_SETS = ("instance_attributes", "meta_attributes", "cluster_property_set", "utilization")


def duplicate_params(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    """A name twice in one attribute set: Pacemaker uses the first, a reader may take the last,
    so the CIB no longer means one thing (a crafted value once added a second pcmk_host_list)."""
    src = "Pacemaker Explained, nvpair: names are unique within a set; issue 16"
    found = False
    for tag in _NVPAIR_SETS:
        for attrs in cib.root.iter(tag):
            names = [nv.get("name", "") for nv in attrs.iterfind("nvpair")]
            for name in sorted({n for n in names if names.count(n) > 1}):
                found = True
                yield Finding(
                    "HAC120",
                    "error",
                    f"{attrs.get('id')} sets {name!r} {names.count(name)} times (Pacemaker uses the first)",
                    "give every parameter once; a value holding quotes or newlines must not reach the CIB "
                    "unescaped (report the input that produced it)",
                    src,
                )
    if not found:
        yield _ok("HAC120", "no attribute set names a parameter twice", src)


RULES: tuple[Rule, ...] = (
    duplicate_params,
    consensus,
    fence_delay,
    fence_timeout,
    action_knobs,
    sbd,
    drbd_policy,
    grouping,
    drbd_volumes,
    host_map,
    links,
    azure,
    overlay,
    corosync_log,
    vip_interface,
    service_timeouts,
    umbrella_unit,
    deprecated_options,
    sbd_device_timing,
    azure_rhel_delays,
    azure_cloud,
    bmc_secrets,
    drbd_fence_peer_timeout,
    drbd_split_brain_policy,
    drbd_freeze_tolerance,
    drbd_verify_alg,
    aws_cli,
)


def run_checks(spec: Spec, inventory: Inventory, profile: Profile, bundle: Bundle) -> list[Finding]:
    cib = _Cib(ET.fromstring(bundle.cib))
    return [f for rule in RULES for f in rule(spec, inventory, profile, bundle, cib)]
