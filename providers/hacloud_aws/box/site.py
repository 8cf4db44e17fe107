"""The AWS provider's site when the spec asks for an emulated AWS: the box on this machine.

Contract: ``ensure`` starts the box (the guest image first: it can take minutes, and runs here,
never in the daemon) unless one already runs for this cluster, and then every API call goes to
its host listener over TLS, verified by the box's own CA, signed with its admin key. SSH starts
in the router's admin namespace (on the client subnet, so the security group's ``admin_cidr``
rule really decides), clients run in the client namespace (the Internet one for an Elastic IP),
and the faults go through the box's control socket. ``teardown`` stops the daemon (its guests and
namespaces with it) and removes whatever a dead daemon left behind, and the instances' recorded
host keys; the volume files stay unless ``delete_volumes``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError
from hacloud.spec.model import AwsEipVip, AwsOptions
from hacloud.spec.workspace import Workspace
from hacloud_aws.api import ApiAccess
from hacloud_aws.box import control, daemon, layout
from hacloud_aws.site import BOX_FAULTS

STOP_WAIT = 60.0  # the daemon stops its guests (each killed at once) and removes its namespaces


def router_name(cluster: str) -> str:
    """The box's router namespace (its admin, client and Internet namespaces are ``<this>-*``);
    distinct from the lab's ``hacloud-<cluster>``, so a lab and a box may share a cluster name."""
    return f"hacaws-{cluster}"


class BoxSite:
    faults: tuple[str, ...] = BOX_FAULTS
    can_freeze = True

    def __init__(self, ws: Workspace) -> None:
        options = getattr(ws.spec.provider, "options", None)
        assert isinstance(options, AwsOptions) and options.emulated is not None
        self.options = options
        self.emulation = options.emulated
        self.vip = ws.spec.vip
        self.root = layout.box_dir(ws.state_dir)
        self.known_hosts = ws.state_dir / "known_hosts"
        self.router = router_name(ws.spec.cluster.name)

    # -- the daemon ---------------------------------------------------------------------------

    def _info(self) -> dict[str, Any] | None:
        if not self.root.is_dir():
            return None
        return daemon.read_info(layout.BoxPaths(self.root))

    def running(self) -> bool:
        return self._info() is not None

    def ensure(self, progress: Callable[[str], None]) -> None:
        info = self._info()
        if info is not None:
            if info.get("region") != self.options.region:
                raise HacloudError(
                    f"the emulated AWS in {self.root} runs region {info.get('region')}, and the spec "
                    f"says {self.options.region}",
                    "run `hacloud down` (it stops the emulated AWS), then `hacloud up`",
                    code="HAC720",
                )
            return
        from hacloud_aws.box import guests

        paths = layout.prepare(self.root)
        progress("emulated AWS: the guest image (instances boot from it)")
        guests.ensure_image(paths.root, progress)
        progress(f"emulated AWS: starting it ({self.options.region}, router namespace {self.router})")
        stop = self.emulation.stop
        box = daemon.launch(
            daemon.BoxConfig(
                paths.root,
                self.options.region,
                router=self.router,
                guests=True,
                graceful_timeout_s=stop.graceful_timeout_s,
                hypervisor_delay_s=stop.hypervisor_delay_s,
                memory_mib=self.emulation.memory_mib,
            )
        )
        progress(f"emulated AWS: ready in {box.info.get('startup_s')} s (daemon pid {box.proc.pid})")

    def api(self) -> ApiAccess:
        info = self._info()
        if info is None:
            raise HacloudError(
                f"the emulated AWS of this cluster is not running ({self.root})",
                "run `hacloud up` (it starts it); the instances of a stopped emulator are gone with it",
                code="HAC721",
            )
        paths = layout.BoxPaths(self.root)
        admin = json.loads(paths.admin_json.read_text(encoding="utf-8"))
        return ApiAccess(
            endpoint_url=f"https://127.0.0.1:{info['port']}",
            verify=str(paths.ca_pem),
            key_id=admin["access_key_id"],
            secret=admin["secret_access_key"],
        )

    def teardown(self, delete_volumes: bool, progress: Callable[[str], None]) -> None:
        info = self._info()
        if info is not None:
            progress(f"emulated AWS: stopping it (pid {info['pid']}), its guests and its network")
            _stop_pid(int(info["pid"]))
        from hacloud_aws.box.net import Router

        Router(self.router).destroy()  # what a killed daemon left: namespaces and their processes
        # the instances are gone with the emulator, and the next ones reuse its seeded addresses
        # with new host keys: keeping the old keys would refuse them as impostors
        self.known_hosts.unlink(missing_ok=True)
        if not self.root.exists():
            return
        if delete_volumes:
            shutil.rmtree(self.root)
            return
        shutil.rmtree(self.root / "guests", ignore_errors=True)  # the root disks end with their instances
        kept = sorted((self.root / "volumes").glob("*.img")) if (self.root / "volumes").is_dir() else []
        if kept:
            progress(
                f"emulated AWS: kept {len(kept)} volume file(s) in {self.root / 'volumes'} "
                "(`hacloud down --delete-volumes` removes them)"
            )

    # -- where things run ---------------------------------------------------------------------

    def ssh_namespace(self) -> str | None:
        return f"{self.router}-admin"

    def client_argv(self, argv: list[str]) -> list[str]:
        # an Elastic IP is reached from the Internet; an overlay IP from inside the VPC
        where = "inet" if isinstance(self.vip, AwsEipVip) else "client"
        return ["ip", "netns", "exec", f"{self.router}-{where}", *argv]

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        return control.call(layout.BoxPaths(self.root).sock, request, timeout=30.0)

    def freeze(self, instance_id: str) -> bool:
        self._control({"op": "freeze", "instance": instance_id})
        return True

    def partition(self, cut: bool) -> None:
        self._control({"op": "fault", "kind": "partition", "on": cut})


def _stop_pid(pid: int, timeout: float = STOP_WAIT) -> None:
    """SIGTERM the daemon and wait for it to end (SIGKILL to its group after ``timeout``)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
