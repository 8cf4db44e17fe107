"""The end of `up`: the cluster healthy by the one judgement, leftovers converged.

Contracts:
- Healthy means what `hacloud status` says (:func:`hacloud.deploy.query.health.judge`); the
  wait ends when only reasons that waiting does not change remain (failed actions, fencing
  off, maintenance mode) and fails, naming the reasons, at its timeout, extended while a DRBD
  resync advances.
- A failed action recorded before this run whose resource runs again is cleaned
  (``crm_resource --cleanup --resource R --node N``) and is a change, so a second run reports
  none; any other failure is refused with its cleanup command and where to look first.
- Every wait runs on the engine's clock.
"""

from __future__ import annotations

from hacloud.deploy.query.health import STABLE, Health, cleanup_command, judge, leftover_failures, resync_left
from hacloud.deploy.query.pacemaker import ClusterView, crm_mon
from hacloud.deploy.query.status import ClusterStatus, gather
from hacloud.deploy.step import EngineBase
from hacloud.errors import HacloudError
from hacloud.poll import poll_until
from hacloud.render.resources import filesystem_ids
from hacloud.spec.model import DemoService, IPaddr2Vip

#: a failed action's identity across two readings: (operation key, node, last-rc-change)
FailureKey = tuple[str, str, str]


class HealthSteps(EngineBase):
    #: the failed actions Pacemaker held when this run began (see :meth:`converge_failures`)
    failures_before: frozenset[FailureKey] = frozenset()

    def _view(self) -> ClusterView | None:
        """Pacemaker's view from the first node that answers; None when none does."""
        for name in self.names:
            try:
                view = crm_mon(self.conns[name])
            except HacloudError:
                view = None
            if view is not None:
                return view
        return None

    def failure_keys(self) -> frozenset[FailureKey]:
        """The failed actions recorded now (empty when planning or when no Pacemaker runs)."""
        if not self.apply or not any(self._pacemaker_active(n) for n in self.names):
            return frozenset()
        view = self._view()
        return frozenset(f.key for f in view.failures) if view is not None else frozenset()

    def clear_stale_failures(self) -> None:
        """After `up` replaced files the resources read (a fence password, an agent), failures
        recorded under the old files would keep a resource stopped (a fence device that failed
        to start stays down until cleaned up): clear them once so Pacemaker retries with what
        was just installed. A failure that persists is recorded again and reported by the
        health wait."""
        view = crm_mon(self.conns[self.names[0]])
        failed = [f.op_key for f in view.failures] if view is not None else []
        if failed:
            self.progress(f"clearing failures recorded before this run: {', '.join(sorted(failed))}")
            self.conns[self.names[0]].run("crm_resource --cleanup >/dev/null", check=False, timeout=120)

    def wait_healthy(self, timeout: float = 300) -> None:
        """Wait until the cluster is healthy by the one judgement, clean failures recorded
        before this run whose resource runs again, check the service answers (module doc)."""
        self.progress("waiting for fencing devices, DRBD and the service group to start")
        status, health = self._settled(timeout)
        if not health.healthy:
            status = self.converge_failures(status, health)
        assert status.view is not None
        self.service_check(status.view)

    def _status(self) -> tuple[ClusterStatus, Health]:
        status = gather(self.spec, self.inventory, self.bundle, self.conns, {}, history=False)
        return status, judge(status)

    def _settled(self, timeout: float) -> tuple[ClusterStatus, Health]:
        """The cluster's state once nothing but reasons waiting does not change remains."""
        last: list[tuple[ClusterStatus, Health]] = []

        def settled() -> tuple[ClusterStatus, Health] | None:
            last[:] = [self._status()]
            return last[0] if last[0][1].only(STABLE) else None

        found = poll_until(settled, timeout=timeout, interval=2, clock=self.clock)
        before = resync_left(last[0][0]) if found is None else None
        while found is None and before is not None:
            # a resync that advances is waited for (a large disk takes longer than any timeout)
            self.progress(f"DRBD is resyncing, {before} KiB to go: waiting for it")
            found = poll_until(settled, timeout=timeout, interval=2, clock=self.clock)
            now = resync_left(last[0][0])
            before = now if found is None and now is not None and now < before else None
        if found is None:
            raise HacloudError(
                f"the cluster did not become healthy in {timeout:.0f} s: " + "; ".join(last[0][1].texts()),
                "a DRBD resync may still be running (`hacloud status` shows its progress); otherwise fix "
                "what is named (the node's /var/log/pacemaker/pacemaker.log says more), then run "
                "`hacloud up` again",
                code="HAC453",
            )
        status, health = found
        if any(r.kind == "fencing-off" for r in health.reasons):
            raise HacloudError(
                "fencing is not enabled on the cluster",
                "never run a DRBD pair without fencing: run `hacloud up` again",
                code="HAC426",
            )
        if any(r.kind == "maintenance" for r in health.reasons):
            raise HacloudError(
                "the cluster is in maintenance mode: Pacemaker monitors and recovers nothing",
                "when whoever set it is done: crm_attribute -t crm_config -n maintenance-mode -D "
                "(on any node), then run `hacloud up` again",
                code="HAC455",
            )
        return status, health

    def converge_failures(self, status: ClusterStatus, health: Health) -> ClusterStatus:
        """Clean the failed actions recorded before this run whose resource runs again (a
        change, so a second run reports none); refuse, naming each, failures it must not clean:
        recorded during this run, or of a resource that has not recovered."""
        clean, report = leftover_failures(status, health, self.failures_before)
        if report:
            raise HacloudError(
                "Pacemaker records failed actions `up` will not clear: "
                + "; ".join(f"{f.line()} at {f.last_rc_change}" for f in report),
                "find the cause in the node's /var/log/pacemaker/pacemaker.log (a fence device: its "
                "address, user and password; a resource: its agent's error) and fix it; then "
                + "; ".join(f"`{cleanup_command(f)}`" for f in report)
                + " on any node, and run `hacloud up` again",
                code="HAC456",
            )
        for f in clean:
            self.change(
                f.node,
                "cleanup",
                f"clear {f.op_key} failed at {f.last_rc_change} ({f.exitreason or f.exitstatus}): recorded "
                f"before this run, {f.resource} runs again",
            )
            self.conns[self.names[0]].run(cleanup_command(f), timeout=120)
        status, health = self._settled(60)
        if not health.healthy:
            raise HacloudError(
                "the cluster is not healthy after clearing old failures: " + "; ".join(health.texts()),
                "see `hacloud status` and the node's /var/log/pacemaker/pacemaker.log; then run "
                "`hacloud up` again",
                code="HAC457",
            )
        return status

    def service_node(self, view: ClusterView) -> str | None:
        fs = view.placements(filesystem_ids(self.spec)[0])
        return fs[0].node if fs else None

    def service_check(self, view: ClusterView, timeout: float = 60) -> str | None:
        """For the demo service on an IPaddr2 VIP: wait until /health answers on the VIP."""
        if not (isinstance(self.spec.service, DemoService) and isinstance(self.spec.vip, IPaddr2Vip)):
            return None
        url = f"http://{self.spec.vip.address}:{self.spec.service.port}/health"
        node = self.service_node(view) or self.names[0]

        def answer() -> str | None:
            result = self.conns[node].run(f"curl -fsS --max-time 3 {url}", check=False)
            return result.stdout if result.ok else None

        body = poll_until(answer, timeout=timeout, clock=self.clock)
        if body is not None:
            return body
        raise HacloudError(
            f"the service does not answer on {url}",
            "see `hacloud status` and the service's journal on the active node",
            code="HAC427",
        )
