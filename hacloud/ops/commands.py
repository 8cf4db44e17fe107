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
from typing import TYPE_CHECKING, Any

from hacloud.datafiles import templates_dir
from hacloud.deploy.session import ClusterLock, fence_passwords, open_session, workspace
from hacloud.errors import HacloudError, UsageError
from hacloud.provision.changes import Change
from hacloud.provision.dropin import provider_for, recorded_source
from hacloud.provision.provider import get_provider
from hacloud.provision.terraform import TerraformSource
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import Inventory
from hacloud.spec.inventory_file import check_inventory_matches, load_inventory, validated
from hacloud.spec.load import load_spec
from hacloud.spec.model import PROVIDER_KINDS, Spec
from hacloud.spec.profiles import Profile, load_profile
from hacloud.spec.secrets import load_or_create, state_dir
from hacloud.spec.workspace import Workspace, check_owner, record_owner
from hacloud.verify.invariants import Finding, run_checks

if TYPE_CHECKING:
    from hacloud_lab.lab import LabProvider as LabProviderType


RENDER_MARKER = ".hacloud-render"


def write_example(provider: str, out: Path, force: bool) -> None:
    """Write the example spec for ``provider`` to ``out``: never over an existing file unless
    ``force``, and even then only over a regular file (not a directory, a device, a FIFO or a
    symbolic link). The text goes to a fresh temporary file beside ``out`` first, so ``out`` is
    either the old file or the whole new one, and nothing is left behind on failure."""
    if provider not in PROVIDER_KINDS:
        raise UsageError(f"unknown provider {provider!r}", f"use one of: {', '.join(PROVIDER_KINDS)}")
    existing = _existing_kind(out)
    if existing is not None and existing != "regular file":
        raise UsageError(
            f"{out} is {existing}; hacloud writes specs only over regular files, even with --force",
            "choose another path with --out",
        )
    if existing is not None and not force:
        raise UsageError(
            f"{out} already exists", "pass --force to overwrite it, or --out to choose another file"
        )
    text = (templates_dir() / "init" / f"{provider}.yaml").read_text(encoding="utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise UsageError(
            f"cannot write into {out.parent}: {exc.strerror}", "choose a directory you can write with --out"
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if force:
            tmp.replace(out)
        else:
            _link_new(tmp, out, text)
    except FileExistsError:
        raise UsageError(
            f"{out} already exists", "pass --force to overwrite it, or --out to choose another file"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}", "choose another path with --out") from None
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, out: Path, text: str) -> None:
    """Put the finished ``tmp`` at ``out`` only if nothing is there (FileExistsError otherwise):
    a hard link is atomic and never replaces; where the filesystem has no hard links, an
    exclusive create (O_EXCL) keeps the no-clobber guarantee."""
    import errno

    try:
        os.link(tmp, out)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)


