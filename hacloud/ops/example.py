"""`hacloud init`: the commented example spec of a provider, written without clobbering.

Contract: raises :class:`~hacloud.errors.UsageError` (exit 2) for anything the user can fix and
never prints; ``out`` is either untouched or the whole new file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hacloud.datafiles import templates_dir
from hacloud.errors import UsageError
from hacloud.spec.model import PROVIDER_KINDS


def write_example(provider: str, out: Path, force: bool, emulated: bool = False) -> None:
    """Write the example spec for ``provider`` to ``out``: never over an existing file unless
    ``force``, and even then only over a regular file (not a directory, a device, a FIFO or a
    symbolic link). The text goes to a fresh temporary file beside ``out`` first, so ``out`` is
    either the old file or the whole new one, and nothing is left behind on failure.
    ``emulated``: the provider's spec for its emulated cloud on this machine (where one exists)."""
    if provider not in PROVIDER_KINDS:
        raise UsageError(
            f"unknown provider {provider!r}", f"use one of: {', '.join(PROVIDER_KINDS)}", code="HAC315"
        )
    template = _template(provider, emulated)
    existing = _existing_kind(out)
    if existing is not None and existing != "regular file":
        raise UsageError(
            f"{out} is {existing}; hacloud writes specs only over regular files, even with --force",
            "choose another path with --out",
            code="HAC316",
        )
    if existing is not None and not force:
        raise UsageError(
            f"{out} already exists",
            "pass --force to overwrite it, or --out to choose another file",
            code="HAC317",
        )
    text = template.read_text(encoding="utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise UsageError(
            f"cannot write into {out.parent}: {exc.strerror}",
            "choose a directory you can write with --out",
            code="HAC318",
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
            f"{out} already exists",
            "pass --force to overwrite it, or --out to choose another file",
            code="HAC319",
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot write {out}: {exc.strerror}", "choose another path with --out", code="HAC320"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _template(provider: str, emulated: bool) -> Path:
    """The example for ``provider`` (its emulated cloud's, if asked and there is one)."""
    name = f"{provider}-emulated" if emulated else provider
    template = templates_dir() / "init" / f"{name}.yaml"
    if not template.is_file():
        have = sorted(p.stem.removesuffix("-emulated") for p in template.parent.glob("*-emulated.yaml"))
        raise UsageError(
            f"--emulated: there is no emulated {provider} cloud",
            f"use --emulated with --provider {' or '.join(have)}, or drop --emulated",
            code="HAC339",
        )
    return template


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
        raise UsageError(
            f"cannot inspect {path}: {exc.strerror}", "choose another path with --out", code="HAC321"
        ) from None
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
