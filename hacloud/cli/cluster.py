"""Commands that make or change a cluster: up, plan, ssh, down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from hacloud.cli.common import (
    FromTerraformOption,
    Progress,
    ProviderChoice,
    SpecOption,
    TfMapOption,
    VerboseOption,
    YesOption,
    confirm,
    fail,
    problems_json,
    terraform_source,
)
from hacloud.errors import HacloudError


def up(
    spec: SpecOption = Path("hacloud.yaml"),
    yes: YesOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="put DRBD metadata over a disk that holds data")
    ] = False,
    verbose: VerboseOption = False,
    nodes_only: Annotated[
        bool, typer.Option("--nodes-only", help="only create or find nodes, volumes and network")
    ] = False,
    provider: Annotated[
        ProviderChoice | None,
        typer.Option("--provider", help="refuse to run unless the spec uses this provider"),
    ] = None,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
) -> None:
    """Create or find the nodes, then converge the HA pair; a second run changes nothing."""
    from hacloud.ops.converge import converge

    confirm(f"Create or change the cluster described in {spec}?", yes)
    try:
        changes = converge(
            spec,
            Progress(),
            apply=True,
            force=force,
            verbose=verbose,
            nodes_only=nodes_only,
            expect_provider=provider.value if provider else None,
            terraform=terraform_source(from_terraform, tf_map),
        )
    except HacloudError as exc:
        fail(exc)
    if nodes_only:
        typer.echo("nodes are up; `hacloud up` (without --nodes-only) configures the cluster")
        return
    typer.echo(f"{len(changes)} changes; the cluster is healthy (`hacloud status` shows it)")


def plan(
    spec: SpecOption = Path("hacloud.yaml"),
    verbose: VerboseOption = False,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show what `hacloud up` would change, node by node, without changing anything; on a cloud,
    also the infrastructure it would create and the IAM policy it gives the agents."""
    from hacloud.ops.converge import NodesMissing, converge, plan_infrastructure

    progress = Progress()
    terraform = terraform_source(from_terraform, tf_map)
    # one list: the infrastructure changes first (in the order `up` makes them), then the nodes'
    result: dict[str, Any] = {"changes": [], "policy": None, "nodes_exist": True}

    def done(exc: HacloudError) -> NoReturn:
        if as_json:
            typer.echo(json.dumps(problems_json(exc), indent=2))
        fail(exc)

    try:
        infra = plan_infrastructure(spec, progress, terraform)
    except HacloudError as exc:
        done(exc)
    infra_changes = infra[0] if infra is not None else []
    if infra is not None:
        result["policy"] = infra[1] or None
    try:
        changes = converge(spec, progress, apply=False, verbose=verbose, terraform=terraform)
    except NodesMissing as exc:
        if infra is None:
            done(exc)
        changes, result["nodes_exist"] = [], False
    except HacloudError as exc:
        done(exc)
    result["changes"] = [c.as_json() for c in [*infra_changes, *changes]]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_plan(result)


def _print_plan(result: dict[str, Any]) -> None:
    infra = [c for c in result["changes"] if c["stage"] == "infrastructure"]
    for change in infra:
        typer.echo(f"infrastructure: {change['text']}")
    if result["policy"]:
        typer.echo(
            "permissions the agents get (AWS: the instance profile's policy; Azure: the fence role), "
            "exactly what they call:"
        )
        typer.echo(result["policy"])
    if not result["nodes_exist"]:
        typer.echo(f"{len(infra)} infrastructure changes; the cluster is planned once the nodes exist")
        return
    for change in result["changes"]:
        if change["stage"] == "node":
            typer.echo(change["text"])
    typer.echo(f"{len(result['changes'])} changes")


def ssh(
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str] | None, typer.Argument(help="command (default: a shell)")] = None,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Open a shell on a cluster node, or run a command there, with the recorded keys."""
    import subprocess

    from hacloud.ops.ssh import ssh_command

    try:
        cmd = ssh_command(spec, node)
    except HacloudError as exc:
        fail(exc)
    raise typer.Exit(subprocess.call([*cmd, *(command or [])]))


def down(
    spec: SpecOption = Path("hacloud.yaml"),
    yes: YesOption = False,
    delete_volumes: Annotated[bool, typer.Option("--delete-volumes", help="also delete data disks")] = False,
    purge: Annotated[
        bool, typer.Option("--purge", help="lab: also delete disks and the image cache")
    ] = False,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
) -> None:
    """Stop the nodes and remove what hacloud made; data disks stay unless asked. Drop-in
    (--from-terraform, or after a drop-in `up`): remove the cluster configuration and what
    hacloud added; Terraform's machines and disks stay."""
    from hacloud.ops.down import down as do_down

    confirm(
        f"Stop the cluster in {spec}{' and delete its disks' if delete_volumes or purge else ''}?",
        yes,
        destructive=True,
    )
    try:
        do_down(spec, delete_volumes, purge, terraform_source(from_terraform, tf_map), Progress())
    except HacloudError as exc:
        fail(exc)
    kept = "" if delete_volumes or purge else " (data disks kept: a later `up` reuses them)"
    typer.echo(f"down{kept}")
