"""What the DRBD kernel module reports, parsed (pure), and what an operator must do about it.

Contract: :func:`parse_proc_drbd` reads DRBD 8.4's ``/proc/drbd``; :func:`parse_drbdsetup_status`
reads DRBD 9's ``drbdsetup status --verbose --statistics``. Both return one :class:`VolumeState`
per replicated volume seen from one node, with the same vocabulary (DRBD 9's: connection
``Connected``/``StandAlone``/``Connecting``, replication ``Established``/``SyncSource``/
``VerifyS``/``Off``), sizes in KiB as the kernel prints them. Neither ever raises on odd
text: what cannot be read is left ``None``/empty so the caller reports "unknown", never
"healthy".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hacloud.deploy.remote import Connection
    from hacloud.render.resources import DrbdResource

# DRBD 8.4 connection states (drbd_strings.c) at or beyond which the peers are connected;
# below them the state names the connection itself.
_CONNECTED_84 = {
    "Connected",
    "StartingSyncS",
    "StartingSyncT",
    "WFBitMapS",
    "WFBitMapT",
    "WFSyncUUID",
    "SyncSource",
    "SyncTarget",
    "VerifyS",
    "VerifyT",
    "PausedSyncS",
    "PausedSyncT",
    "Ahead",
    "Behind",
}


@dataclass(frozen=True)
class VolumeState:
    """One volume of one resource, as one node sees it and its (single) peer."""

    resource: str | None  # DRBD 8.4 prints minors only: the caller maps them (see by_minor)
    minor: int | None
    role: str | None  # Primary / Secondary
    disk: str | None  # UpToDate, Outdated, Inconsistent, Diskless, ...
    connection: str | None  # Connected, StandAlone, Connecting, ...
    replication: str | None  # Established, SyncSource, SyncTarget, VerifyS, VerifyT, Off, ...
    peer: str | None  # peer node name (DRBD 9)
    peer_role: str | None
    peer_disk: str | None
    out_of_sync_kib: int | None
    progress: float | None  # percent done of a running resync or online verify
    suspended: bool
    volume: int | None = None  # the volume's number inside its resource (``res/N``)

    @property
    def verifying(self) -> bool:
        return self.replication in ("VerifyS", "VerifyT")

    @property
    def standalone(self) -> bool:
        return self.connection == "StandAlone"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_proc_drbd(text: str) -> list[VolumeState]:
    """DRBD 8.4 ``/proc/drbd`` (drbd_proc.c: ``N: cs:.. ro:../.. ds:../.. C r-----``, then
    ``ns:.. oos:N``, then a progress line during resync or verify)."""
    out: list[VolumeState] = []
    blocks = re.split(r"(?m)^(?=\s*\d+: cs:)", text)
    for block in blocks:
        head = re.match(r"\s*(\d+): cs:(\S+)(.*)", block)
        if not head or head.group(2) == "Unconfigured":
            continue
        fields = dict(re.findall(r"\b(ro|ds|oos):(\S+)", block))
        role, peer_role = _pair(fields.get("ro"))
        disk, peer_disk = _pair(fields.get("ds"))
        cs = head.group(2)
        connected = cs in _CONNECTED_84
        flags = re.search(r"\s[A-C ]\s([rs])[-a-z]{5}", head.group(3))
        progress = re.search(r"(?:verified|sync'ed):\s*([\d.]+)%", block)
        out.append(
            VolumeState(
                resource=None,
                minor=int(head.group(1)),
                role=role,
                disk=disk,
                connection="Connected" if connected else cs,
                replication=("Established" if cs == "Connected" else cs) if connected else "Off",
                peer=None,
                peer_role=peer_role,
                peer_disk=peer_disk,
                out_of_sync_kib=_int(fields.get("oos")),
                progress=float(progress.group(1)) if progress else None,
                suspended=bool(flags and flags.group(1) == "s"),
            )
        )
    return out


def by_minor(
    volumes: Sequence[VolumeState], names: Mapping[int, str], numbers: Mapping[int, int] | None = None
) -> list[VolumeState]:
    """Name 8.4 volumes by the spec's DRBD resource for each minor (and, given ``numbers``,
    their volume number inside it); minors hacloud does not manage are dropped."""
    return [
        replace(v, resource=names[v.minor], volume=(numbers or {}).get(v.minor))
        for v in volumes
        if v.minor is not None and v.minor in names
    ]


def parse_drbdsetup_status(text: str) -> list[VolumeState]:
    """DRBD 9 ``drbdsetup status --verbose --statistics`` (drbdsetup.c resource_status,
    device_status, connection and peer_device_status): a resource line at column 0, device
    lines ``volume:N minor:M disk:..``, a connection line ``<peer> node-id:N connection:..
    role:..``, its peer-device lines ``volume:N replication:.. peer-disk:.. done:..`` and their
    statistics (``out-of-sync:KiB``). Without a connection (StandAlone with no peer listed)
    each device still yields a volume."""
    out: list[VolumeState] = []
    resource: dict[str, str] = {}
    devices: dict[int, dict[str, str]] = {}
    conn: dict[str, str] = {}
    peer_devices: dict[int, dict[str, str]] = {}
    section: dict[str, str] = resource

    def flush() -> None:
        if not resource:
            return
        for vol, dev in sorted(devices.items()):
            pd = peer_devices.get(vol, {})
            out.append(
                VolumeState(
                    resource=resource.get("name"),
                    minor=_int(dev.get("minor")),
                    role=resource.get("role"),
                    disk=dev.get("disk"),
                    connection=conn.get("connection") if conn else "StandAlone",
                    replication=pd.get("replication") if pd else "Off",
                    peer=conn.get("name"),
                    peer_role=conn.get("role"),
                    peer_disk=pd.get("peer-disk"),
                    out_of_sync_kib=_int(pd.get("out-of-sync")),
                    progress=_float(pd.get("done")),
                    suspended=resource.get("suspended", "no") not in ("no", ""),
                    volume=vol,
                )
            )

    for raw in text.splitlines():
        line = _strip_colour(raw)
        if not line.strip():
            continue
        first = line.split()[0]
        pairs = dict(re.findall(r"([A-Za-z-]+):(\S+)", line))
        if not line[0].isspace():  # a new resource
            flush()
            resource, devices, conn, peer_devices = {"name": first}, {}, {}, {}
            section = resource
        elif ":" not in first:  # a connection, named by the peer
            conn = {"name": first}
            section = conn
        elif first.startswith("volume:"):  # a device, or a peer device under a connection
            section = (peer_devices if conn else devices).setdefault(int(pairs["volume"]), {})
        # anything else continues the line above (drbdsetup wraps at 80 columns) or adds its
        # statistics: it belongs to the same object
        section.update(pairs)
    flush()
    return out


def split_brain_nodes(states: Mapping[str, Sequence[VolumeState]]) -> dict[str, list[str]]:
    """Resource -> the nodes where it is StandAlone (DRBD's state after it detected a split
    brain and after-sb-1pri disconnect refused to resolve it on its own)."""
    out: dict[str, list[str]] = {}
    for node, volumes in states.items():
        for vol in volumes:
            if vol.standalone and vol.resource and node not in out.setdefault(vol.resource, []):
                out[vol.resource].append(node)
    return {res: nodes for res, nodes in out.items() if nodes}


def recovery_steps(resource: str, survivor: str, victim: str, standalone: Sequence[str]) -> list[str]:
    """The DRBD user guide's manual split-brain recovery (8.4 and 9 alike): the victim's
    changes since the split are discarded, the survivor's are kept and resynced to it.
    ``disconnect`` only where DRBD still tries to connect: on a StandAlone node it fails
    ("unknown connection", seen in the lab)."""
    disconnect = "" if victim in standalone else f"drbdadm disconnect {resource}; "
    steps = [
        f"decide which node's data to keep: {survivor} (runs the service now) is the usual "
        f"survivor; {victim}'s writes since the split will be discarded",
        f"on {victim}: {disconnect}drbdadm secondary {resource}; "
        f"drbdadm connect --discard-my-data {resource}",
    ]
    if survivor in standalone:
        steps.append(f"on {survivor}: drbdadm connect {resource}")
    steps.append(f"then watch `hacloud status` until {resource} is Connected and UpToDate on both nodes")
    return steps


def _pair(text: str | None) -> tuple[str | None, str | None]:
    if not text or "/" not in text:
        return text, None
    a, b = text.split("/", 1)
    return a, b


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _strip_colour(text: str) -> str:
    # drbdsetup colours its output on a terminal (--color=auto); never over SSH, but be safe
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# The kernel's words when after-sb-* refused to resolve a split brain (drbd_receiver.c,
# drbd_sync_handshake(), DRBD 8.4 and 9 alike).
SPLIT_BRAIN_LOG = "Split-Brain detected but unresolved"


def link_state(vol: VolumeState) -> str | None:
    """One word for the replication link: the replication state while connected and not
    idle (SyncSource, VerifyS, ...), else the connection state (Connected, StandAlone, ...)."""
    if vol.connection == "Connected" and vol.replication not in (None, "Established", "Off"):
        return vol.replication
    return vol.connection


def split_brain_report(
    states: Mapping[str, Sequence[VolumeState]],
    logged: Mapping[str, bool],
    service_node: str | None,
) -> list[dict[str, object]]:
    """One entry per resource that is StandAlone somewhere: the nodes, whether the kernel
    logged a split brain there, and the recovery steps. The suggested survivor is the node
    that is Primary for the resource (else the one running the service); the operator decides."""
    report: list[dict[str, object]] = []
    for resource, nodes in sorted(split_brain_nodes(states).items()):
        primaries = [
            node
            for node, vols in states.items()
            for v in vols
            if v.resource == resource and v.role == "Primary"
        ]
        survivor = primaries[0] if len(primaries) == 1 else service_node
        others = [n for n in states if n != survivor]
        victim = others[0] if survivor and others else None
        split = any(logged.get(n, False) for n in nodes)
        if not split:
            # StandAlone without the kernel's split-brain message (someone ran `drbdadm
            # disconnect`, or the log rotated): reconnecting is safe, a split brain would be
            # detected again and keep it StandAlone, logged this time.
            steps = [f"on {n}: drbdadm connect {resource}" for n in nodes]
        elif survivor and victim:
            steps = recovery_steps(resource, survivor, victim, nodes)
        else:
            steps = [
                "no node is Primary: choose the node whose data to keep (the survivor), then run "
                f"on the other: drbdadm disconnect {resource}; drbdadm secondary {resource}; "
                f"drbdadm connect --discard-my-data {resource}; and on the survivor: drbdadm connect "
                f"{resource}"
            ]
        report.append(
            {
                "resource": resource,
                "standalone_on": nodes,
                "split_brain": split,
                "survivor": survivor if split else None,
                "victim": victim if split else None,
                "steps": steps,
            }
        )
    return report


# ---------------------------------------------------------------- the one read command

#: Printed between /proc/drbd and drbdsetup's status by :data:`READ_COMMAND`.
_DRBD9_MARK = "@drbdsetup-status"

#: One command for both generations, chosen by the kernel module itself: /proc/drbd always;
#: with a DRBD 9 module (whose /proc/drbd holds only its version) also ``drbdsetup status``.
READ_COMMAND = (
    "cat /proc/drbd 2>/dev/null; "
    'case "$(head -c 10 /proc/drbd 2>/dev/null)" in "version: 9"*) '
    f"echo {_DRBD9_MARK}; drbdsetup status --verbose --statistics 2>/dev/null;; esac"
)


def parse_read(text: str, resources: Sequence[DrbdResource]) -> list[VolumeState]:
    """:data:`READ_COMMAND`'s output -> every volume of ``resources`` the kernel reports, named
    by resource and volume number (8.4 through the renderer's minors); volumes of resources
    hacloud does not manage are left out, volumes that are down are absent."""
    proc, mark, status = text.partition(_DRBD9_MARK)
    if mark:
        names = {r.name for r in resources}
        return [v for v in parse_drbdsetup_status(status) if v.resource in names]
    minors = {v.minor: r.name for r in resources for v in r.volumes}
    numbers = {v.minor: v.number for r in resources for v in r.volumes}
    return by_minor(parse_proc_drbd(proc), minors, numbers)


def read_volumes(conn: Connection, resources: Sequence[DrbdResource]) -> list[VolumeState]:
    """What this node's DRBD kernel module reports for ``resources`` (read-only)."""
    return parse_read(conn.run(READ_COMMAND, check=False, timeout=30).stdout, resources)


def pair_state(volumes: Sequence[VolumeState]) -> tuple[str, str]:
    """(link, disks) over ``volumes`` of one node: the value all share (``Connected``,
    ``UpToDate/UpToDate``), else the first that differs (the one still syncing or down);
    '' when DRBD reports nothing."""
    links = [link_state(v) or "" for v in volumes]
    disks = [f"{v.disk}/{v.peer_disk or 'DUnknown'}" if v.disk else "" for v in volumes]
    link = next((c for c in links if c != "Connected"), "Connected") if links else ""
    disk = next((d for d in disks if d != "UpToDate/UpToDate"), "UpToDate/UpToDate") if disks else ""
    return link, disk


def is_primary(text: str) -> bool:
    """Whether :data:`READ_COMMAND`'s output shows any volume Primary on the node (every
    resource, managed or not: a second Primary anywhere is what a split brain looks like)."""
    proc, mark, status = text.partition(_DRBD9_MARK)
    volumes = parse_drbdsetup_status(status) if mark else parse_proc_drbd(proc)
    return any(v.role == "Primary" for v in volumes)
