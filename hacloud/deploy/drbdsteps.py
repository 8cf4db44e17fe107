"""The DRBD step: metadata, bringing resources up, the initial sync and the filesystems.

Contracts (data safety):
- Metadata is created only on a disk with no metadata and no filesystem or partition
  signature, unless ``force``; every volume of a resource is probed on both nodes before the
  first create-md, and a probe that cannot answer refuses (never reads as blank). Existing
  DRBD metadata is never re-created, not even with ``force``.
- The full initial sync is skipped (clear-bitmap) only for volumes whose both sides carry
  brand-new metadata (generation identifier 4, "just created": nothing to keep).
- A filesystem is made only on a device Pacemaker does not manage yet whose backing disk
  holds no filesystem signature.
- A running DRBD resource is never given, or robbed of, volumes (:func:`layout_conflicts`).
- Every wait runs on the engine's clock (:func:`hacloud.poll.poll_until`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hacloud.deploy.query.drbd import VolumeState, read_volumes
from hacloud.deploy.remote import Connection, Result
from hacloud.deploy.step import EngineBase, on_nodes
from hacloud.errors import HacloudError
from hacloud.poll import poll_until
from hacloud.render.resources import DrbdResource, DrbdVolume, drbd_resources

#: the generation identifier `drbdadm get-gi` prints first for metadata create-md just made
#: (UUID_JUST_CREATED in DRBD's drbd_int.h / drbd_meta_data.h)
BRAND_NEW_GI = "0000000000000004:"
#: how long a disk may be held open (Pacemaker attaching it after a boot) before hacloud gives up
BUSY_SECONDS = 30
CONNECT_SECONDS = 60


@dataclass
class DrbdState:
    """One DRBD resource on one node: ``md`` by volume number; ``volumes`` as the node's kernel
    reports them (:mod:`hacloud.deploy.query.drbd`), only when the resource is up."""

    up: bool
    md: dict[int, bool]
    volumes: tuple[VolumeState, ...] = ()

    def dstate(self, number: int) -> str:
        """``local/peer`` disk state of one volume, as ``drbdadm dstate`` prints it."""
        v = next((v for v in self.volumes if v.volume == number), None)
        return f"{v.disk}/{v.peer_disk or 'DUnknown'}" if v is not None else ""

    def connected(self, count: int) -> bool:
        """Connected with all ``count`` volumes up and the peer's disk state known: right after
        the handshake the peer's disk may still read DUnknown, and deciding on that would skip
        the brand-new check."""
        return len(self.volumes) == count and all(
            v.connection == "Connected" and v.peer_disk not in (None, "DUnknown") for v in self.volumes
        )


def disk_signatures(
    conn: Connection, node: str, disk: str, *, forceable: bool = True
) -> tuple[list[str], int]:
    """(signature types wipefs finds, partitions the kernel shows) on ``disk`` of ``node``.

    Contract: a probe that cannot answer raises :class:`HacloudError` naming the disk, the
    node and the tool's own error; it never reads as a blank disk (a failing ``wipefs`` once
    read as "no signature", and create-md/mkfs could then run over data). ``forceable``:
    whether the caller lets ``--force`` go past an unreadable disk (the remedy says so).
    Regular files are probed too (no partitions: the kernel partitions block devices only).
    """
    q = shlex.quote(disk)
    way_out = (
        "or run again with --force if whatever it holds may be destroyed"
        if forceable
        else "hacloud makes no filesystem on a disk it cannot read, not even with --force"
    )

    def refuse(result: Result) -> HacloudError:
        why = result.stderr.strip() or result.stdout.strip() or f"exit status {result.rc}"
        return HacloudError(
            f"cannot tell whether {disk} on {node} holds data: {why}",
            f"fix the disk or its path in nodes[].volumes (`wipefs --no-act {disk}` must succeed "
            f"on {node}); {way_out}",
            code="HAC417",
        )

    sigs = conn.run(f"wipefs --no-act --noheadings --output TYPE {q}", check=False)
    if sigs.rc != 0:
        raise refuse(sigs)
    # lsblk answers for block devices only; a regular file has no kernel partitions.
    parts = conn.run(f"if test -b {q}; then lsblk -nro TYPE {q}; fi", check=False)
    if parts.rc != 0:
        raise refuse(parts)
    return [t for t in sigs.stdout.split() if t], parts.stdout.split().count("part")


@dataclass(frozen=True)
class _NewMetadata:
    node: str
    volume: DrbdVolume
    disk: str
    label: str
    found: list[str]
    parts: int
    unread: str  # --force past an unreadable disk: what the probe said


def layout_conflicts(running: dict[str, list[int]], wanted: list[DrbdResource]) -> list[str]:
    """Why the spec's DRBD layout cannot be applied to the resources ``running`` on a node
    (resource -> its minors as the node's config has them), empty when it can.

    A running resource must keep exactly its minors: `drbdadm adjust` would attach a new
    volume that has no metadata (the resource fails at its next start), and a minor moved to
    another resource makes the node's config invalid while the old resource still holds it.
    Resources the spec no longer names and whose minors it does not reuse are left alone.
    """
    owner = {v.minor: r.name for r in wanted for v in r.volumes}
    problems = []
    for res in sorted(running):
        have = running[res]
        want = next((sorted(v.minor for v in r.volumes) for r in wanted if r.name == res), None)
        if want is not None and want != have:
            problems.append(f"DRBD resource {res} runs with minors {have}, the spec gives it {want}")
        elif want is None:
            taken = [f"{m} (-> {owner[m]})" for m in have if m in owner]
            if taken:
                problems.append(
                    f"DRBD resource {res} runs with minors the spec gives to another resource: "
                    + ", ".join(taken)
                )
    return problems


class DrbdSteps(EngineBase):
    """The DRBD step (see the module doc)."""

    def drbd_layout(self) -> None:
        """Before anything is written: every DRBD resource that is up keeps the volumes it
        runs with (see :func:`layout_conflicts`)."""
        script = (
            "for r in $(drbdadm sh-resources 2>/dev/null); do "
            'if drbdadm role "$r" >/dev/null 2>&1; then echo "$r" $(drbdadm sh-minor "$r" 2>/dev/null); fi; '
            "done"
        )
        for name in self.names:
            out = self.conns[name].run(script, check=False).stdout
            running = {
                fields[0]: sorted(int(m) for m in fields[1:] if m.isdigit())
                for fields in (line.split() for line in out.splitlines())
                if fields
            }
            problems = layout_conflicts(running, drbd_resources(self.spec))
            if problems:
                raise HacloudError(
                    f"{name}: " + "; ".join(problems),
                    "hacloud does not add volumes to, remove them from or regroup a DRBD resource that "
                    "is running (its volumes share one metadata history and sync state): put the spec's "
                    "volumes back as they are running; a new volume can join as its own resource "
                    "(no `resource:`, or a new resource name). Nothing was changed",
                    code="HAC418",
                )

    def _managed_by_pacemaker(self, resource: str) -> bool:
        result = self.conns[self.names[0]].run(
            f'cibadmin -Q -o resources 2>/dev/null | grep -c \'drbd_resource" value="{resource}"\'',
            check=False,
        )
        return result.stdout.strip() not in ("", "0")

    def drbd(self, changed_files: dict[str, set[str]]) -> None:
        for res in drbd_resources(self.spec):
            self._drbd_resource(res, changed_files)

    def _state(self, name: str, res: DrbdResource) -> DrbdState:
        """``res`` on ``name`` as it is now; while a disk is held open by something else (right
        after a boot Pacemaker may be attaching it) asks again for up to BUSY_SECONDS."""
        state = poll_until(lambda: self._state_once(name, res), timeout=BUSY_SECONDS, clock=self.clock)
        if state is None:
            raise HacloudError(
                f"{name}: a disk of DRBD resource {res.name} is in use but the resource is not up",
                "find what holds the disk (`fuser -v` on it, mounts) and stop it; hacloud will not touch it",
                code="HAC419",
            )
        return state

    def _state_once(self, name: str, res: DrbdResource) -> DrbdState | None:
        """One reading; None when a volume's disk is busy (dump-md cannot open it)."""
        conn = self.conns[name]
        volumes = tuple(read_volumes(conn, [res]))  # the kernel's own report (/proc/drbd, drbdsetup)
        if volumes:
            return DrbdState(up=True, md={v.number: True for v in res.volumes}, volumes=volumes)
        md: dict[int, bool] = {}
        for v in res.volumes:
            dump = conn.run(f"drbdadm dump-md {res.name}/{v.number} 2>&1 >/dev/null", check=False)
            if "busy" in dump.stdout:
                return None
            md[v.number] = dump.rc == 0
        return DrbdState(up=False, md=md)

    def _metadata_plan(self, res: DrbdResource, states: dict[str, DrbdState]) -> list[_NewMetadata]:
        """Every volume of ``res`` on every node that needs DRBD metadata, after probing them
        all: one disk that holds data (or cannot be read) stops the run before any create-md,
        so no node is left half-initialised."""
        plan: list[_NewMetadata] = []
        for name in self.names:
            conn = self.conns[name]
            for v in res.volumes:
                if states[name].md.get(v.number):
                    continue
                disk = self.inventory.node(name).volumes[v.spec.name]
                label = f"{res.name}/{v.number} ({v.spec.name})" if len(res.volumes) > 1 else res.name
                if conn.run(f"test -b {shlex.quote(disk)}", check=False).rc != 0:
                    raise HacloudError(
                        f"{name}: {disk} (volume {v.spec.name}) is not a block device",
                        "name the data disk's stable path in nodes[].volumes",
                        code="HAC420",
                    )
                try:
                    found, parts = disk_signatures(conn, name, disk)
                except HacloudError as err:
                    if not self.force:
                        raise
                    # The user said whatever the disk holds may go; say what we could not read.
                    plan.append(_NewMetadata(name, v, disk, label, [], 0, err.message))
                    continue
                if "drbd" in found:
                    # DRBD metadata is there (dump-md can fail while a booting node loads the
                    # module or Pacemaker attaches the disk). Never re-create it, not even with
                    # --force: that would throw away the data and the replication history.
                    states[name].md[v.number] = True
                    continue
                if (found or parts) and not self.force:
                    what = ", ".join(found) or f"{parts} partition(s)"
                    raise HacloudError(
                        f"{name}: {disk} already holds {what}; hacloud will not put DRBD metadata over it",
                        "if that data may be destroyed, run again with --force; otherwise name an empty "
                        "disk for this node in nodes[].volumes",
                        code="HAC421",
                    )
                plan.append(_NewMetadata(name, v, disk, label, found, parts, ""))
        return plan

    def _drbd_resource(self, res: DrbdResource, changed_files: dict[str, set[str]]) -> None:
        states = dict(zip(self.names, on_nodes(lambda n: self._state(n, res), self.names), strict=True))
        for new in self._metadata_plan(res, states):
            self.change(
                new.node,
                "drbd",
                f"create metadata for {new.label} on {new.disk}"
                + (f" (--force: wiping {', '.join(new.found)})" if new.found else "")
                + (f" (--force although {new.unread})" if new.unread else ""),
            )
            if self.apply:
                conn = self.conns[new.node]
                if new.found or new.parts:
                    conn.run(f"wipefs -a {shlex.quote(new.disk)}")
                conn.run(f"drbdadm -- --force create-md {res.name}/{new.volume.number}")
        managed = self._managed_by_pacemaker(res.name)
        for name in self.names:
            if not states[name].up and managed and self._pacemaker_active(name):
                continue  # Pacemaker starts it (a node that just booted); two starters would collide
            if not states[name].up:
                self.change(name, "drbd", f"bring {res.name} up")
                if self.apply:
                    self.conns[name].run(f"drbdadm up {res.name}")
            elif (
                f"/etc/drbd.d/{res.name}.res" in changed_files[name]
                or "/etc/drbd.d/global_common.conf" in changed_files[name]
            ):
                self.change(name, "drbd", f"adjust {res.name} to the new configuration")
                if self.apply:
                    self.conns[name].run(f"drbdadm adjust {res.name}")
        if not self.apply or managed:
            return
        self._initialise(res)

    def _wait_connected(self, res: DrbdResource) -> dict[str, DrbdState]:
        last: dict[str, DrbdState] = {}

        def connected() -> dict[str, DrbdState] | None:
            last.update({n: self._state(n, res) for n in self.names})
            return dict(last) if all(s.connected(len(res.volumes)) for s in last.values()) else None

        states = poll_until(connected, timeout=CONNECT_SECONDS, clock=self.clock)
        if states is None:
            raise HacloudError(
                f"DRBD {res.name} did not connect: "
                + "; ".join(
                    f"{n}: {' '.join(f'{v.connection}/{v.disk}/{v.peer_disk}' for v in s.volumes) or 'down'}"
                    for n, s in last.items()
                ),
                "check that the nodes reach each other on the replication address and port (firewall)",
                code="HAC422",
            )
        return states

    def _initialise(self, res: DrbdResource) -> None:
        """A resource Pacemaker does not manage yet: skip the initial sync of brand-new volumes,
        make the filesystems that are missing (all in one promote), create the mount points."""
        states = self._wait_connected(res)
        for v in res.volumes:
            if {s.dstate(v.number) for s in states.values()} == {"Inconsistent/Inconsistent"}:
                self._skip_initial_sync(res, v.number)
        self._make_filesystems(res)
        mounts = " ".join(shlex.quote(v.spec.mount_point) for v in res.volumes)
        for name in self.names:
            self.conns[name].run(f"mkdir -p {mounts}")

    def _skip_initial_sync(self, res: DrbdResource, number: int) -> None:
        """Volume ``number`` of ``res`` is Inconsistent on both nodes: clear its bitmap only if
        both sides carry brand-new metadata; anything else may hold data, and hacloud does not
        pick a side."""
        first, ref = self.names[0], f"{res.name}/{number}"
        gis = [self.conns[n].run(f"drbdadm get-gi {ref}").stdout.strip() for n in self.names]
        if not all(g.startswith(BRAND_NEW_GI) for g in gis):
            raise HacloudError(
                f"DRBD {ref} is Inconsistent on both nodes but not brand-new ({gis})",
                "inspect it with `drbdadm status`; hacloud will not guess which side to keep",
                code="HAC423",
            )
        # Both sides carry brand-new metadata: nothing to sync (DRBD UG, MS-NFS).
        self.change(first, "drbd", f"skip the initial sync of brand-new {ref} (clear-bitmap)")
        clear = (
            f"drbdadm -- --clear-bitmap new-current-uuid {ref}"
            if self.bundle.targets.drbd == "8.4"
            else f"drbdadm new-current-uuid --clear-bitmap {ref}"
        )
        self.conns[first].run(clear)
        self._wait_uptodate(res, number)

    def _make_filesystems(self, res: DrbdResource) -> None:
        """The filesystems ``res``'s volumes lack, made on the first node in one promote."""
        first = self.names[0]
        conn = self.conns[first]
        mkfs: list[str] = []
        for v in res.volumes:
            device = f"/dev/drbd{v.minor}"
            disk = self.inventory.node(first).volumes[v.spec.name]
            # Every signature on the backing disk: with internal metadata a used disk carries the
            # filesystem at the start and DRBD's at the end. (`blkid -p` answers "ambivalent" with
            # empty output for two signatures: read as "no filesystem", that meant mkfs over data
            # when a drop-in `down` had left the disk and a later `up` found no CIB.)
            found, _ = disk_signatures(conn, first, disk, forceable=False)
            if set(found) - {"drbd"}:
                continue
            fstype = v.spec.filesystem
            self.change(first, "drbd", f"make a {fstype} filesystem on {v.spec.name} ({device})")
            # ext4: initialise inode tables and journal now. Lazy init would write across the
            # whole disk in the background for minutes, and a primary that dies meanwhile has
            # every extent in DRBD's activity log: a full resync instead of a few MiB.
            mkfs.append(
                f"mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 {device}"
                if fstype == "ext4"
                else f"mkfs.{fstype} -q -f {device}"
            )
        if mkfs:
            conn.run(
                f"drbdadm primary {res.name} && {' && '.join(mkfs)}; rc=$?; "
                f"drbdadm secondary {res.name}; exit $rc",
                timeout=600 * len(mkfs),
            )

    def _wait_uptodate(self, res: DrbdResource, number: int, timeout: float = 120) -> None:
        """Until volume ``number`` of ``res`` reads UpToDate/UpToDate on every node."""

        def reached() -> bool | None:
            states = [DrbdState(True, {}, tuple(read_volumes(self.conns[n], [res]))) for n in self.names]
            return True if all(s.dstate(number) == "UpToDate/UpToDate" for s in states) else None

        if poll_until(reached, timeout=timeout, clock=self.clock) is None:
            raise HacloudError(
                f"DRBD {res.name}/{number} did not reach UpToDate/UpToDate",
                "inspect it with `drbdadm status`",
                code="HAC424",
            )
