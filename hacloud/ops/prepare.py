"""Load, validate and render in memory: the first step of every command that reads a spec.

Contract: :func:`prepare` validates the spec and the inventory (a file, Terraform's, the one a
provider discovered, else the planned one) before anything else, renders everything in memory
and writes nothing but the cluster's secrets (``create_secrets``). It never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hacloud.deploy.session import fence_passwords
from hacloud.provision.dropin import recorded_source
from hacloud.provision.provider import get_provider
from hacloud.provision.terraform import TerraformSource
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import Inventory
from hacloud.spec.inventory_file import check_inventory_matches, load_inventory, validated
from hacloud.spec.load import load_spec
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile, load_profile
from hacloud.spec.secrets import load_or_create, state_dir
from hacloud.spec.workspace import Workspace, check_owner, record_owner


@dataclass(frozen=True)
class Prepared:
    spec: Spec
    inventory: Inventory
    profile: Profile
    bundle: Bundle
    warnings: list[str] = field(default_factory=list)
    #: where each node came from, when the inventory was read from Terraform
    origin: tuple[str, ...] = ()


def prepare(
    spec_path: Path,
    inventory_path: Path | None,
    *,
    create_secrets: bool = True,
    inventory: Inventory | None = None,
    terraform: TerraformSource | None = None,
) -> Prepared:
    """Load and validate spec and inventory, then render everything in memory. ``inventory``:
    one a provider just discovered (else the file, else Terraform's -- ``terraform`` or the
    source a drop-in `up` recorded --, else the planned one)."""
    from hacloud.provision.terraform import import_inventory
    from hacloud.spec.secrets import ClusterSecrets

    spec = load_spec(spec_path)
    provider = get_provider(spec.provider.kind)
    origin: tuple[str, ...] = ()
    if inventory is None and inventory_path is not None:
        inventory = load_inventory(inventory_path)
        check_inventory_matches(spec, inventory, str(inventory_path))
    elif inventory is None:
        source = terraform or recorded_source(Workspace(spec, spec_path))
        if source is not None:
            imported = import_inventory(spec, source, provider)
            inventory, origin = imported.inventory, imported.origin
        else:
            inventory = provider.planned_inventory(spec)
    # a provider's own inventory (its API, the lab, the plan) passes the grammar a loaded one does
    inventory = validated(inventory, f"the {inventory.provider} provider's inventory")
    profile = effective_profile(spec, load_profile(spec.profile_name), inventory)
    warnings: list[str] = []
    if inventory.placeholder:
        warnings.append(
            "some node ids, addresses or devices do not exist yet and were rendered as "
            "placeholders (203.0.113.x, PLACEHOLDER-*, hacloud-placeholder-*); review only, "
            "do not install these files (see docs/inventory.md)"
        )
    check_owner(state_dir(spec_path, spec.cluster.name), spec_path)
    if create_secrets:
        record_owner(state_dir(spec_path, spec.cluster.name), spec_path)
        secrets = load_or_create(state_dir(spec_path, spec.cluster.name))
    else:
        secrets = ClusterSecrets(b"\0" * 256, "not-a-secret")
    passwords, missing = fence_passwords(spec, spec_path.parent)
    warnings += missing
    bundle = render_all(spec, inventory, profile, secrets, passwords)
    return Prepared(spec, inventory, profile, bundle, warnings, origin)
