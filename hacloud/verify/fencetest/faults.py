"""The faults fence-test injects, as objects: what each needs, how it is injected and healed,
and which node loses.

Contract: :data:`FAULTS` holds one :class:`Fault` per :class:`FaultMethod` (the CLI's
``--method`` choices are the enum); ``inject`` acts behind the cluster's back through the
provider, or through a node as an administrator would (``fence``: ``stonith_admin``; ``crash``
without a provider freeze: sysrq); ``heal`` undoes what the cluster does not (a partition's cut
links), and is safe to call whatever happened; ``loser`` returns (fenced node, survivor) once
the fault has played out. This module imports nothing heavy: the CLI reads the enum at start.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from hacloud.errors import HacloudError, InterruptedWork, UsageError
from hacloud.poll import poll_until

if TYPE_CHECKING:
    from hacloud.provision.provider import Capabilities, PowerControl
    from hacloud.spec.model import Spec
    from hacloud.spec.workspace import Workspace
    from hacloud.verify.fencetest.ports import Pending, Rig

#: how long a partition may take until the cluster has fenced one side (seconds)
PARTITION_FENCE_WAIT = 120.0


class FaultMethod(StrEnum):
    """The fault methods, in the order ``--help`` lists them."""

    FENCE = "fence"
    POWER = "power"
    CRASH = "crash"
    PARTITION = "partition"


class Fault:
    """A fault method. Subclasses set ``method`` and ``summary`` and override what differs."""

    method: ClassVar[FaultMethod]
    summary: ClassVar[str]  # one phrase for --help

    def unsupported(self, provider: PowerControl, spec: Spec) -> UsageError | None:
        """Why ``provider`` cannot inject this fault into ``spec``'s cluster (None: it can)."""
        return None

    def expected(self, active: str, standby: str, node: str | None) -> tuple[str, str]:
        """(node expected to lose, survivor) before the fault: ``node`` or the active one."""
        victim = node or active
        return victim, standby if victim == active else active

    def inject(self, rig: Rig, victim: str, survivor: str) -> Pending | None:
        raise NotImplementedError

    def heal(self, rig: Rig) -> None:
        """Undo what the cluster will not undo itself (nothing for most faults)."""

    def loser(self, rig: Rig, victim: str, survivor: str) -> tuple[str, str]:
        """(fenced node, survivor) after the fault: the expected ones unless the cluster decides."""
        return victim, survivor

    def left_behind(self, victim: str, power: PowerControl) -> str:
        """What an interrupted round leaves, said to the user."""
        raise NotImplementedError


def _needs_power_control(capabilities: Capabilities, name: str) -> UsageError | None:
    if capabilities.power_control:
        return None
    missing = capabilities.missing
    return UsageError(
        f"the {name} provider cannot power nodes off behind the cluster's back"
        + (f" ({missing['power_control']})" if "power_control" in missing else ""),
        "use --method fence, which fences through the cluster",
        code="HAC506",
    )


class FenceFault(Fault):
    method = FaultMethod.FENCE
    summary = "through the cluster"

    def inject(self, rig: Rig, victim: str, survivor: str) -> Pending | None:
        # ask the cluster itself, from the survivor, as an administrator would; it runs on
        # (it returns once the fence is done) while the round watches the client
        return rig.cluster.request_fence(survivor, victim, rig.plan.fence_timeout)

    def left_behind(self, victim: str, power: PowerControl) -> str:
        return f"the cluster was asked to fence {victim}; it is off or being powered off"


class PowerFault(Fault):
    method = FaultMethod.POWER
    summary = "pull the plug"

    def unsupported(self, provider: PowerControl, spec: Spec) -> UsageError | None:
        return _needs_power_control(provider.capabilities_for(spec), provider.name)

    def inject(self, rig: Rig, victim: str, survivor: str) -> Pending | None:
        rig.power.power_off(rig.ws, victim)
        return None

    def left_behind(self, victim: str, power: PowerControl) -> str:
        return f"{victim} was powered off by the test and stays off"


