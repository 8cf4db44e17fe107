"""`hacloud lab ...`: the commands the lab plug-in adds to the CLI (entry point group
``hacloud.commands``), acting inside the lab: as a client on its network, as root on a guest,
or on a guest's power through its BMC.

Importing this module is cheap (typer only): the lab provider loads when a command runs. A
command raises :class:`~hacloud.errors.HacloudError`; the core CLI prints it with its fix.
"""

from __future__ import annotations

import subprocess
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hacloud.errors import HacloudError, UsageError

if TYPE_CHECKING:
    from hacloud.spec.workspace import Workspace
    from hacloud_lab.lab import LabProvider

HELP = {"help_option_names": ["-h", "--help"]}
SpecOption = Annotated[Path, typer.Option("-f", "--spec", help="cluster spec file")]

app = typer.Typer(
    help="Act inside the local lab (its private network and guests).",
    no_args_is_help=True,
    context_settings=HELP,
)


class PowerChoice(StrEnum):
    """Checked by click when the command line is parsed (exit 2), before anything is read."""

    ON = "on"
    OFF = "off"
    STATUS = "status"


def lab_workspace(spec_path: Path) -> tuple[Workspace, LabProvider]:
    """The workspace of a lab spec and the lab provider; another provider's spec is refused."""
    from hacloud.deploy.session import workspace
    from hacloud.provision.provider import get_provider
    from hacloud_lab.lab import LabProvider

    ws = workspace(spec_path)
    if ws.spec.provider.kind != "lab":
        raise UsageError(
            f"`hacloud lab` works on lab clusters; {spec_path} uses {ws.spec.provider.kind}",
            "pass -f with a lab spec",
            code="HAC600",
        )
    provider = get_provider("lab")
    if not isinstance(provider, LabProvider):
        raise HacloudError("the installed lab provider is not hacloud's", "reinstall hacloud", code="HAC602")
    return ws, provider


@app.command("exec", context_settings={**HELP, "allow_interspersed_args": False})
def lab_exec(
    command: Annotated[list[str], typer.Argument(help="command to run inside the lab's network")],
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Run a command on the host side inside the lab's network (e.g. curl to the VIP)."""
    ws, provider = lab_workspace(spec)
    rc = subprocess.call(["ip", "netns", "exec", provider.namespace(ws), *command])
    raise typer.Exit(rc)


@app.command("ssh", context_settings={**HELP, "allow_interspersed_args": False})
def lab_ssh(
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str] | None, typer.Argument(help="command (default: a shell)")] = None,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Open a root shell on a lab guest, or run a command there (same as `hacloud ssh`)."""
    from hacloud.deploy.session import workspace
    from hacloud.provision.dropin import provider_for
    from hacloud.provision.endpoint import ssh_argv

    ws = workspace(spec)
    raise typer.Exit(subprocess.call([*ssh_argv(ws, provider_for(ws), node), *(command or [])]))


@app.command("power")
def lab_power(
    node: Annotated[str, typer.Argument(help="node name")],
    action: Annotated[PowerChoice, typer.Argument(help="what to do")] = PowerChoice.STATUS,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Power a lab guest on or off through its virtual BMC (IPMI), or show its power."""
    ws, provider = lab_workspace(spec)
    if node not in [n.name for n in ws.spec.nodes]:
        raise HacloudError(f"no node named {node!r}", "use a node name from the spec", code="HAC601")
    if action is PowerChoice.ON:
        provider.power_on(ws, node)
    elif action is PowerChoice.OFF:
        provider.power_off(ws, node)
    typer.echo(f"{node}: {provider.power(ws, node)}")
