"""Render the whole CIB (pure): properties, nodes, resources, constraints, defaults.

Contract: :func:`render_cib` returns the same text for the same input; the XML validates with
``crm_verify`` (tested for every fencing x VIP x profile combination) and names cluster
options the way the target Pacemaker understands them (``fencing-*`` from 3.0.2 on).
"""

from __future__ import annotations

from dataclasses import dataclass

from hacloud.render import fencing
from hacloud.render import resources as r
from hacloud.render.env import render_template
from hacloud.render.versions import Targets
from hacloud.spec.inventory import FenceDevice, Inventory, Primitive
from hacloud.spec.model import SbdFencing, Spec
from hacloud.spec.profiles import Profile


@dataclass(frozen=True)
class DrbdClone:
    clone_id: str
    primitive: Primitive
    meta: tuple[tuple[str, str], ...]


def stonith_timeout(spec: Spec, profile: Profile) -> int:
    """SBD-only clusters use the SBD timeout (msgwait must pass before a fence counts as done,
    and the power agents' long cloud timeouts do not apply: Azure 210, not 900); with SBD
    next to another method, the longer of the two covers both levels."""
    sbd = [isinstance(m, SbdFencing) for m in spec.fencing]
    if all(sbd):
        return fencing.sbd_stonith_timeout(profile)
    if any(sbd):
        return max(profile.num("pacemaker.stonith_timeout"), fencing.sbd_stonith_timeout(profile))
    return profile.num("pacemaker.stonith_timeout")


# Pacemaker 3.0.0 deprecated these options (ChangeLog 3.0.0: concurrent fencing became the
# default, record-pending always on): rendered only for older targets.
DEPRECATED_IN_3 = ("concurrent-fencing", "record-pending")


def cluster_properties(spec: Spec, profile: Profile, targets: Targets) -> list[tuple[str, str]]:
    prefix = targets.fencing_prefix
    bool_ = {True: "true", False: "false"}
    props = [
        ("cluster-name", spec.cluster.name),
        (f"{prefix}-enabled", "true"),
        (f"{prefix}-action", profile.text("pacemaker.stonith_action")),
        (f"{prefix}-timeout", f"{stonith_timeout(spec, profile)}s"),
        ("priority-fencing-delay", f"{profile.num('pacemaker.priority_fencing_delay')}s"),
        ("concurrent-fencing", bool_[profile.flag("pacemaker.concurrent_fencing")]),
        # Two-node quorum is handled by corosync's two_node/wait_for_all; keep the default
        # `stop` so a node that lost quorum never runs the service (PX cluster-options.rst).
        ("no-quorum-policy", "stop"),
    ]
    return _current(props, targets)


def _current(options: list[tuple[str, str]], targets: Targets) -> list[tuple[str, str]]:
    """Drop the options the target Pacemaker deprecated (their defaults are what we set)."""
    if targets.pacemaker < (3, 0, 0):
        return options
    return [(k, v) for k, v in options if k not in DEPRECATED_IN_3]


def drbd_clones(spec: Spec, profile: Profile, targets: Targets) -> list[DrbdClone]:
    """One promotable clone per DRBD resource (not per volume): a grouped resource is
    promoted, demoted and fenced as one."""
    meta: tuple[tuple[str, str], ...] = (
        ("promotable", "true"),
        ("promoted-max", "1"),
        ("promoted-node-max", "1"),
        ("clone-max", "2"),
        ("clone-node-max", "1"),
        ("notify", "true"),
        ("interleave", "true"),
    )
    if targets.pacemaker < (2, 1, 0):
        meta = tuple((k.replace("promoted-", "master-"), v) for k, v in meta)
    return [
        DrbdClone(f"ms_drbd_{res.name}", r.drbd_primitive(res.name, profile, targets), meta)
        for res in r.drbd_resources(spec)
    ]


def group_members(spec: Spec, inventory: Inventory, profile: Profile) -> list[Primitive]:
    """Filesystems, then the service, then the VIP: clients reach the VIP only once the
    service answers, and on stop the VIP goes first so clients fail fast."""
    members = [r.filesystem_primitive(spec, i, profile) for i in range(len(spec.volumes))]
    members.append(r.service_primitive(spec, inventory, profile))
    members += r.vip_primitives(spec, inventory, profile)
    return members


def render_cib(
    spec: Spec, inventory: Inventory, profile: Profile, targets: Targets, fence_devices: list[FenceDevice]
) -> str:
    p = profile
    return render_template(
        "pacemaker/cib.xml.j2",
        cluster=spec.cluster.name,
        profile=profile.label,
        pacemaker_version=".".join(map(str, targets.pacemaker)),
        schema=targets.schema,
        properties=cluster_properties(spec, profile, targets),
        nodes=[{"id": i, "name": n.name} for i, n in enumerate(inventory.nodes, start=1)],
        fence_devices=fence_devices,
        drbd=drbd_clones(spec, profile, targets),
        group_id=r.GROUP_ID,
        group=group_members(spec, inventory, profile),
        promoted=targets.promoted,
        topology=spec.fencing_topology,
        rsc_defaults=[
            ("resource-stickiness", str(p.num("pacemaker.resource_stickiness"))),
            ("migration-threshold", str(p.num("pacemaker.migration_threshold"))),
            ("priority", str(p.num("pacemaker.resource_priority"))),
        ],
        op_defaults=_current(
            [
                ("timeout", f"{p.num('pacemaker.op_timeout')}s"),
                ("record-pending", "true" if p.flag("pacemaker.record_pending") else "false"),
            ],
            targets,
        ),
    )
