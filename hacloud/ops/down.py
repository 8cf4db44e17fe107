"""`hacloud down`: stop what hacloud started; data stays unless asked.

Contract: runs under the cluster lock (never under a running `up`, `failover` or
`fence-test`); drop-in clusters (nodes from Terraform) lose only their cluster configuration
and what hacloud added around the nodes; ``purge`` asks the provider to drop its caches (a
hook: the lab's image cache), never by the provider's kind.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from hacloud.deploy.session import ClusterLock, open_session, workspace
from hacloud.provision.dropin import provider_for
from hacloud.provision.terraform import TerraformSource
from hacloud.render.resources import drbd_resources
from hacloud.spec.inventory import Inventory
from hacloud.spec.workspace import Workspace


def down(
    spec_path: Path,
    delete_volumes: bool,
    purge: bool,
    terraform: TerraformSource | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Take the cluster down. Drop-in (nodes from Terraform): stop the cluster and remove its
    configuration from the nodes, then what hacloud added around them; the machines and disks
    stay (they are Terraform's), and so does the data on the disks."""
    ws = workspace(spec_path, progress, terraform)
    provider = provider_for(ws)
    # the cluster lock: never tear down under a running `up`, `failover` or `fence-test`
    with ClusterLock(ws):
        if ws.terraform is not None:
            if delete_volumes or purge:
                provider.teardown(ws, delete_volumes=True)  # refuses, naming terraform destroy
            inventory = provider.discover(ws)
            assert inventory is not None
            remove_cluster_config(ws, inventory)
            provider.teardown(ws)
            return
        provider.teardown(ws, delete_volumes=delete_volumes or purge)
        if purge:
            provider.purge(ws)


def remove_cluster_config(ws: Workspace, inventory: Inventory) -> None:
    """Drop-in `down`: stop the cluster and remove what hacloud installed on the nodes (the
    files it rendered, the CIB), leaving the machines, the packages and the data disks as they
    are: DRBD's metadata and the filesystem stay on the backing devices, so a later `up` finds
    the data again."""
    session = open_session(ws, inventory, tolerate_down=True)
    try:
        for name, conn in session.conns.items():
            ws.progress(f"{name}: stopping pacemaker and corosync, removing the cluster configuration")
            paths = sorted({f.path for f in session.bundle.files.get(name, [])})
            res = " ".join(shlex.quote(r.name) for r in drbd_resources(ws.spec))
            conn.run(
                "systemctl disable --now pacemaker corosync >/dev/null 2>&1 || true; "
                f'for r in {res}; do drbdadm down "$r" >/dev/null 2>&1 || true; done; '
                f"rm -f {' '.join(shlex.quote(p) for p in paths)} /var/lib/pacemaker/cib/cib*",
            )
        for node in inventory.nodes:
            if node.name not in session.conns:
                ws.progress(f"{node.name}: not reachable; its cluster configuration stays until it is")
    finally:
        session.close()
