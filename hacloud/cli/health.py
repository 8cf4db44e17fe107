"""Commands that read or move a running cluster: failover, status, verify (issue 17: their
health judgement moves to the typed ClusterStatus; the bodies are kept as they were)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hacloud.cli.common import FromTerraformOption, SpecOption, TfMapOption, YesOption
from hacloud.cli.common import Progress as _Progress
from hacloud.cli.common import confirm as _confirm
from hacloud.cli.common import fail as _fail
from hacloud.cli.common import terraform_source as _terraform
from hacloud.errors import HacloudError


def failover(spec: SpecOption = Path("hacloud.yaml"), yes: YesOption = False) -> None:
    """Planned switchover to the other node; waits until the service answers there."""
    from hacloud.ops.failover import failover as do_failover

    _confirm("Move the service to the other node?", yes, destructive=True)
    try:
        source, target = do_failover(spec, _Progress())
    except HacloudError as exc:
        _fail(exc)
    typer.echo(f"the service moved from {source} to {target}")


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
    vip_where = st.get("vip_node", st["service_node"]) or ("nowhere" if answered else "unknown")
    if vip_where == where:
        typer.echo(f"service and VIP {st['vip']}: on {where}")
    else:  # the group is partly up (a VIP still Starting, or its start failed)
        typer.echo(f"service: on {where}; VIP {st['vip']}: on {vip_where}")
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
