"""`hacloud render`: every file for review, written so that nothing is lost.

Contract: ``render_to_dir`` writes into a fresh sibling directory and swaps it in at the end, so
a failure leaves the previous output untouched; it replaces a directory only when that holds
nothing but what an earlier render wrote (its manifest). Raises
:class:`~hacloud.errors.UsageError` for a bad ``--out`` before anything is made.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hacloud.errors import UsageError
from hacloud.ops.prepare import Prepared, prepare
from hacloud.provision.terraform import TerraformSource

RENDER_MARKER = ".hacloud-render"


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
            f"cannot write next to {target}: {exc.strerror}",
            "choose a directory you can write with --out",
            code="HAC322",
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
                code="HAC323",
            )
        notes.append(f"--out {out} is a symbolic link: rendered into {target}, where it points")
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"--out {out} is not a directory",
            "pass a directory (new, empty, or written by `hacloud render` before)",
            code="HAC324",
        )
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create {target.parent}: {exc.strerror}",
                "choose a directory you can write with --out",
                code="HAC325",
            ) from None
        return target, notes
    extra = _not_rendered(target)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise UsageError(
            f"{out} holds files `hacloud render` did not write there: {shown}",
            "move them away, or choose an empty or new directory with --out (hacloud never deletes "
            "what it did not write)",
            code="HAC326",
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
