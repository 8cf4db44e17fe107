"""Drop-in mode: a pair on nodes that Terraform made and owns (``--from-terraform``).

Contract: :func:`provider_for` returns the spec's provider, or, when the workspace names a
Terraform source, a :class:`DropIn` around it:

- ``discover`` / ``ensure_nodes`` return the inventory read from Terraform (read again on every
  run, so a node Terraform replaced is seen); nothing Terraform owns is created, changed or
  deleted. ``ensure_nodes`` adds only what the provider's ``adopt`` adds around those nodes
  (AWS: an overlay route Terraform did not make), and records the Terraform source in the
  state directory so later commands (status, fence-test, down) find the nodes without the flag.
- ``teardown`` removes what ``adopt`` added and forgets the record; it refuses
  ``--delete-volumes`` (the disks are Terraform's: ``terraform destroy`` removes them). The
  cluster configuration on the nodes is removed before, by `hacloud down` (:mod:`hacloud.ops.down`).
- Everything else goes to the provider with ``nodes[].id`` pinned to Terraform's ids, so power
  control and live checks act on exactly the machines Terraform reported.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from hacloud.errors import HacloudError, UsageError
from hacloud.provision.changes import Change
from hacloud.provision.endpoint import Endpoint
from hacloud.provision.provider import (
    Capabilities,
    NodeNeeds,
    PowerChange,
    PowerState,
    Provider,
    get_provider,
)
from hacloud.provision.terraform import Candidate, Imported, TerraformSource, TfResource, import_inventory
from hacloud.spec.inventory import Inventory, NetworkInfo, NodeInfo
from hacloud.spec.model import Spec
from hacloud.spec.workspace import Workspace

if TYPE_CHECKING:
    from hacloud.verify.invariants import Finding  # annotations only (see provider.py)

RECORD = "terraform.json"
#: sources whose origin lines this process has shown (plan reads the same source twice)
_SHOWN: set[TerraformSource] = set()


def recorded_source(ws: Workspace) -> TerraformSource | None:
    """The Terraform source a drop-in `up` recorded for this cluster (None: not drop-in)."""
    path = ws.state_dir / RECORD
    try:
        return TerraformSource.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return None


def provider_for(ws: Workspace) -> Provider:
    inner = get_provider(ws.spec.provider.kind)
    if ws.terraform is None:
        return inner
    return DropIn(inner, ws.terraform)


class DropIn:
    """The spec's provider, with nodes, volumes and network taken from Terraform."""

    def __init__(self, inner: Provider, source: TerraformSource) -> None:
        self.inner = inner
        self.source = source
        self.name = inner.name
        self.capabilities = Capabilities(
            create_nodes=False,
            power_control=inner.capabilities.power_control,
            missing={**inner.capabilities.missing, "create_nodes": "the nodes are Terraform's"},
            faults=inner.capabilities.faults,
            roles=inner.capabilities.roles,
        )
        self._imported: Imported | None = None

    def imported(self, ws: Workspace) -> Imported:
        if self._imported is None:
            self._imported = import_inventory(ws.spec, self.source, self.inner)
            if self.source not in _SHOWN:
                _SHOWN.add(self.source)
                for line in self._imported.origin:
                    ws.progress(f"terraform: {line}")
        return self._imported

    def pinned(self, ws: Workspace) -> Workspace:
        """``ws`` with every node's id set to the one Terraform reported."""
        inventory = self.imported(ws).inventory
        nodes = [n.model_copy(update={"id": inventory.node(n.name).id}) for n in ws.spec.nodes]
        return dataclasses.replace(ws, spec=ws.spec.model_copy(update={"nodes": nodes}))

    # ---------------------------------------------------------------- nodes come from Terraform

    def planned_inventory(self, spec: Spec) -> Inventory:
        return self.inner.planned_inventory(spec)

    def check_environment(self) -> None:
        self.inner.check_environment()

    def discover(self, ws: Workspace) -> Inventory | None:
        return self.imported(ws).inventory

    def ensure_nodes(self, ws: Workspace) -> Inventory:
        inventory = self.imported(ws).inventory
        for change in self.inner.adopt(self.pinned(ws), inventory, True):
            ws.progress(str(change))
        ws.state_dir.mkdir(parents=True, exist_ok=True)
        record = ws.state_dir / RECORD
        tmp = record.with_suffix(".tmp")
        tmp.write_text(self.source.to_json(), encoding="utf-8")
        tmp.replace(record)
        return inventory

    def ensure_volumes(self, ws: Workspace, inventory: Inventory) -> Inventory:
        return inventory

    def plan_infrastructure(self, ws: Workspace) -> tuple[list[Change], str] | None:
        """What `up` would add around Terraform's nodes (the permissions are Terraform's: "")."""
        return self.inner.adopt(self.pinned(ws), self.imported(ws).inventory, False), ""

    def teardown(self, ws: Workspace, delete_volumes: bool = False) -> None:
        if delete_volumes:
            raise UsageError(
                "the nodes and volumes of this cluster belong to Terraform; hacloud does not delete them",
                "run `hacloud down` without --delete-volumes, then `terraform destroy` if they should go",
                code="HAC306",
            )
        inventory = self.imported(ws).inventory
        for change in self.inner.release(self.pinned(ws), inventory):
            ws.progress(str(change))
        (ws.state_dir / RECORD).unlink(missing_ok=True)

    # ---------------------------------------------------------------- the provider's, pinned

    def endpoint(self, ws: Workspace, node: NodeInfo) -> Endpoint:
        return self.inner.endpoint(ws, node)

    def capabilities_for(self, spec: Spec) -> Capabilities:
        inner = self.inner.capabilities_for(spec)
        return dataclasses.replace(self.capabilities, faults=inner.faults, power_control=inner.power_control)

    def power(self, ws: Workspace, node: str) -> PowerState:
        return self.inner.power(self.pinned(ws), node)

    def power_off(self, ws: Workspace, node: str) -> None:
        self.inner.power_off(self.pinned(ws), node)

    def power_on(self, ws: Workspace, node: str) -> None:
        self.inner.power_on(self.pinned(ws), node)

    def power_events(self, ws: Workspace, node: str, since: float) -> list[PowerChange]:
        return self.inner.power_events(self.pinned(ws), node, since)

    def freeze(self, ws: Workspace, node: str) -> bool:
        return self.inner.freeze(self.pinned(ws), node)

    def partition(self, ws: Workspace, cut: bool) -> None:
        self.inner.partition(self.pinned(ws), cut)

    def client_command(self, ws: Workspace, argv: list[str]) -> list[str]:
        return self.inner.client_command(ws, argv)

    def power_on_hint(self, ws: Workspace, node: str) -> str:
        return self.inner.power_on_hint(ws, node)  # wording only: no need to read Terraform

    def power_cycle_hint(self, ws: Workspace, node: str) -> str:
        return self.inner.power_cycle_hint(ws, node)

    def freeze_hint(self, node: str) -> str:
        return self.inner.freeze_hint(node)

    def purge(self, ws: Workspace) -> None:
        self.inner.purge(ws)

    def login_failed(self, ws: Workspace, error: HacloudError) -> HacloudError:
        """The nodes are Terraform's, not infrastructure hacloud just built: the error as is."""
        return error

    def node_needs(self, spec: Spec, inventory: Inventory) -> NodeNeeds:
        return self.inner.node_needs(spec, inventory)

    def ssh_wait_seconds(self, spec: Spec) -> float:
        return self.inner.ssh_wait_seconds(spec)

    def live_audit(self, ws: Workspace, inventory: Inventory) -> list[Finding]:
        return self.inner.live_audit(self.pinned(ws), inventory)

    def terraform_nodes(
        self, spec: Spec, resources: list[TfResource]
    ) -> tuple[list[Candidate], NetworkInfo, str]:
        return self.inner.terraform_nodes(spec, resources)

    def terraform_device(self, spec: Spec, node: int, volume: int, value: str | None) -> str | None:
        return self.inner.terraform_device(spec, node, volume, value)

    def adopt(self, ws: Workspace, inventory: Inventory, apply: bool = True) -> list[Change]:
        return self.inner.adopt(self.pinned(ws), inventory, apply)

    def release(self, ws: Workspace, inventory: Inventory) -> list[Change]:
        return self.inner.release(self.pinned(ws), inventory)
