"""How to reach one node: what a provider's node source answers, and the deploy stage dials.

It lives in the provision stage because providers make it (``NodeSource.endpoint``); the SSH
transport (:mod:`hacloud.deploy.remote`) and ``hacloud ssh`` consume it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hacloud.errors import UsageError

if TYPE_CHECKING:
    from hacloud.provision.provider import NodeSource  # it returns Endpoints: a cycle at runtime
    from hacloud.spec.workspace import Workspace


@dataclass(frozen=True)
class Endpoint:
    """How to reach one node. ``namespace``: open the socket inside this network namespace."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    jump: str | None = None
    namespace: str | None = None

    def openssh_argv(self, known_hosts: Path) -> list[str]:
        """The OpenSSH command line that logs in here with the recorded host keys: a recorded
        key is enforced (a changed one is refused); without a record the first key is kept."""
        cmd = [
            "ssh",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes" if known_hosts.exists() else "StrictHostKeyChecking=accept-new",
            "-p",
            str(self.port),
        ]
        if self.key_file:
            cmd += ["-i", self.key_file]
        if self.jump:
            cmd += ["-J", self.jump]
        cmd.append(f"{self.user}@{self.address}")
        if self.namespace:
            cmd = ["ip", "netns", "exec", self.namespace, *cmd]
        return cmd


def ssh_argv(ws: Workspace, source: NodeSource, node: str) -> list[str]:
    """The OpenSSH command line that logs in to ``node`` (found by ``source``, else planned)
    with the recorded keys and host keys; an unknown node is refused naming the known ones."""
    inventory = source.discover(ws) or source.planned_inventory(ws.spec)
    try:
        info = inventory.node(node)
    except KeyError:
        raise UsageError(
            f"no node named {node!r}",
            f"use one of: {', '.join(n.name for n in inventory.nodes)}",
            code="HAC314",
        ) from None
    return source.endpoint(ws, info).openssh_argv(ws.state_dir / "known_hosts")
