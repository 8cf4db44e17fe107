"""Build the cluster's fence devices (stonith primitives) as data (pure).

Contract: every function here is pure: (spec, inventory, profile) in, frozen
:class:`~hacloud.spec.inventory.FenceDevice` values out, one per (fencing method, target node);
providers return them from ``Provider.fencing``. BMC passwords never enter the CIB: devices
read them from a 0600 file under :data:`FENCING_SECRET_DIR` on the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hacloud.render.resources import xml_id
from hacloud.spec.inventory import FenceDevice, Inventory, Op, Primitive
from hacloud.spec.model import (
    AwsFencing,
    AzureFencing,
    FencingSpec,
    IpmiFencing,
    RedfishFencing,
    SbdFencing,
    Spec,
)
from hacloud.spec.profiles import Profile

FENCING_SECRET_DIR = "/etc/hacloud/fencing"  # noqa: S105 (a directory, not a password)


def _fence_common(profile: Profile, target: str, sbd: bool = False) -> list[tuple[str, str]]:
    """Pacemaker's device parameters and the agent's power timing."""
    p = profile.num
    params = [("pcmk_host_list", target)]
    if p("fencing.pcmk_delay_max"):
        params.append(("pcmk_delay_max", f"{p('fencing.pcmk_delay_max')}s"))
    if p("fencing.pcmk_delay_base"):
        params.append(("pcmk_delay_base", f"{p('fencing.pcmk_delay_base')}s"))
    params += _sbd_timing(profile) if sbd else _agent_timing(profile)
    if p("fencing.power_wait") >= 0:  # -1: the agent's own default
        params.append(("power_wait", str(p("fencing.power_wait"))))
    return params


# Pacemaker reads pcmk_<action>_timeout/_retries for the action it runs (the cluster's
# stonith-action); knobs for another action would be dead configuration.


def _agent_timing(profile: Profile) -> list[tuple[str, str]]:
    """A power-switching agent (BMC, cloud API): the profile's fencing timing."""
    p, action = profile.num, fence_action(profile)
    params = [
        (f"pcmk_{action}_timeout", str(p("fencing.reboot_timeout"))),
        (f"pcmk_{action}_retries", str(p("fencing.reboot_retries"))),
        ("power_timeout", str(p("fencing.power_timeout"))),
    ]
    if p("fencing.pcmk_monitor_timeout"):  # 0: the fencer's default (stonith-timeout)
        params.append(("pcmk_monitor_timeout", str(p("fencing.pcmk_monitor_timeout"))))
    return params


def _sbd_timing(profile: Profile) -> list[tuple[str, str]]:
    """SBD's own timing, not the power agents' (Azure: 210, not fence_azure_arm's 900/240): a
    poison pill is done once msgwait has passed, which the SBD stonith-timeout covers."""
    action = fence_action(profile)
    return [
        (f"pcmk_{action}_timeout", str(sbd_stonith_timeout(profile))),
        (f"pcmk_{action}_retries", str(profile.num("fencing.reboot_retries"))),
        ("power_timeout", str(sbd_power_timeout(profile))),
    ]


def sbd_stonith_timeout(profile: Profile) -> int:
    """The fence timeout an SBD poison pill needs (the profile's SBD value, checked by HAC012)."""
    return profile.num("pacemaker.stonith_timeout_sbd")


def sbd_power_timeout(profile: Profile) -> int:
    """fence_sbd warns unless power_timeout > msgwait (the sbd message blocks for msgwait);
    1.2 x msgwait is crmsh's margin for the same wait (sbd.py)."""
    return math.ceil(1.2 * profile.num("sbd.msgwait"))


def fence_action(profile: Profile) -> str:
    """The fence action the cluster requests: ``off`` or ``reboot`` (stonith-action)."""
    return "off" if profile.text("pacemaker.stonith_action") in ("off", "poweroff") else "reboot"


def _fence_ops(profile: Profile, sbd: bool = False) -> tuple[Op, ...]:
    p = profile.num
    # An SBD device's monitor reads a local disk: no cloud API to spare (MS-SLES 600/15).
    monitor = "fencing.sbd_monitor" if sbd else "fencing.monitor"
    return (
        Op("start", 0, p("fencing.start_timeout")),
        Op("monitor", p(f"{monitor}_interval"), p(f"{monitor}_timeout")),
    )


def secret_path(target: str) -> str:
    return f"{FENCING_SECRET_DIR}/{target}.secret"


def _ipmi(method: IpmiFencing, target: str, inventory: Inventory, profile: Profile) -> list[tuple[str, str]]:
    bmc = method.nodes[target]
    return [
        ("ip", bmc.ip),
        ("ipport", str(bmc.port)),
        ("username", bmc.username),
        ("lanplus", "1" if bmc.lanplus else "0"),
        # The password stays in a 0600 file on the node, out of the world-readable CIB.
        ("password_script", f"/bin/cat {secret_path(target)}"),
    ]


