"""How the scripted nodes (node.py) answer each command the deploy engine runs: one handler per
command shape, reading and changing the model as the real tool would (see node.py for where
each answer's text comes from). A command no pattern matches is unexpected: node.py fails.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from doubles.node import BUSY, CURL_REFUSED, PROBES, SYNCED_GI, Disk, File, fixture
from hacloud.deploy.facts import REQUIRED
from hacloud.deploy.query.drbd import READ_COMMAND
from hacloud.deploy.remote import Result
from hacloud.render.files import LINKS_SCRIPT

if TYPE_CHECKING:
    from doubles.node import ScriptedNode

Handler = Callable[["ScriptedNode", re.Match[str]], Result]


def ok(stdout: str = "") -> Result:
    return Result(0, stdout, "")


def _facts(node: ScriptedNode, m: re.Match[str]) -> Result:
    """The facts script's output (hacloud.deploy.facts.facts_script) for the modelled node.
    Line formats: os-release ID, `command -v`, `pacemakerd --version` ("Pacemaker X.Y.Z"),
    /proc/drbd's first line ("version: 9.2.12 (api:2/proto:86-122)"), sha256sum ("HASH  PATH"),
    `systemctl is-enabled`/`is-active`."""
    script = m.string
    paths = shlex.split(re.search(r"for f in (.*?); do", script).group(1))  # type: ignore[union-attr]
    wanted = shlex.split(re.search(r"for c in (.*?); do command", script).group(1))  # type: ignore[union-attr]
    s = node.state
    drbd = (
        "version: 8.4.11 (api:1/proto:86-101)"
        if node.cluster.drbd == "8.4"
        else "version: 9.2.12 (api:2/proto:86-122)"
    )
    lines = ["@os", s.os_line, "@pm", s.package_manager, "@cmds", *[c for c in wanted if c in s.commands]]
    lines += ["@pacemaker", "Pacemaker 2.1.5" if "pacemakerd" in s.commands else "", "@drbd", drbd]
    lines += ["@host", s.hostname or node.name, *(["cloud-init"] if s.cloud_init else []), "@sums"]
    lines += [f"{s.files[p].sha256}  {p}" if p in s.files else f"- {p}" for p in paths]
    lines += ["@services", *[f"{k} {e} {a}" for k, (e, a) in s.services.items()]]
    lines += ["@logdirs", "/var/log/cluster", "@ifaces", "default via 192.0.2.1 dev eth0 proto static"]
    lines += [f"2: eth0    inet {node.endpoint.address}/24 brd 192.0.2.255 scope global eth0"]
    probe = re.search(r"echo @(service|agent); echo (\S+);", script)
    if probe:
        lines += [f"@{probe.group(1)}", shlex.split(probe.group(2))[0], s.service_text]
    lines.append("@end")
    return ok("\n".join(lines) + "\n")


def _layout(node: ScriptedNode, m: re.Match[str]) -> Result:
    minors = {r.name: [v.minor for v in r.volumes] for r in node.cluster.resources}
    return ok("".join(f"{r} {' '.join(map(str, minors.get(r, [])))}\n" for r in sorted(node.state.up)))


def _managed(node: ScriptedNode, m: re.Match[str]) -> Result:
    needle = f'drbd_resource" value="{m.group(1)}"'
    count = sum(needle in line for line in node.cluster.cib.splitlines())
    return Result(0 if count else 1, f"{count}\n", "")  # grep -c: exit 1 when nothing matched


def _connected(node: ScriptedNode, res: str) -> bool:
    return res in node.state.up and res in node.peer.state.up


def _disk_state(node: ScriptedNode, ref: str) -> str:
    if ref in node.state.dstate:
        return node.state.dstate[ref]
    return "UpToDate" if ref in node.cluster.synced else "Inconsistent"


def _role(node: ScriptedNode, res: str) -> str:
    """Primary where Pacemaker's view (the crm_mon the double prints) promotes the resource."""
    from hacloud.deploy.query.pacemaker import parse_crm_mon
    from hacloud.render.resources import primitive_id_of_drbd

    view = parse_crm_mon(_crm_mon(node, None).stdout)
    promoted = view.promoted_on(primitive_id_of_drbd(res)) if view is not None else []
    return "Primary" if node.name in promoted else "Secondary"


def _resync(node: ScriptedNode, ref: str, disk: str, peer: str) -> str:
    """SyncSource/SyncTarget while one side is UpToDate and the other Inconsistent ('' else);
    the Inconsistent side is marked synced for the next reading."""
    if {disk, peer} != {"UpToDate", "Inconsistent"}:
        return ""
    target = node if disk == "Inconsistent" else node.peer
    target.state.dstate[ref] = "UpToDate"
    return "SyncTarget" if disk == "Inconsistent" else "SyncSource"