class CrashFault(Fault):
    method = FaultMethod.CRASH
    summary = "freeze the node"

    def unsupported(self, provider: PowerControl, spec: Spec) -> UsageError | None:
        return _needs_power_control(provider.capabilities_for(spec), provider.name)

    def inject(self, rig: Rig, victim: str, survivor: str) -> Pending | None:
        if not rig.power.freeze(rig.ws, victim):
            # A kernel crash that leaves the machine on (no reboot on panic): it stops answering.
            rig.cluster.crash_kernel(victim)
        return None

    def left_behind(self, victim: str, power: PowerControl) -> str:
        return power.freeze_hint(victim)


class PartitionFault(Fault):
    method = FaultMethod.PARTITION
    summary = "cut the links between the nodes"

    def unsupported(self, provider: PowerControl, spec: Spec) -> UsageError | None:
        capabilities = provider.capabilities_for(spec)
        if "partition" in capabilities.faults:
            return None
        missing = capabilities.missing
        return UsageError(
            f"the {provider.name} provider cannot cut the network between the nodes"
            + (f" ({missing['partition']})" if "partition" in missing else ""),
            "use --method power, crash or fence",
            code="HAC507",
        )

    def expected(self, active: str, standby: str, node: str | None) -> tuple[str, str]:
        # the side without the service is expected to lose; the cluster decides (see loser)
        return standby, active

    def inject(self, rig: Rig, victim: str, survivor: str) -> Pending | None:
        rig.power.partition(rig.ws, True)
        return None

    def heal(self, rig: Rig) -> None:
        rig.power.partition(rig.ws, False)

    def loser(self, rig: Rig, victim: str, survivor: str) -> tuple[str, str]:
        """Which side was fenced: the one whose power the provider reports off."""
        nodes = rig.plan.nodes

        def off() -> list[str] | None:
            down = [n for n in nodes if rig.power.power(rig.ws, n) == "off"]
            return down or None

        down = poll_until(off, timeout=PARTITION_FENCE_WAIT, interval=1.0, clock=rig.clock)
        if down is None:
            raise HacloudError(
                f"no node was fenced within {PARTITION_FENCE_WAIT:.0f} s of the partition",
                "check the fence devices and fencing history (`hacloud status`)",
                code="HAC515",
            )
        if len(down) == 2:
            raise HacloudError(
                "both nodes were fenced in the partition",
                "raise pacemaker.priority_fencing_delay",
                code="HAC516",
            )
        return down[0], next(n for n in nodes if n != down[0])

    def left_behind(self, victim: str, power: PowerControl) -> str:
        return (
            "the links between the nodes were cut and have been restored; the cluster may "
            f"have fenced one node ({victim} was expected to lose), which then stays off"
        )


#: the registry: one fault per method, in FaultMethod's order
FAULTS: dict[FaultMethod, Fault] = {
    f.method: f for f in (FenceFault(), PowerFault(), CrashFault(), PartitionFault())
}

#: ``--method``'s help, from the registry
FAULT_HELP = "; ".join(f"{f.method}: {f.summary}" for f in FAULTS.values())


def fault_for(method: str) -> Fault:
    """The fault of ``method``, or a usage error listing the methods."""
    try:
        return FAULTS[FaultMethod(method)]
    except ValueError:
        raise UsageError(
            f"unknown method {method!r}", f"use one of: {', '.join(FAULTS)}", code="HAC500"
        ) from None


def interrupted_after_fault(ws: Workspace, power: PowerControl, method: str, victim: str) -> InterruptedWork:
    """What Ctrl-C after the fault leaves behind, and how to bring the node back (in the
    provider's words: its hooks). The links of a partition are healed on the way out (the
    round's ``finally``) before this is shown."""
    power_on = power.power_on_hint(ws, victim)
    state = fault_for(method).left_behind(victim, power)
    if method == FaultMethod.CRASH:
        remedy = f"bring it back with {power.power_cycle_hint(ws, victim)}"
    else:
        remedy = f"if it is off, power it on with {power_on}"
    return InterruptedWork(
        f"fence-test interrupted after the {method} fault: {state}; the round was not recorded",
        f"{remedy}; it rejoins and DRBD resyncs by itself: wait until `hacloud status -f "
        f"{ws.spec_path}` reports healthy before anything else",
        code="HAC530",
    )
