"""Corosync membership rules: consensus against token, cloud token floor (HAC001/HAC002),
redundant links (HAC050), the log directory each node's package made (HAC090)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, conf_value, first_node_file, node_file, ok


def consensus(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC001: consensus at least 1.2 x token; HAC002: a cloud token of at least 20 s."""
    text = first_node_file(b, "corosync.conf")
    token = int(conf_value(text, "token") or 0)
    cons = int(conf_value(text, "consensus") or 0)
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
        yield ok("HAC001", f"consensus {cons} ms >= 1.2 x token {token} ms", src)
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
            yield ok("HAC002", f"cloud corosync token {token} ms >= 20000 ms", src)


def links(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC050: two corosync links, so one network fault does not look like a node failure."""
    count = len(re.findall(r"^\s*interface\s*\{", first_node_file(b, "corosync.conf"), re.MULTILINE))
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
        yield ok("HAC050", f"{count} corosync links", src)


def corosync_log(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC090: each node's corosync logfile lies in the log directory its corosync package made."""
    from hacloud.render.files import COROSYNC_LOG_DIRS

    src = "corosync.conf(5) logfile; Debian corosync /var/log/corosync, RHEL/SUSE /var/log/cluster"
    for node in inv.nodes:
        text = node_file(b, node.name, "/etc/corosync/corosync.conf") or ""
        logfile = conf_value(re.sub(r"(?m)^\s*#.*$", "", text), "logfile") or ""
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
            yield ok("HAC090", f"{node.name}: corosync logs to {logfile} ({how})", src)