def _kernel_drbd(node: ScriptedNode, m: re.Match[str] | None) -> Result:
    """The one DRBD read (hacloud.deploy.query.drbd.READ_COMMAND) as the kernel answers it for
    the model: DRBD 8.4's /proc/drbd (drbd_proc.c), or DRBD 9's version line then `drbdsetup
    status --verbose --statistics` (the layout of tests/fixtures/drbd9-status-*.txt)."""
    c = node.cluster
    lines = [
        "version: 8.4.11 (api:1/proto:86-101)" if c.drbd == "8.4" else "version: 9.2.12 (api:2/proto:86-122)"
    ]
    if c.drbd != "8.4":
        lines.append("@drbdsetup-status")
    # Pacemaker starts the DRBD resources it manages (after a reboot nothing else does)
    managed = c.running() and c.has_resources()
    for r in c.resources:
        if r.name not in node.state.up and not managed:
            continue
        up, role, peer_role = (
            managed or _connected(node, r.name),
            _role(node, r.name),
            _role(node.peer, r.name),
        )
        disks = {v.number: _disk_state(node, f"{r.name}/{v.number}") for v in r.volumes}
        peers = {
            v.number: _disk_state(node.peer, f"{r.name}/{v.number}") if up else "DUnknown" for v in r.volumes
        }
        # a resync runs (UpToDate -> Inconsistent peer) and, the model's disks being small,
        # is done by the next reading
        sync = {n: _resync(node, f"{r.name}/{n}", disks[n], peers[n]) if up else "" for n in disks}
        if c.drbd == "8.4":
            for v in r.volumes:
                cs = sync[v.number] or ("Connected" if up else "WFConnection")
                lines.append(
                    f" {v.minor}: cs:{cs} ro:{role}/{peer_role if up else 'Unknown'} "
                    f"ds:{disks[v.number]}/{peers[v.number]} C r-----"
                )
                lines.append("    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0")
                if sync[v.number]:
                    lines.append("\t[=========>..........] sync'ed: 50.0% (524288/1048576)K")
            continue
        lines.append(f"{r.name} node-id:0 role:{role} suspended:no")
        lines += [f"  volume:{v.number} minor:{v.minor} disk:{disks[v.number]}" for v in r.volumes]
        conn = "Connected" if up else "Connecting"
        lines.append(f"  {node.peer.name} node-id:1 connection:{conn} role:{peer_role}")
        lines += [
            f"    volume:{v.number} replication:{sync[v.number] or ('Established' if up else 'Off')} "
            f"peer-disk:{peers[v.number]}" + (" done:50.00" if sync[v.number] else "")
            for v in r.volumes
        ]
    return ok("\n".join(lines) + "\n")


def _dump_md(node: ScriptedNode, m: re.Match[str]) -> Result:
    # `drbdadm dump-md R/V 2>&1 >/dev/null`: only drbdmeta's stderr reaches stdout
    if node.state.busy:
        node.state.busy -= 1
        return Result(20, BUSY, "")
    if m.group(1) in node.state.md:
        return ok()
    blank = PROBES["dump-md-blank"]
    return Result(blank["rc"], blank["stderr"], "")


def _disk(node: ScriptedNode, path: str) -> Disk:
    disk = node.state.disks.get(path)
    assert disk is not None, f"{node.name}: the engine touched {path}, which is no disk of this node"
    return disk


def _test_b(node: ScriptedNode, m: re.Match[str]) -> Result:
    path = shlex.split(m.group(1))[0]
    return Result(0 if path in node.state.disks and node.state.disks[path].block else 1, "", "")