def _redfish(
    method: RedfishFencing, target: str, inventory: Inventory, profile: Profile
) -> list[tuple[str, str]]:
    bmc = method.nodes[target]
    params = [
        ("ip", bmc.ip),
        ("ipport", str(bmc.port)),
        ("username", bmc.username),
        ("ssl", "1"),
        ("password_script", f"/bin/cat {secret_path(target)}"),
    ]
    # Without systems_uri the agent discovers the system from /redfish/v1: a fixed URI would
    # switch that off, and vendors differ (HPE iLO /Systems/1, Dell iDRAC /Systems/System.Embedded.1).
    if bmc.systems_uri:
        params.append(("systems_uri", bmc.systems_uri))
    if bmc.ssl_insecure:
        params.append(("ssl_insecure", "1"))
    return params


def _sbd(method: SbdFencing, target: str, inventory: Inventory, profile: Profile) -> list[tuple[str, str]]:
    return [("devices", ",".join(method.devices))]


def _aws(
    method: AwsFencing, target: str, inventory: Inventory, profile: Profile, region: str
) -> list[tuple[str, str]]:
    instance = method.nodes[target].instance_id if target in method.nodes else inventory.node(target).id
    return [("region", region), ("pcmk_host_map", f"{target}:{instance}")]


def _azure(
    method: AzureFencing, target: str, inventory: Inventory, profile: Profile, subscription: str, group: str
) -> list[tuple[str, str]]:
    vm = method.nodes[target].vm_name if target in method.nodes else inventory.node(target).id
    return [
        ("msi", "true"),
        ("subscriptionId", subscription),
        ("resourceGroup", group),
        ("pcmk_host_map", f"{target}:{vm}"),
        ("pcmk_monitor_retries", "4"),
        ("pcmk_action_limit", "3"),
    ]


def fence_devices(spec: Spec, inventory: Inventory, profile: Profile) -> list[FenceDevice]:
    """One device per (method, target): the survivor never has to start a device before it can
    fence, and per-target delays stay possible (testbed.md: fewer ops on the critical path)."""
    out: list[FenceDevice] = []
    for level, method in enumerate(spec.fencing, start=1):
        kind_params = _kind_params(spec, method)
        for node in inventory.nodes:
            sbd = isinstance(method, SbdFencing)
            params = kind_params(node.name, inventory, profile) + _fence_common(profile, node.name, sbd)
            if any(k == "pcmk_host_map" for k, _ in params):
                params = [(k, v) for k, v in params if k != "pcmk_host_list"]
            suffix = "" if level == 1 else f"_l{level}"
            meta: tuple[tuple[str, str], ...] = ()
            if isinstance(method, AzureFencing):
                meta = (("failure-timeout", "120s"),)
            prim = Primitive(
                f"fence_{xml_id(node.name)}{suffix}",
                "stonith",
                _agent(method),
                params=tuple(params),
                meta=meta,
                ops=_fence_ops(profile, sbd),
                avoid=node.name,
            )
            out.append(FenceDevice(prim, node.name, level))
    return out


def _agent(method: FencingSpec) -> str:
    return "fence_sbd" if isinstance(method, SbdFencing) else method.kind


def _kind_params(
    spec: Spec, method: FencingSpec
) -> Callable[[str, Inventory, Profile], list[tuple[str, str]]]:
    if isinstance(method, IpmiFencing):
        return lambda t, i, p: _ipmi(method, t, i, p)
    if isinstance(method, RedfishFencing):
        return lambda t, i, p: _redfish(method, t, i, p)
    if isinstance(method, SbdFencing):
        return lambda t, i, p: _sbd(method, t, i, p)
    if isinstance(method, AwsFencing):
        region = method.region or _provider_option(spec, "region")
        return lambda t, i, p: _aws(method, t, i, p, region)
    assert isinstance(method, AzureFencing)
    subscription = method.subscription_id or _provider_option(spec, "subscription_id")
    group = method.resource_group or _provider_option(spec, "resource_group")
    cloud = azure_cloud(spec, method)
    return lambda t, i, p: (
        _azure(method, t, i, p, subscription, group) + ([("cloud", cloud)] if cloud != "public" else [])
    )


def azure_cloud(spec: Spec, method: AzureFencing) -> str:
    """The cloud fence_azure_arm talks to: the spec's choice, else the ARM endpoint's
    (validated by the spec loader), else public."""
    from hacloud.spec.azurecloud import cloud_of

    endpoint = _provider_option(spec, "arm_endpoint")
    return method.cloud or (cloud_of(endpoint) if endpoint else None) or "public"


def aws_region(spec: Spec) -> str:
    """The region the AWS agents talk to: the fence_aws method's, else the provider's."""
    for method in spec.fencing:
        if isinstance(method, AwsFencing) and method.region:
            return method.region
    return _provider_option(spec, "region")


def _provider_option(spec: Spec, name: str) -> str:
    options = getattr(spec.provider, "options", None)
    return str(getattr(options, name, ""))
