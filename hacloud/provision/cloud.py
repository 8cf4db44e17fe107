"""The shared shape of a cloud provider's infrastructure (AWS, Azure): no SDK is imported here.

Contract, for every cloud:

- One code path is `up` and `plan`: each phase records each change through :meth:`CloudInfra.change`
  and carries it out only when ``apply`` is true, so what `plan` lists is what `up` does, and a
  converged account records nothing.
- :meth:`CloudInfra.ensure` runs the phases in one order: **validate** (read the account and
  raise one error listing every problem, before anything is created), **identity** (what the
  nodes are allowed to be, needed before they exist), **network**, **instances**, **access**
  (permissions that name the instances), **volumes**, **routes** (network that points at the
  instances), then builds the inventory. A phase a cloud does not need is a no-op.
- :meth:`CloudInfra.teardown` runs them backwards where order matters: routes and access first
  (they point at the instances), then instances, network, identity, and volumes last. It may
  delete only what carries ``hacloud:cluster=<name>`` (:meth:`CloudInfra.owned`), or, for what
  a cloud cannot tag, what hacloud recorded or named from the cluster; data volumes only when
  asked (:meth:`CloudInfra.keeps`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Generic, TypeVar

from hacloud.errors import HacloudError
from hacloud.provision.changes import Change, infrastructure
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.workspace import Workspace

#: the tag on everything hacloud creates for a cluster; its value is the cluster's name
TAG_CLUSTER = "hacloud:cluster"

#: what validation found and the later phases fill in (one per run; the cloud's own type)
Site = TypeVar("Site")


class AccountMismatch(HacloudError):
    """The cloud account does not fit the spec; every problem is listed, nothing was created."""

    code = "HAC340"


class CloudInfra(ABC, Generic[Site]):
    """Base of a cloud's infrastructure run: needs ``ws``, ``apply`` and ``changes`` attributes
    (the subclasses are dataclasses) and the phase methods below."""

    ws: Workspace
    apply: bool
    changes: list[Change]
    #: how the cloud calls what the nodes live in, for messages ("AWS account", "Azure subscription")
    account_word = "account"
    cloud_name = "cloud"

    @property
    def spec(self) -> Spec:
        return self.ws.spec

    @property
    def cluster(self) -> str:
        return self.spec.cluster.name

    # ------------------------------------------------------------------ recording

    def change(self, target: str, step: str, detail: str) -> bool:
        """Record an infrastructure change (see :class:`~hacloud.provision.changes.Change`)
        and show it; True when it is to be carried out now (`up`), False in a plan."""
        self.changes.append(infrastructure(target, step, detail))
        self.ws.progress(("" if self.apply else "would: ") + detail)
        return self.apply

    # ------------------------------------------------------------------ ownership

    def cluster_tags(self, user: Mapping[str, str], **extra: str) -> dict[str, str]:
        """The tags of a resource hacloud creates: the spec's ``tags``, then the cluster tag
        (which a user tag cannot override), then ``extra``."""
        return {**user, TAG_CLUSTER: self.cluster, **extra}

    def owned(self, tags: Mapping[str, str] | None) -> bool:
        """Whether a resource with these tags is this cluster's: the only ones teardown deletes."""
        return (tags or {}).get(TAG_CLUSTER) == self.cluster

    def keeps(self, delete_volumes: bool, what: str) -> bool:
        """Whether teardown keeps a data volume (unless ``--delete-volumes``), saying so."""
        if not delete_volumes:
            self.ws.progress(f"kept {what}")
        return not delete_volumes

    def refuse(self, problems: list[str]) -> None:
        """Raise one error listing every problem validation found (none: return)."""
        if not problems:
            return
        count = len(problems)
        raise AccountMismatch(
            f"the {self.cloud_name} {self.account_word} does not fit the spec ({count} problem"
            f"{'s' if count > 1 else ''}):\n  - " + "\n  - ".join(problems),
            f"correct the spec (or the {self.account_word}) as listed; nothing was created",
        )

    # ------------------------------------------------------------------ the phases, in order

    def ensure(self) -> Inventory:
        """Create what is missing and fix what differs, phase by phase (module doc); the
        inventory of what exists (placeholders for what a plan has not made)."""
        site = self.validate()
        self.ensure_identity(site)
        self.ensure_network(site)
        self.ensure_instances(site)
        self.ensure_access(site)
        self.ensure_volumes(site)
        self.ensure_routes(site)
        return self.inventory(site)

    def teardown(self, delete_volumes: bool) -> None:
        """Remove what hacloud made for the cluster (module doc); data volumes only when asked."""
        self.teardown_routes()
        self.teardown_access()
        self.teardown_instances()
        self.teardown_network()
        self.teardown_identity()
        self.teardown_volumes(delete_volumes)

    @abstractmethod
    def validate(self) -> Site:
        """Read the account; raise (through :meth:`refuse`) listing every problem; change nothing."""

    def ensure_identity(self, site: Site) -> None:
        """What the nodes are allowed to be, made before them (AWS: role and instance profile)."""

    @abstractmethod
    def ensure_network(self, site: Site) -> None:
        """Firewall, load balancer, interfaces: what the instances are created into."""

    @abstractmethod
    def ensure_instances(self, site: Site) -> None:
        """The two nodes, created or found, and fixed where they differ."""

    def ensure_access(self, site: Site) -> None:
        """Permissions that name the instances (AWS: the agents' policy; Azure: the fence role)."""

    def ensure_volumes(self, site: Site) -> None:
        """The data volumes, created in each node's zone and attached."""

    def ensure_routes(self, site: Site) -> None:
        """Network that points at an instance (AWS: the overlay route)."""

    @abstractmethod
    def inventory(self, site: Site) -> Inventory:
        """The inventory of what ``site`` holds now (placeholders where a plan made nothing)."""

    def teardown_routes(self) -> None:
        """Remove the routes hacloud made (before the instances they point at)."""

    def teardown_access(self) -> None:
        """Remove the permissions hacloud granted (before the instances they name)."""

    @abstractmethod
    def teardown_instances(self) -> None:
        """Delete this cluster's instances; give back what hacloud added to kept ones."""

    @abstractmethod
    def teardown_network(self) -> None:
        """Delete the network resources this cluster owns."""

    def teardown_identity(self) -> None:
        """Delete the identity hacloud made for the nodes."""

    @abstractmethod
    def teardown_volumes(self, delete_volumes: bool) -> None:
        """Delete this cluster's data volumes when ``delete_volumes``, else say they are kept."""
