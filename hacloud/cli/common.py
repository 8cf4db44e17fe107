"""What every command of the CLI shares: option types, choices, how errors, progress and
questions are shown, and the JSON shape of the problems that stop a command.

Contract: the CLI is the only layer that prints or exits; :func:`fail` prints an error with its
fix and code and exits with its exit code (2 for bad input).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from hacloud.errors import HacloudError, SpecError, UsageError

if TYPE_CHECKING:
    from hacloud.provision.terraform import TerraformSource

HELP = {"help_option_names": ["-h", "--help"]}


class ProviderChoice(StrEnum):
    """Closed sets of values as Enums: typer shows them in --help and click checks them when
    the command line is parsed (exit 2), before any question is asked or any file is read."""

    LAB = "lab"
    ONPREM = "onprem"
    AWS = "aws"
    AZURE = "azure"


SpecOption = Annotated[Path, typer.Option("-f", "--spec", help="cluster spec file")]
InventoryOption = Annotated[
    Path | None,
    typer.Option("--inventory", help="inventory JSON (default: planned from the spec)"),
]

FromTerraformOption = Annotated[
    Path | None,
    typer.Option(
        "--from-terraform",
        help="take nodes, volumes and network from Terraform: a directory, a saved "
        "`terraform output -json` file or a terraform.tfstate (drop-in: nothing Terraform owns is changed)",
    ),
]
TfMapOption = Annotated[
    Path | None,
    typer.Option("--tf-map", help="with --from-terraform: YAML naming the outputs that hold each value"),
]


def terraform_source(path: Path | None, tf_map: Path | None) -> TerraformSource | None:
    from hacloud.provision.terraform import TerraformSource

    if path is None:
        if tf_map is not None:
            fail(UsageError("--tf-map needs --from-terraform", "add --from-terraform PATH", code="HAC328"))
        return None
    return TerraformSource(path.resolve(), tf_map.resolve() if tf_map else None)


def fail(exc: HacloudError) -> NoReturn:
    if isinstance(exc, SpecError):
        typer.echo(exc.report(), err=True)
    else:
        typer.echo(f"error: {exc.message}", err=True)
        typer.echo(f"  fix: {exc.remedy} [{exc.code}]" if exc.remedy else f"  [{exc.code}]", err=True)
    raise typer.Exit(exc.exit_code)


def warning_json(message: str) -> dict[str, Any]:
    """A rendering warning in the shape of a finding (it has no code: it is not a rule)."""
    return {"code": None, "severity": "warning", "message": message, "remedy": "", "source": "render"}


def problems_json(exc: HacloudError) -> list[dict[str, Any]]:
    """The problems that stopped a command, as `check --json` findings (severity error, the error's code),
    with file, line and path where the input has them."""
    if isinstance(exc, SpecError):
        return [
            {
                "code": exc.code,
                "severity": "error",
                "message": p.message,
                "remedy": p.remedy,
                "source": f"{exc.filename}:{p.line}" if p.line else exc.filename,
                "file": exc.filename,
                "line": p.line,
                "path": p.path,
            }
            for p in exc.problems
        ]
    return [
        {"code": exc.code, "severity": "error", "message": exc.message, "remedy": exc.remedy, "source": ""}
    ]


class Progress:
    """Progress lines with the elapsed time, on stderr (stdout stays for results)."""

    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._start = self._time()

    def __call__(self, message: str) -> None:
        typer.echo(f"[{self._time() - self._start:5.0f}s] {message}", err=True)


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="show each remote command")]


def interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(question: str, yes: bool, *, destructive: bool = False) -> None:
    """Ask on a terminal; --yes proceeds. Without a terminal (cron, CI, `ssh host hacloud ...`)
    a ``destructive`` command (it stops a service, fails a node or deletes data) is refused
    with exit 2 unless --yes, as terraform does; the others proceed."""
    if yes:
        return
    if not interactive():
        if destructive:
            fail(
                UsageError(
                    f"no terminal to confirm on: {question[0].lower()}{question[1:]}",
                    "pass -y (--yes) to confirm from a script; nothing was done",
                    code="HAC329",
                )
            )
        return
    if not typer.confirm(question, default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(1)
