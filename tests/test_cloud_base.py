"""The shared cloud base (hacloud.provision.cloud) with a toy cloud: a dict of resources, so the
rules every cloud inherits are checked without an SDK: phase order, plan == up, a re-run
records nothing, one error for every validation problem, teardown deletes only what carries
the cluster's tag, and data volumes only when asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from azuretools import azure_doc
from fakearm import FakeArm

from hacloud.provision.changes import Change
from hacloud.provision.cloud import TAG_CLUSTER, AccountMismatch, CloudInfra
from hacloud.spec.inventory import Inventory
from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace

PHASES = ["validate", "identity", "network", "instances", "access", "volumes", "routes"]


@dataclass
class Toy(CloudInfra[dict[str, Any]]):
    ws: Workspace
    cloud: dict[str, dict[str, str]]  # resource name -> tags
    apply: bool = True
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def _make(self, name: str) -> None:
        self.ran.append(name.split("/", maxsplit=1)[0])
        if name not in self.cloud and self.change(name, "create", f"create {name}"):
            self.cloud[name] = self.cluster_tags({"team": "db"})

    def validate(self) -> dict[str, Any]:
        self.ran.append("validate")
        self.refuse(self.problems)
        return {}

    def ensure_identity(self, site: dict[str, Any]) -> None:
        self._make("identity/role")

    def ensure_network(self, site: dict[str, Any]) -> None:
        self._make("network/group")

    def ensure_instances(self, site: dict[str, Any]) -> None:
        self._make("instances/node1")

    def ensure_access(self, site: dict[str, Any]) -> None:
        self._make("access/policy")

    def ensure_volumes(self, site: dict[str, Any]) -> None:
        self._make("volumes/node1-r0")

    def ensure_routes(self, site: dict[str, Any]) -> None:
        self._make("routes/vip")

    def inventory(self, site: dict[str, Any]) -> Inventory:
        return None  # type: ignore[return-value]  # (the toy has no nodes)

    def _delete(self, kind: str) -> None:
        for name, tags in sorted(self.cloud.items()):
            if name.startswith(kind) and self.owned(tags) and self.change(name, "delete", f"delete {name}"):
                del self.cloud[name]

    def teardown_instances(self) -> None:
        self._delete("instances/")

    def teardown_network(self) -> None:
        self._delete("network/")

    def teardown_volumes(self, delete_volumes: bool) -> None:
        for name in sorted(n for n in self.cloud if n.startswith("volumes/")):
            if not self.keeps(delete_volumes, name):
                self._delete(name)


@pytest.fixture
def ws(fake: FakeArm, tmp_path: Path) -> Workspace:
    path = tmp_path / "hacloud.yaml"
    path.write_text(yaml.safe_dump(azure_doc(fake)))
    return Workspace(load_spec(path), path, lambda _m: None)


def test_phases_run_in_order_and_a_plan_lists_what_up_does(ws: Workspace) -> None:
    cloud: dict[str, dict[str, str]] = {}
    plan = Toy(ws, cloud, apply=False)
    plan.ensure()
    assert plan.ran == PHASES and cloud == {}  # a plan changes nothing
    up = Toy(ws, cloud)
    up.ensure()
    assert [c.as_json() for c in up.changes] == [c.as_json() for c in plan.changes]
    assert all(c.stage == "infrastructure" and str(c) == c.detail for c in up.changes)
    assert all(tags[TAG_CLUSTER] == "prod-db" for tags in cloud.values())
    again = Toy(ws, cloud)
    again.ensure()
    assert again.changes == []


def test_every_validation_problem_in_one_error_and_nothing_made(ws: Workspace) -> None:
    cloud: dict[str, dict[str, str]] = {}
    toy = Toy(ws, cloud, problems=["a: wrong", "b: missing"])
    with pytest.raises(AccountMismatch) as err:
        toy.ensure()
    assert (
        err.value.code == "HAC340" and "a: wrong" in err.value.message and "b: missing" in err.value.message
    )
    assert cloud == {} and toy.changes == []


def test_teardown_deletes_only_the_cluster_s_and_volumes_only_when_asked(ws: Workspace) -> None:
    cloud: dict[str, dict[str, str]] = {}
    Toy(ws, cloud).ensure()
    cloud["network/theirs"] = {TAG_CLUSTER: "another-cluster"}
    cloud["instances/untagged"] = {}
    Toy(ws, cloud).teardown(delete_volumes=False)
    # (the toy removes no identity, access or route: only what it owns of instances, network, volumes)
    kept = ["access/policy", "identity/role", "instances/untagged", "network/theirs", "routes/vip"]
    assert sorted(cloud) == [*kept, "volumes/node1-r0"]
    Toy(ws, cloud).teardown(delete_volumes=True)
    assert "volumes/node1-r0" not in cloud and "network/theirs" in cloud and "instances/untagged" in cloud
