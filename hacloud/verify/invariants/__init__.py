"""Cross-layer invariants (best-practices §3.5), checked on the rendered artefacts.

These are the rules behind ``hacloud check`` (findings ``HAC0xx``/``HAC1xx``); they are distinct
from the spec rules (:mod:`hacloud.spec.rules`, which refuse a spec before anything renders), a
provider's live audit (read-only calls against real resources) and fence-test's preflight.

Contract: :func:`run_checks` is pure and reads the CIB XML and node files of a bundle (not the
code that made them), so the same rules can judge a live cluster's configuration. It returns
one :class:`Finding` per rule and subject, severity ``ok``, ``warning`` or ``error``, in the
order of :data:`RULES`. The rules live by topic in this package's modules; each is a
:data:`~hacloud.verify.invariants.rule.Rule`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.cloud import (
    aws_cli,
    azure,
    azure_cloud,
    azure_rhel_delays,
    overlay,
    vip_interface,
)
from hacloud.verify.invariants.corosync import consensus, corosync_log, links
from hacloud.verify.invariants.drbd import drbd_policy, drbd_verify_alg, drbd_volumes
from hacloud.verify.invariants.drbd_safety import (
    drbd_fence_peer_timeout,
    drbd_freeze_tolerance,
    drbd_split_brain_policy,
)
from hacloud.verify.invariants.fencing import (
    action_knobs,
    bmc_secrets,
    fence_delay,
    fence_timeout,
    host_map,
    sbd,
    sbd_device_timing,
)
from hacloud.verify.invariants.pacemaker import deprecated_options, duplicate_params
from hacloud.verify.invariants.rule import Cib, Finding, Rule, Severity
from hacloud.verify.invariants.service import grouping, service_timeouts, umbrella_unit

__all__ = ["RULES", "Finding", "Rule", "Severity", "run_checks"]

# The order findings are reported in (`hacloud check`, `render --json`): keep it stable.
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
    """Every rule of :data:`RULES` over ``bundle``, in order; pure (reads, never writes)."""
    cib = Cib(ET.fromstring(bundle.cib))
    return [f for rule in RULES for f in rule(spec, inventory, profile, bundle, cib)]