def _wipefs_probe(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    if disk.unreadable:
        return Result(1, "", disk.unreadable)
    return ok("".join(f"{t}\n" for t in disk.signatures))


def _lsblk(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    return ok(("disk\n" + "part\n" * disk.partitions) if disk.block else "")


def _wipe(node: ScriptedNode, m: re.Match[str]) -> Result:
    disk = _disk(node, shlex.split(m.group(1))[0])
    disk.signatures, disk.partitions = [], 0
    return ok()


def _create_md(node: ScriptedNode, m: re.Match[str]) -> Result:
    ref = m.group(1)
    res, _, vol = ref.partition("/")
    disk = _disk(node, node.cluster.disk_of[(node.name, res, int(vol))])
    # drbdmeta refuses a disk that holds a filesystem where the metadata goes only
    # interactively; with --force (as the engine runs it) it writes. The metadata sits at the
    # end of the disk: what is at the start stays (the "used" capture lists both).
    disk.signatures = ["drbd", *[t for t in disk.signatures if t != "drbd"]]
    node.state.md[ref] = PROBES["get-gi"][node.cluster.drbd]
    node.state.dstate.pop(ref, None)
    return ok()


def _up(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.up.add(m.group(1))
    return ok()


def _get_gi(node: ScriptedNode, m: re.Match[str]) -> Result:
    gi = node.state.md.get(m.group(1))
    return ok(gi) if gi else Result(1, "", "No valid meta data found\n")


def _clear_bitmap(node: ScriptedNode, m: re.Match[str]) -> Result:
    ref = m.group(1) or m.group(2)
    node.cluster.synced.add(ref)
    node.cluster.timeline.append(f"clear-bitmap {ref}")
    for n in node.cluster.nodes.values():
        n.state.md[ref] = SYNCED_GI
        n.state.dstate.pop(ref, None)
    return ok()


def _mkfs(node: ScriptedNode, m: re.Match[str]) -> Result:
    """`drbdadm primary R && mkfs... /dev/drbdN ...`: the filesystem replicates to the peer's
    backing disk too (DRBD protocol C)."""
    for fstype, minor in re.findall(r"mkfs\.(\w+) .*?/dev/drbd(\d+)", m.string):
        res, vol = next(
            (r.name, v.number) for r in node.cluster.resources for v in r.volumes if v.minor == int(minor)
        )
        for n in node.cluster.nodes.values():
            disk = _disk(n, node.cluster.disk_of[(n.name, res, vol)])
            disk.signatures = [*disk.signatures, fstype]
    return ok()


def _set_hostname(node: ScriptedNode, m: re.Match[str]) -> Result:
    """`hostnamectl set-hostname NAME` (with the cloud-init drop-in first when cloud-init is there)."""
    if "preserve_hostname: true" in m.string:
        path = "/etc/cloud/cloud.cfg.d/99-hacloud-hostname.cfg"
        node.state.files[path] = File(b"preserve_hostname: true\n", 0o644, "root:root")
    node.state.hostname = shlex.split(m.group(1))[0]
    return ok()


def _systemctl_start(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.services[m.group(1)] = ("enabled", "active")
    return ok()


def _crm_mon(node: ScriptedNode, m: re.Match[str] | None) -> Result:
    c = node.cluster
    if c.mon_override:
        return ok(c.mon_override)
    if not c.running():
        return Result(102, "", "")  # CRM_EX_NOT_CONNECTED; the message went to /dev/null
    if not c.has_resources():
        return ok(fixture("mon-online.xml"))
    return ok(fixture("mon-failed.xml" if c.failures_recorded else "mon-healthy.xml"))


def _cibadmin_query(node: ScriptedNode, m: re.Match[str]) -> Result:
    if not node.cluster.running():
        return Result(102, "", "Could not connect to the CIB: Transport endpoint is not connected\n")
    return ok(node.cluster.cib)


def _crm_diff(node: ScriptedNode, m: re.Match[str]) -> Result:
    """The model's patch: one format-2 change per configuration section that differs (the real
    crm_diff lists element-level changes; the engine reads the patch only for /cib/status and
    hands it to cibadmin, whose model below applies the desired file crm_diff was given)."""
    old, new, out = m.group(1), m.group(2), m.group(3)
    c = node.cluster
    if c.patch_override:
        node.state.files[out] = File(c.patch_override.encode(), 0o644)
        return ok()
    a = ET.fromstring(node.state.files[old].content).find("configuration")
    b = ET.fromstring(node.state.files[new].content).find("configuration")
    assert a is not None and b is not None
    changed = [
        s.tag
        for s in b
        if ET.tostring(s) != ET.tostring(a.find(s.tag) if a.find(s.tag) is not None else ET.Element("x"))
    ]
    changes = "".join(f'  <change operation="modify" path="/cib/configuration/{t}"/>\n' for t in changed)
    node.state.files[out] = File(f'<diff format="2">\n{changes}</diff>\n'.encode(), 0o644)
    c.pending = node.state.files[new].content
    return ok()  # crm_diff exits 1 when there are differences; `test $? -le 1` makes that 0


def _cat(node: ScriptedNode, m: re.Match[str]) -> Result:
    f = node.state.files.get(m.group(1))
    return ok(f.content.decode()) if f else Result(1, "", f"cat: {m.group(1)}: No such file or directory\n")


def _maintenance(node: ScriptedNode, m: re.Match[str]) -> Result:
    c = node.cluster
    if m.group(3):
        c.set_option("maintenance-mode", None)
        c.timeline.append("maintenance-mode deleted")
    else:
        c.set_option("maintenance-mode", m.group(2))
        c.timeline.append(f"maintenance-mode={m.group(2)}")
    return ok()


def _patch(node: ScriptedNode, m: re.Match[str]) -> Result:
    c = node.cluster
    c.timeline.append("patch")
    if c.fail_patch:
        return Result(1, "", c.fail_patch)
    root = ET.fromstring(c.cib)
    maintenance = root.find(".//nvpair[@name='maintenance-mode']")
    desired = ET.fromstring(c.pending).find("configuration")
    assert desired is not None
    root.remove(root.find("configuration"))  # type: ignore[arg-type]
    root.insert(0, desired)
    c.cib = ET.tostring(root, encoding="unicode")
    if maintenance is not None:  # set after crm_diff read the CIB: the patch does not touch it
        c.set_option("maintenance-mode", maintenance.get("value"))
    return ok()


def _cleanup(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.cluster.failures_recorded = False
    return ok()


def _curl(node: ScriptedNode, m: re.Match[str]) -> Result:
    if node.cluster.service_answers and node.cluster.running() and node.cluster.has_resources():
        return ok('{"status": "ok"}\n')
    return Result(7, "", CURL_REFUSED)


def _rm(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.files.pop(shlex.split(m.group(1))[0], None)
    return ok()


def _retire_demo_unit(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.files.pop("/etc/systemd/system/hacloud-demo.service", None)
    return ok()


def _install(node: ScriptedNode, m: re.Match[str]) -> Result:
    node.state.commands |= set(REQUIRED)
    return ok()


_REF = r"([\w.-]+/\d+)"
HANDLERS: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(p), h)
    for p, h in [
        (r"^\s*echo @os", _facts),
        (r"drbdadm sh-resources", _layout),
        (r"^cibadmin -Q -o resources .*grep -c 'drbd_resource\" value=\"([\w.-]+)\"'", _managed),
        (rf"^{re.escape(READ_COMMAND)}$", _kernel_drbd),
        (rf"^drbdadm dump-md {_REF} 2>&1 >/dev/null$", _dump_md),
        (r"^test -b (\S+)$", _test_b),
        (r"^wipefs --no-act --noheadings --output TYPE (\S+)$", _wipefs_probe),
        (r"^if test -b (\S+); then lsblk -nro TYPE \S+; fi$", _lsblk),
        (r"^wipefs -a (\S+)$", _wipe),
        (rf"^drbdadm -- --force create-md {_REF}$", _create_md),
        (r"^drbdadm up ([\w.-]+)$", _up),
        (r"^drbdadm adjust ([\w.-]+)$", lambda n, m: ok()),
        (rf"^drbdadm get-gi {_REF}$", _get_gi),
        # DRBD 8.4's drbdadm takes the option after `--`; DRBD 9's after the command
        (
            rf"^(?:drbdadm -- --clear-bitmap new-current-uuid {_REF}"
            rf"|drbdadm new-current-uuid --clear-bitmap {_REF})$",
            _clear_bitmap,
        ),
        (r"^drbdadm primary [\w.-]+ && mkfs", _mkfs),
        (r"^mkdir -p \S", lambda n, m: ok()),
        (r"^systemctl enable (\w+) && systemctl start \w+$", _systemctl_start),
        (r"hostnamectl set-hostname (\S+) ", _set_hostname),
        (r"^systemctl daemon-reload$|^sysctl --system >/dev/null$|^corosync-cfgtool -R$", lambda n, m: ok()),
        (rf"^{re.escape(LINKS_SCRIPT)}$", lambda n, m: ok()),
        (r"^crm_mon -1 --output-as=xml 2>/dev/null$", _crm_mon),
        (r"^cibadmin -Q$", _cibadmin_query),
        (r"^crm_diff --no-version -o (\S+) -n (\S+) > (\S+); test \$\? -le 1$", _crm_diff),
        (r"^cat (\S+)$", _cat),
        (r"^crm_attribute -t crm_config -n maintenance-mode (?:(-v) (\w+)|(-D))$", _maintenance),
        (r"^cibadmin --patch --xml-file \S+$", _patch),
        (r"^crm_resource --cleanup >/dev/null$", _cleanup),
        (r"^crm_resource --cleanup --resource \S+ --node \S+$", _cleanup),
        (r"^curl -fsS --max-time 3 \S+$", _curl),
        (r"^rm -f -- (\S+)$", _rm),
        (r"^systemctl stop hacloud-demo", _retire_demo_unit),
        (r"^apt-get update -q$|^DEBIAN_FRONTEND=noninteractive apt-get install ", _install),
    ]
]
