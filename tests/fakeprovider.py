"""A fake provider backed by an in-memory "cloud", for tests that need a provider without
root, guests, a network or an account (register it with ``hacloud.provision.provider.registered``).

It plays the node-source and power-control roles for real against its :class:`FakeCloud`:
machines and disks carry the cluster's tag, ``ensure_*`` create only what is missing,
``teardown`` keeps the data disks unless asked, and power changes are logged with the time of
the injected clock. :meth:`FakeCloud.census` and :meth:`FakeCloud.leftovers` read the cloud
itself, never what the provider returned, so the shared contract (tests/contract.py) judges
it as it judges AWS and Azure. Addresses are the lab's TEST-NET ranges (RFC 5737); nothing is
ever dialled unless a test points an endpoint at a loopback port it owns.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from hacloud.poll import Clock, ManualClock
from hacloud.provision.endpoint import Endpoint
from hacloud.provision.provider import BaseProvider, Capabilities, PowerChange, PowerState
from hacloud.spec.inventory import Inventory, NodeInfo
from hacloud.spec.workspace import Workspace

TAG = "hacloud:cluster"


@dataclass
class FakeCloud:
    """What exists: machines and disks by id, each with its tags; nothing else."""

    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def census(self) -> dict[str, Any]:
        return copy.deepcopy({"machines": self.machines, "disks": self.disks})

    def leftovers(self) -> dict[str, list[str]]:
        return {
            "machines": sorted(i for i, m in self.machines.items() if TAG in m["tags"]),
            "volumes": sorted(i for i, d in self.disks.items() if TAG in d["tags"]),
        }


class FakeProvider(BaseProvider):
    """Nodes, disks and power in a :class:`FakeCloud` (see the module doc)."""

    name = "fake"
    capabilities = Capabilities(
        create_nodes=True,
        power_control=True,
        faults=("fence", "power"),
        missing={
            "crash": "a fake machine has no kernel to freeze",
            "partition": "a fake machine has no network",
            "terraform": "no Terraform resources describe fake machines",
            "account": "the fake cloud has no account",
        },
    )
    id_is_name = False

    def __init__(self, clock: Clock | None = None, ssh_port: int = 22) -> None:
        self.cloud = FakeCloud()
        self.clock = clock or ManualClock()
        self.ssh_port = ssh_port
        self.events: list[tuple[str, float, Literal["on", "off"]]] = []
        self.purged = 0

    # ------------------------------------------------------------ node source

    def _machine(self, ws: Workspace, node: str) -> tuple[str, dict[str, Any]] | None:
        tags = {TAG: ws.spec.cluster.name, "node": node}
        return next(((i, m) for i, m in self.cloud.machines.items() if m["tags"] == tags), None)

    def _disk(self, ws: Workspace, node: str, volume: str) -> tuple[str, dict[str, Any]] | None:
        tags = {TAG: ws.spec.cluster.name, "node": node, "volume": volume}
        return next(((i, d) for i, d in self.cloud.disks.items() if d["tags"] == tags), None)

    def _inventory(self, ws: Workspace) -> Inventory:
        planned = self.planned_inventory(ws.spec)
        nodes = []
        for node in planned.nodes:
            found = self._machine(ws, node.name)
            assert found is not None
            volumes = {}
            for vol in ws.spec.volumes:
                disk = self._disk(ws, node.name, vol.name)
                if disk is not None and disk[1]["attached_to"] == found[0]:
                    volumes[vol.name] = f"/dev/disk/by-id/fake-{disk[0]}"
            real = dataclasses.replace(node, id=found[0], volumes=volumes or node.volumes, placeholder=False)
            nodes.append(real)
        return dataclasses.replace(planned, nodes=(nodes[0], nodes[1]))

    def discover(self, ws: Workspace) -> Inventory | None:
        if any(self._machine(ws, n.name) is None for n in ws.spec.nodes):
            return None
        return self._inventory(ws)

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        for node in ws.spec.nodes:
            if self._machine(ws, node.name) is None:
                machine_id = f"vm-{next(self.cloud.ids)}"
                tags = {TAG: ws.spec.cluster.name, "node": node.name}
                self.cloud.machines[machine_id] = {"tags": tags, "power": "on"}
        return self._inventory(ws)

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        for node in ws.spec.nodes:
            machine = self._machine(ws, node.name)
            assert machine is not None
            for vol in ws.spec.volumes:
                disk = self._disk(ws, node.name, vol.name)
                if disk is None:
                    tags = {TAG: ws.spec.cluster.name, "node": node.name, "volume": vol.name}
                    disk = (f"disk-{next(self.cloud.ids)}", {"tags": tags, "attached_to": None})
                    self.cloud.disks[disk[0]] = disk[1]
                disk[1]["attached_to"] = machine[0]
        return self._inventory(ws)

    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint:
        return Endpoint(node.name, node.ssh_address, self.ssh_port, "root")

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        for node in ws.spec.nodes:
            machine = self._machine(ws, node.name)
            if machine is not None:
                del self.cloud.machines[machine[0]]
            for vol in ws.spec.volumes:
                disk = self._disk(ws, node.name, vol.name)
                if disk is not None:
                    disk[1]["attached_to"] = None
                    if delete_volumes:
                        del self.cloud.disks[disk[0]]

    # ------------------------------------------------------------ power control

    def _powered(self, ws: Workspace, node: str) -> dict[str, Any]:
        machine = self._machine(ws, node)
        assert machine is not None, f"{node} does not exist in the fake cloud"
        return machine[1]

    def power(self, ws: Workspace, node: str) -> PowerState:
        machine = self._machine(ws, node)
        return "unknown" if machine is None else "on" if machine[1]["power"] == "on" else "off"

    def power_off(self, ws: Workspace, node: str) -> None:
        self._powered(ws, node)["power"] = "off"
        self.events.append((node, self.clock.time(), "off"))

    def power_on(self, ws: Workspace, node: str) -> None:
        self._powered(ws, node)["power"] = "on"
        self.events.append((node, self.clock.time(), "on"))

    def power_events(self, ws: Workspace, node: str, since: float) -> list[PowerChange]:
        return [(at, state) for name, at, state in self.events if name == node and at >= since]

    # ------------------------------------------------------------ hooks

    def purge(self, ws: Workspace) -> None:
        self.purged += 1
