"""Pure rendering of everything a cluster needs: spec + inventory + profile + secrets -> files.

Contract: :func:`render_all` reads nothing and writes nothing; equal input gives equal output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hacloud.render.cib import render_cib, stonith_timeout
from hacloud.render.fencepath import Device, FencePath, fence_path
from hacloud.render.fencing import fence_devices
from hacloud.render.files import node_files, retired_files
from hacloud.render.versions import Targets, resolve_targets
from hacloud.spec.inventory import FenceDevice, Inventory, RenderedFile
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.spec.secrets import ClusterSecrets


@dataclass(frozen=True)
class Bundle:
    """What one cluster needs: the CIB and each node's files (by node name); ``retired``: paths
    (by node name) that must not exist there, which `up` removes if an older version left them."""

    cib: str
    files: Mapping[str, tuple[RenderedFile, ...]]
    targets: Targets
    fence_devices: tuple[FenceDevice, ...]
    retired: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def effective_profile(spec: Spec, profile: Profile, inventory: Inventory | None = None) -> Profile:
    """The profile in force: its variant for the nodes' OS family (facts read from the nodes,
    else the profile's ``platform.os_family``), then the spec's overrides on top."""
    return profile.for_os(os_family(inventory, profile)).with_overrides(spec.overrides)


def os_family(inventory: Inventory | None, profile: Profile) -> str:
    """The nodes' OS family, as :func:`~hacloud.render.versions.resolve_targets` picks it."""
    default = profile.text("platform.os_family")
    families = {n.facts.os_family or default for n in inventory.nodes} if inventory else {default}
    return sorted(families)[0]


def cluster_fence_path(
    spec: Spec, profile: Profile, targets: Targets, devices: list[FenceDevice]
) -> FencePath:
    """The fence path of the cluster as rendered: corosync timers, priority-fencing-delay,
    the fencing timeout and every device's own timeout and delay for the configured action."""
    return fence_path(
        profile.num("corosync.token"),
        profile.num("corosync.consensus"),
        profile.num("pacemaker.priority_fencing_delay"),
        stonith_timeout(spec, profile),
        profile.text("pacemaker.stonith_action"),
        (Device(d.target, dict(d.primitive.params)) for d in devices),
    )


def render_all(
    spec: Spec,
    inventory: Inventory,
    profile: Profile,
    secrets: ClusterSecrets,
    fence_passwords: Mapping[str, str] | None = None,
) -> Bundle:
    """Render the bundle; ``profile`` must already carry the spec's overrides."""
    targets = resolve_targets(spec, inventory, profile)
    devices = fence_devices(spec, inventory, profile)
    cib = render_cib(spec, inventory, profile, targets, devices)
    path = cluster_fence_path(spec, profile, targets, devices)
    files = {
        node.name: tuple(
            node_files(spec, inventory, node, profile, targets, secrets, fence_passwords or {}, path)
        )
        for node in inventory.nodes
    }
    retired = {node.name: retired_files(spec, node) for node in inventory.nodes}
    return Bundle(cib, files, targets, tuple(devices), retired)
