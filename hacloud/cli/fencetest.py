"""`hacloud fence-test`: fail the active node for real and show what a client measured (the
body is kept as it was; fence-test's round is restructured in hacloud.verify.fencetest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hacloud.cli.common import Progress as _Progress
from hacloud.cli.common import SpecOption, YesOption
from hacloud.cli.common import confirm as _confirm
from hacloud.cli.common import fail as _fail
from hacloud.errors import HacloudError
from hacloud.verify.fencetest.faults import FAULT_HELP, FaultMethod


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