def _existing_kind(path: Path) -> str | None:
    """What is at ``path`` (None: nothing), without following a symbolic link."""
    import stat

    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot inspect {path}: {exc.strerror}", "choose another path with --out") from None
    kinds = [
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


@dataclass(frozen=True)
class Prepared:
    spec: Spec
    inventory: Inventory
    profile: Profile
    bundle: Bundle
    warnings: list[str] = field(default_factory=list)
    #: where each node came from, when the inventory was read from Terraform
    origin: tuple[str, ...] = ()


def prepare(
    spec_path: Path,
    inventory_path: Path | None,
    *,
    create_secrets: bool = True,
    inventory: Inventory | None = None,
    terraform: TerraformSource | None = None,
) -> Prepared:
    """Load and validate spec and inventory, then render everything in memory. ``inventory``:
    one a provider just discovered (else the file, else Terraform's -- ``terraform`` or the
    source a drop-in `up` recorded --, else the planned one)."""
    from hacloud.provision.terraform import import_inventory
    from hacloud.spec.secrets import ClusterSecrets

    spec = load_spec(spec_path)
    provider = get_provider(spec.provider.kind)
    origin: tuple[str, ...] = ()
    if inventory is None and inventory_path is not None:
        inventory = load_inventory(inventory_path)
        check_inventory_matches(spec, inventory, str(inventory_path))
    elif inventory is None:
        source = terraform or recorded_source(Workspace(spec, spec_path))
        if source is not None:
            imported = import_inventory(spec, source, provider)
            inventory, origin = imported.inventory, imported.origin
        else:
            inventory = provider.planned_inventory(spec)
    # a provider's own inventory (its API, the lab, the plan) passes the grammar a loaded one does
    inventory = validated(inventory, f"the {inventory.provider} provider's inventory")
    profile = effective_profile(spec, load_profile(spec.profile_name), inventory)
    warnings: list[str] = []
    if inventory.placeholder:
        warnings.append(
            "some node ids, addresses or devices do not exist yet and were rendered as "
            "placeholders (203.0.113.x, PLACEHOLDER-*, hacloud-placeholder-*); review only, "
            "do not install these files (see docs/inventory.md)"
        )
    check_owner(state_dir(spec_path, spec.cluster.name), spec_path)
    if create_secrets:
        record_owner(state_dir(spec_path, spec.cluster.name), spec_path)
        secrets = load_or_create(state_dir(spec_path, spec.cluster.name))
    else:
        secrets = ClusterSecrets(b"\0" * 256, "not-a-secret")
    passwords, missing = fence_passwords(spec, spec_path.parent)
    warnings += missing
    bundle = render_all(spec, inventory, profile, secrets, passwords)
    return Prepared(spec, inventory, profile, bundle, warnings, origin)


@dataclass(frozen=True)
class RenderReport:
    written: list[str]
    warnings: list[str]
    origin: tuple[str, ...] = ()


def render_to_dir(
    spec_path: Path, out: Path, inventory_path: Path | None, terraform: TerraformSource | None = None
) -> RenderReport:
    """Render into the directory ``out``: a fresh sibling directory is written, then swapped in,
    so a failure leaves the previous output untouched. ``out`` holds a manifest
    (``.hacloud-render``) of every file hacloud wrote there; a later render replaces the
    directory only when it holds nothing else, so nothing hacloud did not write is ever
    deleted. A symbolic link ``out`` is followed explicitly (the swap happens where it points)."""
    # the output is checked, and its staging directory made, before anything else is (the
    # cluster's secrets): a bad --out leaves nothing behind
    target, notes = _render_target(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    except OSError as exc:
        raise UsageError(
            f"cannot write next to {target}: {exc.strerror}", "choose a directory you can write with --out"
        ) from None
    written: list[str] = []
    try:
        os.chmod(staging, 0o700)  # it holds secrets
        prepared = prepare(spec_path, inventory_path, terraform=terraform)
        files = _render_files(prepared)
        for rel, content, mode, note in files:
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.chmod(path, mode)
            if note is not None:
                written.append(note)
        manifest = [RENDER_MARKER, *(rel for rel, *_ in files)]
        (staging / RENDER_MARKER).write_text(
            MANIFEST_HEADER + "".join(f"{m}\n" for m in manifest), encoding="utf-8"
        )
        notes += _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RenderReport(written, prepared.warnings + notes, prepared.origin)


MANIFEST_HEADER = (
    "# written by hacloud render: the files below are the ones it wrote here; a later render\n"
    "# replaces this directory only if it holds nothing else\n"
)


def _render_files(prepared: Prepared) -> list[tuple[str, bytes, int, str | None]]:
    """(path relative to the output, content, mode, line for the report or None) of every file."""
    from hacloud.spec.secrets import GITIGNORE

    files: list[tuple[str, bytes, int, str | None]] = [
        (".gitignore", GITIGNORE.encode(), 0o644, None),  # `git add -A` must not take the secrets
        ("cib.xml", prepared.bundle.cib.encode(), 0o644, "cib.xml"),
        ("inventory.json", prepared.inventory.to_json().encode(), 0o644, "inventory.json"),
    ]
    for node, node_files in prepared.bundle.files.items():
        for f in node_files:
            note = f"  (secret, {f.mode:04o})" if f.secret else ""
            files.append((f"{node}/{f.path.lstrip('/')}", f.content, f.mode, f"{node}{f.path}{note}"))
    return files


def _render_target(out: Path) -> tuple[Path, list[str]]:
    """The real directory to render into, and a note when a symbolic link was followed.
    Refuses (UsageError) a file, a device, a dangling link or a directory hacloud did not write."""
    notes: list[str] = []
    target = out
    if out.is_symlink():
        target = out.resolve()
        if not target.is_dir():
            raise UsageError(
                f"--out {out} is a symbolic link to {target}, which is not a directory",
                "point --out at a directory (or a link to one)",
            )
        notes.append(f"--out {out} is a symbolic link: rendered into {target}, where it points")
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"--out {out} is not a directory",
            "pass a directory (new, empty, or written by `hacloud render` before)",
        )
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create {target.parent}: {exc.strerror}",
                "choose a directory you can write with --out",
            ) from None
        return target, notes
    extra = _not_rendered(target)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise UsageError(
            f"{out} holds files `hacloud render` did not write there: {shown}",
            "move them away, or choose an empty or new directory with --out (hacloud never deletes "
            "what it did not write)",
        )
    return target, notes


