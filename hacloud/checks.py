"""Cross-layer invariants (best-practices §3.5), checked on the rendered artefacts.

Contract: :func:`run_checks` is pure and reads the CIB XML and node files of a bundle (not the
code that made them), so the same rules can judge a live cluster's configuration. It returns
one :class:`Finding` per rule and subject, severity ``ok``, ``warning`` or ``error``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from hacloud.model import Inventory
from hacloud.profiles import Profile
from hacloud.render import Bundle
from hacloud.spec import AwsMoveIpVip, AzureFencing, AzureLbVip, Spec


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


def fence_timeout(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: _Cib) -> Iterator[Finding]:
    timeout = _seconds(cib.prop("fencing-timeout", "stonith-timeout") or "60s")
    src = "best-practices §3.5 (2): fencing-timeout >= pcmk_reboot_timeout (AWS 600/600, Azure 900/900)"
    for dev in cib.stonith_devices():
        reboot = _seconds(_Cib.params(dev).get("pcmk_reboot_timeout"))
        if reboot > timeout:
            yield Finding(
                "HAC011",
                "error",
                f"stonith-timeout {timeout:g}s < {dev.get('id')} pcmk_reboot_timeout {reboot:g}s",
                f"set overrides: pacemaker.stonith_timeout: {int(reboot)} (or lower fencing.reboot_timeout)",
                src,
            )
            return
    yield _ok("HAC011", f"stonith-timeout {timeout:g}s covers every device's reboot timeout", src)


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
    sbd,
    drbd_policy,
    grouping,
    host_map,
    links,
    azure,
    overlay,
)


def run_checks(spec: Spec, inventory: Inventory, profile: Profile, bundle: Bundle) -> list[Finding]:
    cib = _Cib(ET.fromstring(bundle.cib))
    return [f for rule in RULES for f in rule(spec, inventory, profile, bundle, cib)]
