"""Commands that read a spec and change nothing on a cluster: init, schema, profile, render, check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hacloud.cli.common import (
    FromTerraformOption,
    InventoryOption,
    ProviderChoice,
    SpecOption,
    TfMapOption,
    fail,
    problems_json,
    terraform_source,
    warning_json,
)
from hacloud.errors import HacloudError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hacloud.spec.profiles import ProfileValue


def init(
    provider: Annotated[
        ProviderChoice, typer.Option("--provider", help="where the pair runs")
    ] = ProviderChoice.LAB,
    out: Annotated[Path, typer.Option("--out", help="where to write the spec")] = Path("hacloud.yaml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    emulated: Annotated[
        bool,
        typer.Option("--emulated", help="target the provider's emulated cloud on this machine (aws)"),
    ] = False,
) -> None:
    """Write a commented, valid example spec for a provider."""
    from hacloud.ops.example import write_example

    try:
        write_example(provider.value, out, force, emulated)
    except HacloudError as exc:
        fail(exc)
    typer.echo(
        f"wrote {out}: edit it, then `hacloud check -f {out}` (review) and `hacloud up -f {out}` (build)"
    )


def schema(
    inventory: Annotated[bool, typer.Option("--inventory", help="the inventory's schema instead")] = False,
) -> None:
    """Print the JSON Schema of the spec (or of the inventory)."""
    if inventory:
        from hacloud.spec.inventory import inventory_json_schema

        typer.echo(json.dumps(inventory_json_schema(), indent=2, sort_keys=True))
    else:
        from hacloud.spec.model import json_schema

        typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


def profile(
    name: Annotated[ProviderChoice, typer.Argument(help="the profile")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show a profile's values, each with its source and, where sources disagree, why."""
    from hacloud.spec.profiles import PROFILE_NAMES, load_profile

    if name.value not in PROFILE_NAMES:
        fail(
            HacloudError(
                f"no profile named {name.value!r}", f"use one of: {', '.join(PROFILE_NAMES)}", code="HAC327"
            )
        )
    prof = load_profile(name.value)

    def entries(values: Mapping[str, ProfileValue]) -> dict[str, dict[str, object]]:
        return {k: {"value": v.value, "source": v.source, "why": v.why} for k, v in values.items()}

    if as_json:
        body: dict[str, object] = dict(entries(prof.values))
        if prof.variants:  # no value name lacks a dot, so the key cannot collide
            body["variants"] = {
                family: {"description": v.description, "values": entries(v.values)}
                for family, v in prof.variants.items()
            }
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(f"profile {prof.name}: {prof.description}")
    width = max(len(k) for k in prof.values)
    _echo_values(prof.values, width)
    for family, variant in prof.variants.items():
        typer.echo(
            f"variant for os_family {family} (nodes' facts, else platform.os_family): {variant.description}"
        )
        _echo_values(variant.values, width)


def _echo_values(values: Mapping[str, ProfileValue], width: int) -> None:
    for key, value in values.items():
        typer.echo(f"  {key:<{width}}  {value.value!s:<8}  {value.source}")
        if value.why:
            typer.echo(f"  {'':<{width}}  {'':<8}  why: {value.why}")


def render(
    out: Annotated[Path, typer.Option("--out", help="directory to write into")],
    spec: SpecOption = Path("hacloud.yaml"),
    inventory: InventoryOption = None,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Write the CIB and every node's files for review; needs no credentials or infrastructure."""
    from hacloud.ops.render import render_to_dir

    try:
        report = render_to_dir(spec, out, inventory, terraform_source(from_terraform, tf_map))
    except HacloudError as exc:
        if as_json:
            typer.echo(json.dumps(problems_json(exc), indent=2))
        fail(exc)
    if as_json:
        shown = {
            "out": str(out),
            "written": report.written,
            "warnings": report.warnings,
            "origin": report.origin,
        }
        typer.echo(json.dumps(shown, indent=2))
        return
    for line in report.origin:
        typer.echo(f"terraform: {line}", err=True)
    for line in report.written:
        typer.echo(f"  {line}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"rendered {len(report.written)} files into {out}")


def check(
    spec: SpecOption = Path("hacloud.yaml"),
    inventory: InventoryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    live: Annotated[
        bool, typer.Option("--live", help="also check the provider's real resources (cloud: read-only calls)")
    ] = False,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
) -> None:
    """Check the cross-layer invariants (timeouts, delays, grouping, host maps); exit 1 on error."""
    from hacloud.ops.check import check_report

    try:
        findings, warnings = check_report(
            spec, inventory, live=live, terraform=terraform_source(from_terraform, tf_map)
        )
    except HacloudError as exc:
        if as_json:
            typer.echo(json.dumps(problems_json(exc), indent=2))  # stdout stays machine-readable
        fail(exc)
    if as_json:
        shown = [warning_json(w) for w in warnings] + [f.as_dict() for f in findings]
        typer.echo(json.dumps(shown, indent=2))
    else:
        for w in warnings:
            typer.echo(f"WARNING  {w}")
        for f in findings:
            typer.echo(f"{f.severity.upper():7} {f.code}  {f.message}")
            if f.severity != "ok":
                typer.echo(f"        fix: {f.remedy}")
                typer.echo(f"        source: {f.source}")
        errors = sum(f.severity == "error" for f in findings)
        count = len(warnings) + sum(f.severity == "warning" for f in findings)
        typer.echo(f"{len(findings) + len(warnings)} checks: {errors} errors, {count} warnings")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)
