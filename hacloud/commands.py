"""Command implementations below the CLI: validate everything first, then act.

Contract: these functions raise :class:`~hacloud.errors.HacloudError` subclasses for anything
the user can fix and never print. ``render_to_dir`` writes into a fresh sibling directory and
swaps it in at the end, so a failure leaves the previous output untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hacloud.checks import Finding, run_checks
from hacloud.errors import HacloudError, Problem, SpecError, UsageError
from hacloud.inventory import check_inventory_matches, load_inventory
from hacloud.model import Inventory
from hacloud.profiles import Profile, load_profile
from hacloud.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.resources import templates_dir
from hacloud.secrets import load_or_create, state_dir
from hacloud.spec import PROVIDER_KINDS, IpmiFencing, RedfishFencing, Spec
from hacloud.specload import load_spec
from hacloud.workspace import Workspace

if TYPE_CHECKING:
    from hacloud_lab.lab import LabProvider as LabProviderType

RENDER_MARKER = ".hacloud-render"


def write_example(provider: str, out: Path, force: bool) -> None:
    if provider not in PROVIDER_KINDS:
        raise UsageError(f"unknown provider {provider!r}", f"use one of: {', '.join(PROVIDER_KINDS)}")
    if out.exists() and not force:
        raise UsageError(
            f"{out} already exists", "pass --force to overwrite it, or --out to choose another file"
        )
    text = (templates_dir() / "init" / f"{provider}.yaml").read_text(encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


@dataclass(frozen=True)
class Prepared:
    spec: Spec
    inventory: Inventory
    profile: Profile
    bundle: Bundle
    warnings: list[str] = field(default_factory=list)


def prepare(spec_path: Path, inventory_path: Path | None, *, create_secrets: bool = True) -> Prepared:
    """Load and validate spec and inventory, then render everything in memory."""
    from hacloud.secrets import ClusterSecrets

    spec = load_spec(spec_path)
    provider = get_provider(spec.provider.kind)
    if inventory_path is not None:
        inventory = load_inventory(inventory_path)
        check_inventory_matches(spec, inventory, str(inventory_path))
    else:
        inventory = provider.planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    warnings: list[str] = []
    if inventory.placeholder:
        warnings.append(
            "some node ids, addresses or devices do not exist yet and were rendered as "
            "placeholders (203.0.113.x, PLACEHOLDER-*, hacloud-placeholder-*); review only, "
            "do not install these files (see docs/inventory.md)"
        )
    if create_secrets:
        secrets = load_or_create(state_dir(spec_path, spec.cluster.name))
    else:
        secrets = ClusterSecrets(b"\0" * 256, "not-a-secret")
    passwords, missing = _fence_passwords(spec, spec_path.parent)
    warnings += missing
    bundle = render_all(spec, inventory, profile, secrets, passwords)
    return Prepared(spec, inventory, profile, bundle, warnings)


def _fence_passwords(spec: Spec, base: Path) -> tuple[dict[str, str], list[str]]:
    passwords: dict[str, str] = {}
    missing: list[str] = []
    for method in spec.fencing:
        if not isinstance(method, IpmiFencing | RedfishFencing):
            continue
        for target, bmc in method.nodes.items():
            if bmc.password_env:
                value = os.environ.get(bmc.password_env)
                where = f"environment variable {bmc.password_env}"
            else:
                path = Path(bmc.password_file or "").expanduser()
                path = path if path.is_absolute() else base / path
                where = str(path)
                try:
                    value = path.read_text(encoding="utf-8").strip()
                except OSError:
                    value = None
            if value:
                passwords[target] = value
            else:
                missing.append(
                    f"no BMC password for {target} in {where}: its secret file was "
                    "not rendered; `hacloud up` will refuse until it is there"
                )
    return passwords, missing


@dataclass(frozen=True)
class RenderReport:
    written: list[str]
    warnings: list[str]


def render_to_dir(spec_path: Path, out: Path, inventory_path: Path | None) -> RenderReport:
    prepared = prepare(spec_path, inventory_path)
    if out.exists() and any(out.iterdir()) and not (out / RENDER_MARKER).exists():
        raise UsageError(
            f"{out} is not empty and was not written by `hacloud render`",
            "choose an empty or new directory with --out",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    written: list[str] = []
    try:
        os.chmod(staging, 0o700)  # it holds secrets
        (staging / RENDER_MARKER).write_text("written by hacloud render\n", encoding="utf-8")
        (staging / "cib.xml").write_text(prepared.bundle.cib, encoding="utf-8")
        written.append("cib.xml")
        (staging / "inventory.json").write_text(prepared.inventory.to_json(), encoding="utf-8")
        written.append("inventory.json")
        for node, files in prepared.bundle.files.items():
            for f in files:
                target = staging / node / f.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(f.content)
                os.chmod(target, f.mode)
                note = f"  (secret, {f.mode:04o})" if f.secret else ""
                written.append(f"{node}{f.path}{note}")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RenderReport(written, prepared.warnings)


def check_spec(spec_path: Path, inventory_path: Path | None) -> list[Finding]:
    prepared = prepare(spec_path, inventory_path, create_secrets=False)
    return run_checks(prepared.spec, prepared.inventory, prepared.profile, prepared.bundle)


def workspace(spec_path: Path, progress: Callable[[str], None] | None = None) -> Workspace:
    spec = load_spec(spec_path)
    return Workspace(spec, spec_path, progress) if progress else Workspace(spec, spec_path)


def up(spec_path: Path, progress: Callable[[str], None]) -> Inventory:
    """Provider phase of `hacloud up`: nodes, volumes, network exist and answer SSH."""
    ws = workspace(spec_path, progress)
    provider = get_provider(ws.spec.provider.kind)
    inventory = provider.ensure_nodes(ws)
    return provider.ensure_volumes(ws, inventory)


def down(spec_path: Path, delete_volumes: bool, purge: bool) -> None:
    ws = workspace(spec_path)
    get_provider(ws.spec.provider.kind).teardown(ws, delete_volumes=delete_volumes or purge)
    if purge and ws.spec.provider.kind == "lab":
        from hacloud_lab.lab import purge_images

        purge_images()


def lab_provider(spec_path: Path) -> tuple[Workspace, LabProviderType]:
    ws = workspace(spec_path)
    if ws.spec.provider.kind != "lab":
        raise UsageError(
            f"`hacloud lab` works on lab clusters; {spec_path} uses {ws.spec.provider.kind}",
            "pass -f with a lab spec",
        )
    from hacloud_lab.lab import LabProvider

    provider = get_provider("lab")
    if not isinstance(provider, LabProvider):
        raise HacloudError("the installed lab provider is not hacloud's", "reinstall hacloud")
    return ws, provider


def inventory_error(filename: str, message: str, remedy: str) -> SpecError:
    return SpecError(filename, [Problem("", message, remedy)])


__all__ = [
    "HacloudError",
    "check_spec",
    "down",
    "lab_provider",
    "prepare",
    "render_to_dir",
    "up",
    "write_example",
]
