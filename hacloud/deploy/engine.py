"""The deploy engine: read each node, then change only what differs, in a safe order.

Contracts:
- Every step re-reads the state it depends on right before acting, so a run that stopped
  anywhere (a broken connection, a killed process) converges when run again.
- With ``apply=False`` (``hacloud plan``) nothing is changed; the same steps report what they
  would do. A converged cluster yields no :class:`Change` at all.
- Data safety: DRBD metadata is created only on a disk with no metadata and no filesystem or
  partition signature, unless ``force``; every volume of a resource is probed on both nodes
  before the first create-md, and a probe that cannot answer refuses (never reads as blank);
  a filesystem is made only on a brand-new device that Pacemaker does not manage yet; the
  full initial sync is skipped only for volumes whose both sides carry brand-new metadata
  (nothing to keep). A running DRBD resource is never given, or robbed of, volumes.
- Fencing is never disabled: the CIB is applied as a diff (``crm_diff`` + ``cibadmin
  --patch``), in maintenance mode when resources change, and the run ends only when the
  cluster is healthy by :func:`hacloud.deploy.query.health.judge` (what `status` says), after
  cleaning failures recorded before the run whose resource runs again
  (:mod:`hacloud.deploy.healthsteps`).
- Every wait runs on the ``clock`` the engine is given (default the system clock).

The steps live by stage: :mod:`hacloud.deploy.facts` (what a node has),
:mod:`hacloud.deploy.install` (packages, provider checks, files), :mod:`hacloud.deploy.drbdsteps`
(metadata, initial sync, filesystems), :mod:`hacloud.deploy.cib` (the configuration diff); this
module composes them and owns the cluster services and the health wait.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from hacloud.deploy.cib import CibSteps
from hacloud.deploy.drbdsteps import DrbdSteps
from hacloud.deploy.healthsteps import HealthSteps
from hacloud.deploy.install import InstallSteps
from hacloud.deploy.query.pacemaker import ClusterView
from hacloud.deploy.step import on_nodes
from hacloud.errors import HacloudError
from hacloud.poll import poll_until
from hacloud.provision.changes import Change

# ---------------------------------------------------------------- the engine


class Engine(InstallSteps, DrbdSteps, CibSteps, HealthSteps):
    """Converges two nodes to the bundle rendered for them (see the module doc). Construct with
    the spec, inventory, bundle, a connection per node and a progress callback; ``apply=False``
    only plans; ``force`` lets create-md go over a disk that holds a signature; ``needs`` are
    the provider's packages, commands and checks; ``clock`` drives every wait."""

    def run_all(self) -> list[Change]:
        self.read_facts()
        self.failures_before = self.failure_keys()
        self.drbd_layout()
        self.packages()
        self.host_names()
        changed_files = self.files()
        self.drbd(changed_files)
        self.cluster_services(changed_files)
        self.node_probes()
        if self.apply or self._cluster_running():
            self.cib()
        else:
            self.change("", "cib", "apply the whole configuration once the cluster runs")
        if self.apply:
            if any(changed_files.values()):
                self.clear_stale_failures()
            self.wait_healthy()
        return self.changes

    # -------------------------------------------------------------- corosync, pacemaker

    def _cluster_running(self) -> bool:
        return all(self.facts[n].services.get("pacemaker", ("", ""))[1] == "active" for n in self.names)

    def cluster_services(self, changed_files: dict[str, set[str]]) -> None:
        corosync_changed = [
            n
            for n in self.names
            if "/etc/corosync/corosync.conf" in changed_files[n]
            or "/etc/corosync/authkey" in changed_files[n]
        ]
        for service in ("corosync", "pacemaker"):
            to_start = [n for n in self.names if self.facts[n].services.get(service, ("", ""))[1] != "active"]
            to_enable = [
                n for n in self.names if self.facts[n].services.get(service, ("", ""))[0] != "enabled"
            ]
            for n in sorted(set(to_start) | set(to_enable)):
                self.change(n, service, "enable and start")
            if service == "corosync" and corosync_changed and not to_start:
                self.change("", "corosync", "reload the new configuration (corosync-cfgtool -R)")
                if self.apply:
                    self.conns[self.names[0]].run("corosync-cfgtool -R")
            if self.apply and (to_start or to_enable):
                # Both at once: with two_node/wait_for_all each waits for its peer once.
                command = f"systemctl enable {service} && systemctl start {service}"
                on_nodes(partial(self._run_on, command=command), sorted(set(to_start) | set(to_enable)))
        if self.apply:
            self._wait(
                lambda view: sorted(view.online_nodes()) == sorted(self.names),
                "both nodes online in the cluster",
                240,
            )

    def _run_on(self, name: str, *, command: str) -> None:
        self.conns[name].run(command, timeout=180)

    def _wait(self, ok: Callable[[ClusterView], bool], what: str, timeout: float) -> ClusterView:
        """The first cluster state (crm_mon from the first node that answers) that ``ok``
        accepts within ``timeout``; else an error naming the failed actions last recorded."""
        last: list[ClusterView | None] = [None]

        def probe() -> ClusterView | None:
            last[0] = self._view()
            return last[0] if last[0] is not None and ok(last[0]) else None

        view = poll_until(probe, timeout=timeout, interval=2, clock=self.clock)
        if view is not None:
            return view
        seen = last[0].failures if last[0] is not None else ()
        failures = [f"{f.op_key} on {f.node}: {f.exitreason or f.exitstatus}" for f in seen]
        detail = "; ".join(failures) if failures else "no failed action recorded"
        raise HacloudError(
            f"timed out waiting for {what} ({detail})",
            "inspect the cluster with `hacloud status` and the node's /var/log/pacemaker/pacemaker.log; "
            "then run `hacloud up` again",
            code="HAC425",
        )
