"""The ``hacloud`` command line: the only layer that prints or exits.

Exit codes: 0 success, 1 an operation failed or ``check`` found an error, 2 bad input
(spec, inventory or command line).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from hacloud.errors import HacloudError, Interrupted, InterruptedWork, SpecError, UsageError
from hacloud.verify.fencetest.faults import FAULT_HELP, FaultMethod

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hacloud.provision.terraform import TerraformSource
    from hacloud.spec.profiles import ProfileValue

#: -h as well as --help, on every command and group
HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    no_args_is_help=True,
    help="Build active-standby HA pairs: DRBD + Corosync + Pacemaker + fencing + a virtual IP.",
    pretty_exceptions_enable=False,
    context_settings=HELP,
)


class ProviderChoice(StrEnum):
    """Closed sets of values as Enums: typer shows them in --help and click checks them when
    the command line is parsed (exit 2), before any question is asked or any file is read."""

    LAB = "lab"
    ONPREM = "onprem"
    AWS = "aws"
    AZURE = "azure"


class PowerChoice(StrEnum):
    ON = "on"
    OFF = "off"
    STATUS = "status"


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


def _terraform(path: Path | None, tf_map: Path | None) -> TerraformSource | None:
    from hacloud.provision.terraform import TerraformSource

    if path is None:
        if tf_map is not None:
            _fail(UsageError("--tf-map needs --from-terraform", "add --from-terraform PATH"))
        return None
    return TerraformSource(path.resolve(), tf_map.resolve() if tf_map else None)


def _fail(exc: HacloudError) -> NoReturn:
    if isinstance(exc, SpecError):
        typer.echo(exc.report(), err=True)
    else:
        typer.echo(f"error: {exc.message}", err=True)
        typer.echo(f"  fix: {exc.remedy} [{exc.code}]" if exc.remedy else f"  [{exc.code}]", err=True)
    raise typer.Exit(exc.exit_code)


@app.command()
def init(
    provider: Annotated[
        ProviderChoice, typer.Option("--provider", help="where the pair runs")
    ] = ProviderChoice.LAB,
    out: Annotated[Path, typer.Option("--out", help="where to write the spec")] = Path("hacloud.yaml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented, valid example spec for a provider."""
    from hacloud.ops.commands import write_example

    try:
        write_example(provider.value, out, force)
    except HacloudError as exc:
        _fail(exc)
    typer.echo(
        f"wrote {out}: edit it, then `hacloud check -f {out}` (review) and `hacloud up -f {out}` (build)"
    )


@app.command()
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