def _not_rendered(directory: Path) -> list[str]:
    """What ``directory`` holds beyond its render manifest (all of it when it has none)."""
    listed: set[str] = set()
    marker = directory / RENDER_MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            text = marker.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        if text.startswith("written by hacloud render"):
            # before the manifest, the marker only said who wrote the directory: what it can
            # have written is the layout of a render (the top files and one tree per node)
            return [p.name for p in directory.iterdir() if not _legacy_render_entry(p)]
        listed = {line for line in text.splitlines() if line and not line.startswith("#")}
    parents = {str(Path(p).parent) for p in listed} | {
        str(parent) for p in listed for parent in Path(p).parents
    }
    extra: list[str] = []
    for root, dirs, names in os.walk(directory):
        rel_root = Path(root).relative_to(directory)
        for d in dirs:
            rel = str(rel_root / d)
            if rel not in parents or (Path(root) / d).is_symlink():
                extra.append(rel)
        dirs[:] = [d for d in dirs if str(rel_root / d) in parents and not (Path(root) / d).is_symlink()]
        extra += [str(rel_root / n) for n in names if str(rel_root / n) not in listed]
    return sorted(extra)


def _legacy_render_entry(path: Path) -> bool:
    if path.name in (RENDER_MARKER, "cib.xml", "inventory.json"):
        return path.is_file()
    return path.is_dir() and not path.is_symlink() and sorted(p.name for p in path.iterdir()) == ["etc"]


def _swap_in(staging: Path, target: Path) -> list[str]:
    """Put ``staging`` where ``target`` is; the previous render goes away only if, once moved
    aside, it still holds nothing but what its manifest lists (else it is kept, and said)."""
    if not target.exists():
        staging.rename(target)
        return []
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    previous = aside / target.name
    target.rename(previous)
    staging.rename(target)
    if _not_rendered(previous):  # something was added between the check and the swap
        return [f"the previous render was kept in {previous}: files appeared in it during this render"]
    shutil.rmtree(aside)
    return []


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
            raise HacloudError("the nodes do not exist yet: nothing live to check", "run `hacloud up` first")
        # rendered for the nodes that exist, so the rules judge what `up` installs there
        prepared = prepare(spec_path, None, create_secrets=False, inventory=found)
        findings = run_checks(prepared.spec, found, prepared.profile, prepared.bundle)
        return findings + provider.live_checks(ws, found), prepared.warnings
    prepared = prepare(spec_path, inventory_path, create_secrets=False, terraform=terraform)
    return run_checks(prepared.spec, prepared.inventory, prepared.profile, prepared.bundle), prepared.warnings


