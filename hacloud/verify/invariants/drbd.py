"""DRBD configuration rules: fencing policy, handlers, protocol and timeouts (HAC020-HAC023),
resources, volumes and their filesystems across the .res files and the CIB (HAC130-HAC134),
online verify (HAC085)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.drbdconf import Resource, parse_resources
from hacloud.verify.invariants.rule import Cib, Finding, conf_value, first_node_file, ok


def drbd_policy(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC020-HAC023: DRBD freezes I/O and fences through Pacemaker, replicates synchronously,
    and notices a dead peer before its connection timers give up."""
    text = first_node_file(b, "global_common.conf")
    yield _fencing_policy(text, cib)
    if b.targets.drbd == "9" and "after-resync-target" in text:
        yield Finding(
            "HAC021",
            "error",
            "DRBD 9 unfences in after-resync-target",
            'use `unfence-peer "/usr/lib/drbd/crm-unfence-peer.9.sh";`',
            "UG9 ('after-resync-target is wrong in some corner cases')",
        )
        return
    yield _handlers(text, b.targets.drbd == "9")
    yield from _protocol_and_timeouts(text)


def _fencing_policy(text: str, cib: Cib) -> Finding:
    """HAC020: stonith on, and DRBD's fencing policy resource-and-stonith."""
    stonith = (cib.prop("fencing-enabled", "stonith-enabled") or "true").lower() in ("true", "1", "yes")
    policy = conf_value(text, "fencing")
    src = "DRBD-opts; UG9 drbd-pacemaker.adoc; best-practices §3.5 (10)"
    if not stonith:
        return Finding(
            "HAC020",
            "error",
            "stonith is disabled",
            "never run a DRBD pair without fencing: set stonith-enabled=true",
            src,
        )
    if policy != "resource-and-stonith":
        return Finding(
            "HAC020",
            "error",
            f"DRBD fencing policy is {policy or 'unset'} with stonith on",
            "set `fencing resource-and-stonith;` so a disconnected primary freezes I/O",
            src,
        )
    return ok("HAC020", "DRBD fencing resource-and-stonith with stonith enabled", src)


def _handlers(text: str, drbd9: bool) -> Finding:
    """HAC021: a fence-peer handler and its unfence partner (unfence-peer on DRBD 9,
    after-resync-target on 8.4)."""
    if drbd9:
        handler = "unfence-peer" if "unfence-peer" in text and "crm-unfence-peer.9.sh" in text else ""
    else:
        handler = (
            "after-resync-target" if re.search(r"after-resync-target\s+\S*crm-unfence-peer", text) else ""
        )
    if not handler or "fence-peer" not in text:
        return Finding(
            "HAC021",
            "error",
            "no fence-peer/unfence handler pair in the DRBD config",
            "add crm-fence-peer and crm-unfence-peer handlers",
            "UG9 drbd-pacemaker.adoc",
        )
    return ok("HAC021", f"DRBD fence-peer and {handler} handlers present", "UG9 drbd-pacemaker.adoc")


def _protocol_and_timeouts(text: str) -> Iterator[Finding]:
    """HAC022: protocol C; HAC023: timeout below ping-int and connect-int."""
    protocol = conf_value(text, "protocol")
    if protocol != "C":
        yield Finding(
            "HAC022",
            "error",
            f"DRBD protocol {protocol}: acknowledged writes can be lost",
            "use `protocol C;` (synchronous, RPO 0)",
            "MS-NFS; drbd-formula",
        )
    else:
        yield ok("HAC022", "DRBD protocol C (synchronous)", "MS-NFS; drbd-formula")
    timeout, ping, connect = (int(conf_value(text, k) or 0) for k in ("timeout", "ping-int", "connect-int"))
    if timeout >= 10 * min(ping, connect):
        yield Finding(
            "HAC023",
            "error",
            f"DRBD timeout {timeout / 10:g}s is not below ping-int/connect-int",
            "lower drbd.timeout (unit 0.1 s) below drbd.ping_int and drbd.connect_int",
            "DRBD-opts",
        )
    else:
        yield ok("HAC023", "DRBD timeout < ping-int and connect-int", "DRBD-opts")


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


def drbd_volumes(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
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
        yield ok("HAC130", "every volume of every DRBD resource has a disk on both nodes", src)


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
        yield ok("HAC131", "DRBD minors and ports unique", src)


def _drbd_clones(resources: dict[str, Resource], cib: Cib, src: str) -> Iterator[Finding]:
    clones: dict[str, int] = {}
    for clone in cib.root.iter("clone"):
        for prim in clone.iter("primitive"):
            if prim.get("provider") == "linbit" and prim.get("type") == "drbd":
                res = Cib.params(prim).get("drbd_resource", "")
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
        yield ok("HAC132", f"one promotable clone per DRBD resource ({', '.join(resources)})", src)


def _filesystems(minor_of: dict[str, str], cib: Cib, src: str) -> Iterator[Finding]:
    mounts = [
        (p.get("id", ""), Cib.params(p).get("device", ""), Cib.params(p).get("directory", ""))
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
        yield ok("HAC133", "every filesystem sits on a DRBD volume", src)
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
        yield ok("HAC134", "no filesystem is nested in another DRBD resource's filesystem", src)


def drbd_verify_alg(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC085: without verify-alg `drbdadm verify` (and `hacloud verify`) cannot run."""
    alg = conf_value(first_node_file(b, "global_common.conf"), "verify-alg")
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
        yield ok("HAC085", f"verify-alg {alg}: `hacloud verify` can compare the disks", src)
