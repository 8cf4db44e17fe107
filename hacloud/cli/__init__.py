"""The ``hacloud`` command line: the only layer that prints or exits.

Exit codes: 0 success, 1 an operation failed or ``check`` found an error, 2 bad input
(spec, inventory or command line).

The commands live by what they act on (:mod:`.build`: read a spec; :mod:`.cluster`: make or
change a cluster; :mod:`.health`: a running cluster; :mod:`.fencetest`) and are registered here
in the order ``hacloud --help`` lists them. Installed plug-ins add command groups through the
``hacloud.commands`` entry points (the lab's ``hacloud lab ...``); a :class:`HacloudError` one of
their commands raises is shown like the core's own.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
from typing import Annotated, Any, NoReturn

import typer
import typer.main
from typer.core import TyperGroup

from hacloud.cli import build, cluster, fencetest, health
from hacloud.cli.common import HELP, fail
from hacloud.errors import HacloudError, Interrupted, InterruptedWork

#: entry points naming a typer app a plug-in adds as a command group (``lab = "hacloud_lab.cli:app"``)
COMMANDS_GROUP = "hacloud.commands"


class _Commands(TyperGroup):
    """The top-level group. Plug-ins' command groups (``hacloud.commands`` entry points) are
    looked up only when asked for (help, completion, or a command the core does not have), so a
    core command never pays for reading the installed packages' metadata. A HacloudError one of
    their commands raises (they cannot use the core's ``fail``) is printed the same way (error,
    fix, code) with its exit code, never as a traceback."""

    _plugins: dict[str, Any] | None = None

    def plugins(self) -> dict[str, Any]:
        """The plug-ins' command groups by name, as click commands (loaded once)."""
        if self._plugins is None:
            # converted as add_typer would (a sub-group: no completion options of its own)
            groups = _plugin_groups()
            holder = typer.Typer(add_completion=False)
            for name, group in groups.items():
                holder.add_typer(group, name=name)
            converted = typer.main.get_command(holder) if groups else None
            self._plugins = dict(getattr(converted, "commands", {}))
        return self._plugins

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.plugins() if n not in self.commands)]

    def get_command(self, ctx: Any, name: str) -> Any:
        return super().get_command(ctx, name) or self.plugins().get(name)

    def invoke(self, ctx: Any) -> Any:  # typer's click.Context (typer vendors click privately)
        try:
            return super().invoke(ctx)
        except HacloudError as exc:
            fail(exc)


app = typer.Typer(
    cls=_Commands,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    no_args_is_help=True,
    help="Build active-standby HA pairs: DRBD + Corosync + Pacemaker + fencing + a virtual IP.",
    pretty_exceptions_enable=False,
    context_settings=HELP,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"hacloud {version('hacloud')}")
        except PackageNotFoundError:
            typer.echo("hacloud (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Build active-standby HA pairs: DRBD + Corosync + Pacemaker + fencing + a virtual IP."""


_NO_INTERSPERSED = {**HELP, "allow_interspersed_args": False}

app.command()(build.init)
app.command()(build.schema)
app.command()(build.profile)
app.command()(build.render)
app.command()(build.check)
app.command()(cluster.up)
app.command()(cluster.plan)
app.command()(health.failover)
app.command(context_settings=_NO_INTERSPERSED)(cluster.ssh)
app.command()(cluster.down)
app.command()(health.status)
app.command()(health.verify)
app.command("fence-test")(fencetest.fence_test)


def _plugin_groups() -> dict[str, typer.Typer]:
    """Every installed plug-in's command group (``hacloud.commands`` entry points) by name. One
    that cannot be loaded is named on stderr, and the rest of the CLI still works."""
    from importlib.metadata import entry_points  # not at import: a core command never reads it

    groups = {}
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            group = ep.load()
        except Exception as exc:  # a broken plug-in must not take the whole CLI down
            typer.echo(
                f"warning: the `hacloud {ep.name}` commands ({ep.value}) could not be loaded: {exc}; "
                "reinstall the package that provides them",
                err=True,
            )
            continue
        if isinstance(group, typer.Typer):
            _one_line_paragraphs(group)
            groups[ep.name] = group
    return groups


def _one_line_paragraphs(typer_app: typer.Typer) -> None:
    """Help text is written wrapped in the source; join each paragraph's lines so the terminal,
    not the source, decides where lines break (blank lines still separate paragraphs)."""
    for info in typer_app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = re.sub(r"(?<!\n)\n(?!\n)", " ", doc)


_one_line_paragraphs(app)


def _interrupt(_signum: int, _frame: object) -> None:
    raise Interrupted


def _exit_now(code: int) -> NoReturn:
    """Exit at once: worker threads still waiting on a node (a package install can take 1800 s)
    must not hold the process; the connections they use are already closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except Interrupted:
        typer.echo(
            "\ninterrupted (Ctrl-C): hacloud stopped at once; a step already running on a node may "
            "still finish there. Run the command again: it starts from what is in place",
            err=True,
        )
        _exit_now(130)
    except SystemExit as done:
        if done.code == InterruptedWork.exit_code:
            _exit_now(130)
        raise
    except HacloudError as exc:  # a command that forgot to catch: still no traceback
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