def up(spec_path: Path, progress: Callable[[str], None]) -> Inventory:
    """Provider phase of `hacloud up`: nodes, volumes, network exist and answer SSH."""
    ws = workspace(spec_path, progress)
    provider = provider_for(ws)
    inventory = provider.ensure_nodes(ws)
    return provider.ensure_volumes(ws, inventory)


def down(
    spec_path: Path,
    delete_volumes: bool,
    purge: bool,
    terraform: TerraformSource | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Take the cluster down. Drop-in (nodes from Terraform): stop the cluster and remove its
    configuration from the nodes, then what hacloud added around them; the machines and disks
    stay (they are Terraform's), and so does the data on the disks."""
    ws = workspace(spec_path, progress, terraform)
    provider = provider_for(ws)
    # the cluster lock: never tear down under a running `up`, `failover` or `fence-test`
    with ClusterLock(ws):
        if ws.terraform is not None:
            if delete_volumes or purge:
                provider.teardown(ws, delete_volumes=True)  # refuses, naming terraform destroy
            inventory = provider.discover(ws)
            assert inventory is not None
            remove_cluster_config(ws, inventory)
            provider.teardown(ws)
            return
        provider.teardown(ws, delete_volumes=delete_volumes or purge)
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


__all__ = [
    "HacloudError",
    "check_report",
    "check_spec",
    "down",
    "lab_provider",
    "prepare",
    "render_to_dir",
    "up",
    "write_example",
]


# ---------------------------------------------------------------- converge, plan, status, failover


class NodesMissing(HacloudError):
    """`plan` found no nodes to compare the cluster configuration with."""


def plan_infrastructure(
    spec_path: Path, progress: Callable[[str], None], terraform: TerraformSource | None = None
) -> tuple[list[Change], str] | None:
    """(infrastructure changes `up` would make, the agents' permissions) for providers that build
    infrastructure (AWS, Azure); None for the others. Reads the account, changes nothing."""
    ws = workspace(spec_path, progress, terraform)
    return provider_for(ws).plan_infrastructure(ws)


def converge(
    spec_path: Path,
    progress: Callable[[str], None],
    *,
    apply: bool,
    force: bool = False,
    verbose: bool = False,
    nodes_only: bool = False,
    expect_provider: str | None = None,
    terraform: TerraformSource | None = None,
) -> list[Any]:
    """`hacloud up` (apply) or `hacloud plan`: returns the changes made or needed.
    ``nodes_only``: stop once the nodes, volumes and network exist (no cluster configuration)."""
    from hacloud.deploy.engine import Engine

    ws = workspace(spec_path, progress, terraform)
    if expect_provider is not None and expect_provider != ws.spec.provider.kind:
        raise UsageError(
            f"--provider {expect_provider} but {spec_path} uses provider {ws.spec.provider.kind}",
            f"run `hacloud init --provider {expect_provider}` for a new spec, or drop --provider",
        )
    provider = provider_for(ws)
    if apply:
        provider.check_environment()
    with ClusterLock(ws):
        if apply:
            inventory = provider.ensure_volumes(ws, provider.ensure_nodes(ws))
            if nodes_only:
                for node in inventory.nodes:
                    bmc = f", BMC {node.bmc_address}" if node.bmc_address else ""
                    progress(f"{node.name}: {node.ssh_address} (links {', '.join(node.links)}){bmc}")
                return []
        else:
            found = provider.discover(ws)
            if found is None:
                raise NodesMissing(
                    "the nodes do not exist yet: nothing to compare with",
                    "run `hacloud up` to create them (or `hacloud render` to review files)",
                )
            inventory = found
        if apply:
            wait_for_ssh(ws, inventory, provider.ssh_wait_seconds(ws.spec), progress)
        try:
            session = open_session(ws, inventory, verbose)
        except HacloudError as exc:
            if ws.spec.provider.kind in ("lab", "onprem") or ws.terraform is not None:
                raise
            raise HacloudError(
                f"the {ws.spec.provider.kind} infrastructure is in place, but step 'log in to the nodes "
                f"over SSH' failed: {exc.message}",
                exc.remedy,
            ) from None
        try:
            engine = Engine(
                ws.spec,
                session.inventory,
                session.bundle,
                session.conns,
                progress,
                apply=apply,
                force=force,
                needs=provider.node_needs(ws.spec, session.inventory),
            )
            return engine.run_all()
        finally:
            session.close()


def remove_cluster_config(ws: Workspace, inventory: Inventory) -> None:
    """Drop-in `down`: stop the cluster and remove what hacloud installed on the nodes (the
    files it rendered, the CIB), leaving the machines, the packages and the data disks as they
    are: DRBD's metadata and the filesystem stay on the backing devices, so a later `up` finds
    the data again."""
    import shlex

    from hacloud.render.resources import drbd_resources

    session = open_session(ws, inventory, tolerate_down=True)
    try:
        for name, conn in session.conns.items():
            ws.progress(f"{name}: stopping pacemaker and corosync, removing the cluster configuration")
            paths = sorted({f.path for f in session.bundle.files.get(name, [])})
            res = " ".join(shlex.quote(r.name) for r in drbd_resources(ws.spec))
            conn.run(
                "systemctl disable --now pacemaker corosync >/dev/null 2>&1 || true; "
                f'for r in {res}; do drbdadm down "$r" >/dev/null 2>&1 || true; done; '
                f"rm -f {' '.join(shlex.quote(p) for p in paths)} /var/lib/pacemaker/cib/cib*",
            )
        for node in inventory.nodes:
            if node.name not in session.conns:
                ws.progress(f"{node.name}: not reachable; its cluster configuration stays until it is")
    finally:
        session.close()


def wait_for_ssh(
    ws: Workspace, inventory: Inventory, timeout: float, progress: Callable[[str], None]
) -> None:
    """Wait until every node's SSH port accepts a TCP connection (fresh cloud instances take a
    minute or two to boot); a jump host makes the login itself the test."""
    import socket
    import time

    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    for node in inventory.nodes:
        ssh = ws.spec.node(node.name).ssh
        if ssh.jump:
            continue
        said = False
        while True:
            try:
                with socket.create_connection((node.ssh_address, ssh.port), timeout=5):
                    break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise HacloudError(
                        f"the {ws.spec.provider.kind} infrastructure is in place, but step 'reach the "
                        f"nodes over SSH' failed: {node.name} ({node.id}) at {node.ssh_address}:{ssh.port} "
                        f"did not answer within {timeout:.0f} s ({exc.strerror or exc})",
                        "check that the instance booted (console or serial log), that the security group "
                        "admits this machine (provider.options.admin_cidr), and that this machine can "
                        "route to the address (run hacloud inside the VPC, set nodes[].ssh.jump, or "
                        "provider.options.ssh_address: public); then run `hacloud up` again: what exists "
                        "is reused",
                    ) from None
                if not said:
                    progress(f"waiting for {node.name} to answer SSH at {node.ssh_address}:{ssh.port}")
                    said = True
                time.sleep(3)


def ssh_command(spec_path: Path, node: str) -> list[str]:
    """The OpenSSH command line that reaches ``node`` with the recorded keys and host keys."""
    ws = workspace(spec_path)
    provider = provider_for(ws)
    inventory = provider.discover(ws) or provider.planned_inventory(ws.spec)
    try:
        info = inventory.node(node)
    except KeyError:
        raise UsageError(
            f"no node named {node!r}", f"use one of: {', '.join(n.name for n in inventory.nodes)}"
        ) from None
    ep = provider.endpoint(ws, info)
    known = ws.state_dir / "known_hosts"
    cmd = [
        "ssh",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes" if known.exists() else "StrictHostKeyChecking=accept-new",
        "-p",
        str(ep.port),
    ]
    if ep.key_file:
        cmd += ["-i", ep.key_file]
    if ep.jump:
        cmd += ["-J", ep.jump]
    cmd.append(f"{ep.user}@{ep.address}")
    if ep.namespace:
        cmd = ["ip", "netns", "exec", ep.namespace, *cmd]
    return cmd
