"""The stop model (design §3.4): what a StopInstances does to a guest, and when.

AWS documents that a default stop, and a ``Force`` stop, first shut the OS down gracefully (the
ACPI power button), and a forced stop kills the instance when that does not finish within a
timeout AWS does not publish; ``SkipOsShutdown`` skips the graceful part. The box models it as:

- ``SkipOsShutdown``: kill (the hypervisor pulls the plug) ``hypervisor_delay_s`` after the call;
- otherwise: press the power button (UML mconsole ``cad``, which the image maps to
  ``poweroff.target``) at once, and kill the guest if it is still on ``graceful_timeout_s`` after
  the call (120 s by default: AWS publishes no number). A frozen guest cannot shut down, so it
  waits the grace out, as a hung instance does on EC2.

``next_step`` is pure (time is passed in), so the timing is tested with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

GRACEFUL_TIMEOUT_S = 120.0
HYPERVISOR_DELAY_S = 0.0


@dataclass
class StopJob:
    instance: str
    skip_os_shutdown: bool
    started: float  # the controller's clock when the stop was requested
    cad_sent: bool = False
    killed: bool = False


def next_step(
    job: StopJob, now: float, guest_on: bool, graceful_timeout_s: float, hypervisor_delay_s: float
) -> str:
    """What to do now: ``done`` (the guest is off: the instance is ``stopped``), ``kill``,
    ``cad`` (press the power button) or ``wait``."""
    if not guest_on:
        return "done"
    if job.killed:
        return "wait"  # a kill is under way
    elapsed = now - job.started
    if job.skip_os_shutdown:
        return "kill" if elapsed >= hypervisor_delay_s else "wait"
    if elapsed >= graceful_timeout_s:
        return "kill"
    return "wait" if job.cad_sent else "cad"


def merge(current: StopJob | None, new: StopJob) -> StopJob:
    """A second StopInstances on a stopping instance: a SkipOsShutdown one escalates a graceful
    stop to a kill (counted from the new call); otherwise the first stop keeps its clock."""
    if current is None:
        return new
    if new.skip_os_shutdown and not current.skip_os_shutdown:
        return StopJob(current.instance, True, new.started, current.cad_sent, current.killed)
    return current
