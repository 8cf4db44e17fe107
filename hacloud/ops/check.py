"""`hacloud check`: the cross-layer invariants of what would be rendered, and with ``live`` the
provider's read-only checks of its real resources."""

from __future__ import annotations

from pathlib import Path

from hacloud.deploy.session import workspace
from hacloud.errors import HacloudError
from hacloud.ops.prepare import prepare
from hacloud.provision.dropin import provider_for
from hacloud.provision.terraform import TerraformSource
from hacloud.verify.invariants import Finding, run_checks


def check_spec(
    spec_path: Path,
    inventory_path: Path | None,
    live: bool = False,
    terraform: TerraformSource | None = None,
) -> list[Finding]:
    """The invariants of the rendered configuration; with ``live``, also the provider's checks
    of the real resources (routes, identities, attributes), read-only."""
    return check_report(spec_path, inventory_path, live, terraform)[0]


def check_report(
    spec_path: Path,
    inventory_path: Path | None,
    live: bool = False,
    terraform: TerraformSource | None = None,
) -> tuple[list[Finding], list[str]]:
    """(findings, warnings): ``check_spec`` plus the warnings rendering gives (placeholders,
    a missing BMC password file), which `render` shows and `check` must not drop."""
    if live and inventory_path is None:
        ws = workspace(spec_path, terraform=terraform)
        provider = provider_for(ws)
        provider.check_environment()
        found = provider.discover(ws)
        if found is None:
            raise HacloudError(
                "the nodes do not exist yet: nothing live to check", "run `hacloud up` first", code="HAC313"
            )
        # rendered for the nodes that exist, so the rules judge what `up` installs there
        prepared = prepare(spec_path, None, create_secrets=False, inventory=found)
        findings = run_checks(prepared.spec, found, prepared.profile, prepared.bundle)
        return findings + provider.live_audit(ws, found), prepared.warnings
    prepared = prepare(spec_path, inventory_path, create_secrets=False, terraform=terraform)
    return run_checks(prepared.spec, prepared.inventory, prepared.profile, prepared.bundle), prepared.warnings