@app.command()
def profile(
    name: Annotated[ProviderChoice, typer.Argument(help="the profile")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show a profile's values, each with its source and, where sources disagree, why."""
    from hacloud.spec.profiles import PROFILE_NAMES, load_profile

    if name.value not in PROFILE_NAMES:
        _fail(HacloudError(f"no profile named {name.value!r}", f"use one of: {', '.join(PROFILE_NAMES)}"))
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


@app.command()
def render(
    out: Annotated[Path, typer.Option("--out", help="directory to write into")],
    spec: SpecOption = Path("hacloud.yaml"),
    inventory: InventoryOption = None,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Write the CIB and every node's files for review; needs no credentials or infrastructure."""
    from hacloud.ops.commands import render_to_dir

    try:
        report = render_to_dir(spec, out, inventory, _terraform(from_terraform, tf_map))
    except HacloudError as exc:
        if as_json:
            typer.echo(json.dumps(_problems_json(exc), indent=2))
        _fail(exc)
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


@app.command()
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
    from hacloud.ops.commands import check_report

    try:
        findings, warnings = check_report(
            spec, inventory, live=live, terraform=_terraform(from_terraform, tf_map)
        )
    except HacloudError as exc:
        if as_json:
            typer.echo(json.dumps(_problems_json(exc), indent=2))  # stdout stays machine-readable
        _fail(exc)
    if as_json:
        shown = [_warning_json(w) for w in warnings] + [f.as_dict() for f in findings]
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


def _warning_json(message: str) -> dict[str, Any]:
    """A rendering warning in the shape of a finding (it has no code: it is not a rule)."""
    return {"code": None, "severity": "warning", "message": message, "remedy": "", "source": "render"}


def _problems_json(exc: HacloudError) -> list[dict[str, Any]]:
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


class _Progress:
    """Progress lines with the elapsed time, on stderr (stdout stays for results)."""

    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._start = self._time()

    def __call__(self, message: str) -> None:
        typer.echo(f"[{self._time() - self._start:5.0f}s] {message}", err=True)


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="show each remote command")]


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm(question: str, yes: bool, *, destructive: bool = False) -> None:
    """Ask on a terminal; --yes proceeds. Without a terminal (cron, CI, `ssh host hacloud ...`)
    a ``destructive`` command (it stops a service, fails a node or deletes data) is refused
    with exit 2 unless --yes, as terraform does; the others proceed."""
    if yes:
        return
    if not _interactive():
        if destructive:
            _fail(
                UsageError(
                    f"no terminal to confirm on: {question[0].lower()}{question[1:]}",
                    "pass -y (--yes) to confirm from a script; nothing was done",
                )
            )
        return
    if not typer.confirm(question, default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(1)


@app.command()
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
    from hacloud.ops.commands import converge

    _confirm(f"Create or change the cluster described in {spec}?", yes)
    try:
        changes = converge(
            spec,
            _Progress(),
            apply=True,
            force=force,
            verbose=verbose,
            nodes_only=nodes_only,
            expect_provider=provider.value if provider else None,
            terraform=_terraform(from_terraform, tf_map),
        )
    except HacloudError as exc:
        _fail(exc)
    if nodes_only:
        typer.echo("nodes are up; `hacloud up` (without --nodes-only) configures the cluster")
        return
    typer.echo(f"{len(changes)} changes; the cluster is healthy (`hacloud status` shows it)")


@app.command()
def plan(
    spec: SpecOption = Path("hacloud.yaml"),
    verbose: VerboseOption = False,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show what `hacloud up` would change, node by node, without changing anything; on a cloud,
    also the infrastructure it would create and the IAM policy it gives the agents."""
    from hacloud.ops.commands import NodesMissing, converge, plan_infrastructure

    progress = _Progress()
    terraform = _terraform(from_terraform, tf_map)
    # one list: the infrastructure changes first (in the order `up` makes them), then the nodes'
    result: dict[str, Any] = {"changes": [], "policy": None, "nodes_exist": True}

    def done(exc: HacloudError) -> NoReturn:
        if as_json:
            typer.echo(json.dumps(_problems_json(exc), indent=2))
        _fail(exc)

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


@app.command()
def failover(spec: SpecOption = Path("hacloud.yaml"), yes: YesOption = False) -> None:
    """Planned switchover to the other node; waits until the service answers there."""
    from hacloud.ops.failover import failover as do_failover

    _confirm("Move the service to the other node?", yes, destructive=True)
    try:
        source, target = do_failover(spec, _Progress())
    except HacloudError as exc:
        _fail(exc)
    typer.echo(f"the service moved from {source} to {target}")


@app.command(context_settings={**HELP, "allow_interspersed_args": False})
def ssh(
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str] | None, typer.Argument(help="command (default: a shell)")] = None,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Open a shell on a cluster node, or run a command there, with the recorded keys."""
    import subprocess

    from hacloud.ops.commands import ssh_command

    try:
        cmd = ssh_command(spec, node)
    except HacloudError as exc:
        _fail(exc)
    raise typer.Exit(subprocess.call([*cmd, *(command or [])]))


@app.command()
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
    from hacloud.ops.commands import down as do_down

    _confirm(
        f"Stop the cluster in {spec}{' and delete its disks' if delete_volumes or purge else ''}?",
        yes,
        destructive=True,
    )
    try:
        do_down(spec, delete_volumes, purge, _terraform(from_terraform, tf_map), _Progress())
    except HacloudError as exc:
        _fail(exc)
    kept = "" if delete_volumes or purge else " (data disks kept: a later `up` reuses them)"
    typer.echo(f"down{kept}")


@app.command()
def status(
    spec: SpecOption = Path("hacloud.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    from_terraform: FromTerraformOption = None,
    tf_map: TfMapOption = None,
) -> None:
    """Nodes, quorum, DRBD per node, where the service and VIP run, fencing, failed actions."""
    from hacloud.ops.status import cluster_status

    try:
        st = cluster_status(spec, _terraform(from_terraform, tf_map))
    except HacloudError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        raise typer.Exit(0 if st["healthy"] else 1)  # the same exit code as the text form
    answered = st["fencing_enabled"] is not None
    fencing = "unknown" if not answered else "enabled" if st["fencing_enabled"] else "OFF"
    quorum = "unknown" if not answered else "yes" if st["quorum"] else "no"
    typer.echo(
        f"cluster {st['cluster']}: {'healthy' if st['healthy'] else 'NOT HEALTHY'}, "
        f"quorum {quorum}, fencing {fencing}"
    )
    typer.echo(f"{'node':8} {'online':6} {'address':15} {'drbd role':9} {'disk':12} {'connection':12} bmc")
    for n in st["nodes"]:
        typer.echo(
            f"{n['name']:8} {'yes' if n['online'] else 'no':6} {n['address']:15} "
            f"{n['drbd_role'] or '-':9} {n['drbd_disk'] or '-':12} {n['drbd_connection'] or '-':12} "
            f"{n.get('bmc') or '-'}" + (f"  sync {n['sync']}" if n["sync"] else "")
        )
    if any(len(n.get("drbd") or []) > 1 for n in st["nodes"]):
        for n in st["nodes"]:
            for v in n.get("drbd") or []:
                typer.echo(
                    f"  drbd {v['resource']} on {n['name']}: {v['role']}/{v['disk']}, "
                    f"peer {v['peer_disk'] or '?'}, {v['connection']} {v['replication'] or ''}".rstrip()
                )
    where = st["service_node"] or ("nowhere" if answered else "unknown")
    typer.echo(f"service and VIP {st['vip']}: on {where}")
    _echo_split_brain(st.get("split_brain", []))
    for dev in st["fencing"]:
        typer.echo(f"fencing {dev['id']} (fences {dev['target']}): {dev['state']} on {dev['node'] or '-'}")
    for line in st["fencing_history"]:
        typer.echo(f"  fence history: {line}")
    for line in st["failed_actions"]:
        typer.echo(f"failed: {line}")
    for line in st["reasons"]:
        typer.echo(f"not healthy: {line}")
    if not st["healthy"]:
        raise typer.Exit(1)


def _echo_split_brain(reports: list[dict[str, Any]]) -> None:
    for sb in reports:
        where = ", ".join(sb["standalone_on"])
        if sb["split_brain"]:
            typer.echo(
                f"SPLIT BRAIN: DRBD {sb['resource']} is StandAlone on {where} (kernel: 'Split-Brain "
                "detected but unresolved'): the nodes' data diverged and DRBD will not replicate until "
                "you pick the survivor (DRBD user guide, manual split-brain recovery):"
            )
        else:
            typer.echo(f"DRBD {sb['resource']} is StandAlone on {where}: not replicating. To reconnect:")
        for i, step in enumerate(sb["steps"], start=1):
            typer.echo(f"  {i}. {step}")


@app.command()
def verify(
    spec: SpecOption = Path("hacloud.yaml"),
    resource: Annotated[
        list[str] | None,
        typer.Option("--resource", "-r", help="DRBD resource or volume to verify (default: all)"),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="seconds to wait (default: until done)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Online verify: compare both disks block by block (drbdadm verify on the Primary, reads
    only); exit 1 when DRBD found blocks out of sync."""
    from hacloud.ops.verify import verify as do_verify

    try:
        results = do_verify(spec, _Progress(), resource, timeout)
    except HacloudError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            state = "in sync" if r.out_of_sync_kib == 0 else f"{r.out_of_sync_kib} KiB OUT OF SYNC"
            typer.echo(
                f"{r.resource}: {state} (verified from {r.node} against {r.peer or 'its peer'}, "
                f"{r.seconds:g} s)"
            )
    bad = [r for r in results if r.out_of_sync_kib]
    if bad:
        if not as_json:
            for r in bad:
                typer.echo(
                    f"  fix: find why {r.resource} diverged (disk errors in the kernel log, anything writing "
                    "below DRBD), then resync the marked blocks: on the Secondary run "
                    f"`drbdadm disconnect {r.resource}; drbdadm connect {r.resource}` (DRBD user guide, "
                    "online verification)",
                    err=True,
                )
        raise typer.Exit(1)


@app.command("fence-test")
def fence_test(
    spec: SpecOption = Path("hacloud.yaml"),
    method: Annotated[FaultMethod, typer.Option("--method", help=FAULT_HELP)] = FaultMethod.POWER,
    node: Annotated[str | None, typer.Option("--node", help="node to fail (default: the active one)")] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="rounds to run (min/median/p95 RTO)")] = 1,
    no_recover: Annotated[
        bool, typer.Option("--no-recover", help="leave the fenced node off afterwards")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per round")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="summarise earlier runs by method and timers; inject nothing")
    ] = False,
    yes: YesOption = False,
) -> None:
    """Fail the active node for real and measure, from a client, how long writes stop (RTO) and
    whether any acknowledged write is lost (RPO); then bring the node back and resync."""
    from hacloud.verify.fencetest import runner

    if history:
        try:
            groups = runner.history_of(spec)
        except HacloudError as exc:
            _fail(exc)
        if as_json:
            typer.echo(json.dumps(groups, indent=2))
            return
        for line in runner.history_lines(groups) or ["no fence-test has run on this cluster yet"]:
            typer.echo(line)
        return

    _confirm(
        f"Inject a {method.value} fault into the cluster in {spec} ({rounds} round(s))? "
        "Its service stops briefly.",
        yes,
        destructive=True,
    )
    options = runner.Options(method=method, node=node, rounds=rounds, recover=not no_recover)
    try:
        results = runner.run(spec, options, _Progress())
    except HacloudError as exc:
        _fail(exc)
    if as_json:
        for r in results:
            typer.echo(json.dumps(r.as_dict()))
    else:
        _print_rounds(results)
        if len(results) > 1:
            s = runner.rto_summary(results)
            typer.echo(
                f"RTO over {len(results)} rounds: min {s['min']} s, median {s['median']} s, p95 {s['p95']} s"
            )
        typer.echo(f"history: {runner.history_file(spec)}")
    if not runner.all_passed(results, rounds):
        raise typer.Exit(1)


def _print_rounds(results: list[Any]) -> None:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    typer.echo(
        f"{'method':9} {'node':7} {'RTO s':>6} {'outage':>6} {'floor':>6} {'acked':>6} {'lost':>4} "
        f"{'dup':>3} {'off':>4} {'1 prim':>6} {'back':>5} {'resync':>6}  result"
    )
    for r in results:
        back = "-" if r.recovered is None else ("yes" if r.recovered else "NO")
        off = "yes" if r.fenced_confirmed_off else "NO"
        typer.echo(
            f"{r.method:9} {r.node:7} {num(r.rto_seconds):>6} {num(r.outage_seconds):>6} "
            f"{num(r.floor_seconds):>6} {r.acknowledged:>6} {r.lost:>4} {r.duplicates:>3} {off:>4} "
            f"{'yes' if r.single_primary else 'NO':>6} {back:>5} {num(r.resync_seconds):>6}  "
            f"{'PASS' if r.passed else 'FAIL'}"
        )
        previous = 0.0
        for name, at in sorted(r.stages.items(), key=lambda kv: kv[1]):
            typer.echo(f"    +{at:6.2f} s  {name:<16} (+{at - previous:.2f})")
            previous = at
        parts = ", ".join(f"{k} {v:g} s" for k, v in r.floor_parts.items())
        typer.echo(f"    floor {num(r.floor_seconds)} s from the timers: {parts}")
        for problem in r.problems:
            typer.echo(f"    problem: {problem}")


lab_app = typer.Typer(
    help="Act inside the local lab (its private network and guests).",
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(lab_app, name="lab")


@lab_app.command("exec", context_settings={**HELP, "allow_interspersed_args": False})
def lab_exec(
    command: Annotated[list[str], typer.Argument(help="command to run inside the lab's network")],
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Run a command on the host side inside the lab's network (e.g. curl to the VIP)."""
    import subprocess

    from hacloud.ops.commands import lab_provider

    try:
        ws, provider = lab_provider(spec)
    except HacloudError as exc:
        _fail(exc)
    rc = subprocess.call(["ip", "netns", "exec", provider.namespace(ws), *command])
    raise typer.Exit(rc)


@lab_app.command("ssh", context_settings={**HELP, "allow_interspersed_args": False})
def lab_ssh(
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str] | None, typer.Argument(help="command (default: a shell)")] = None,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Open a root shell on a lab guest, or run a command there (same as `hacloud ssh`)."""
    ssh(node, command, spec)


@lab_app.command("power")
def lab_power(
    node: Annotated[str, typer.Argument(help="node name")],
    action: Annotated[PowerChoice, typer.Argument(help="what to do")] = PowerChoice.STATUS,
    spec: SpecOption = Path("hacloud.yaml"),
) -> None:
    """Power a lab guest on or off through its virtual BMC (IPMI), or show its power."""
    from hacloud.ops.commands import lab_provider

    try:
        ws, provider = lab_provider(spec)
        if node not in [n.name for n in ws.spec.nodes]:
            raise HacloudError(f"no node named {node!r}", "use a node name from the spec")
        if action is PowerChoice.ON:
            provider.power_on(ws, node)
        elif action is PowerChoice.OFF:
            provider.power_off(ws, node)
        typer.echo(f"{node}: {provider.power(ws, node)}")
    except HacloudError as exc:
        _fail(exc)


def _one_line_paragraphs(typer_app: typer.Typer) -> None:
    """Help text is written wrapped in the source; join each paragraph's lines so the terminal,
    not the source, decides where lines break (blank lines still separate paragraphs)."""
    for info in typer_app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = re.sub(r"(?<!\n)\n(?!\n)", " ", doc)


_one_line_paragraphs(app)
_one_line_paragraphs(lab_app)


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
            _fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
