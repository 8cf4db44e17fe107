"""`hacloud ssh`: the OpenSSH command line to a node, with the recorded keys and host keys."""

from __future__ import annotations

from pathlib import Path

from hacloud.deploy.session import workspace
from hacloud.provision.dropin import provider_for
from hacloud.provision.endpoint import ssh_argv


def ssh_command(spec_path: Path, node: str) -> list[str]:
    """The OpenSSH command line that reaches ``node`` with the recorded keys and host keys
    (refused, exit 2, for a node the cluster does not have)."""
    ws = workspace(spec_path)
    return ssh_argv(ws, provider_for(ws), node)
