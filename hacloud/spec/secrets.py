"""Cluster secrets: the corosync authkey and the DRBD shared secret.

Contract: secrets are made once per cluster with the OS's CSPRNG and kept in the state
directory (``.hacloud/<cluster>/secrets.json`` next to the spec, mode 0600, directory 0700).
Renderers receive them as input, so rendering stays pure and byte-stable; nothing here logs
or prints them, and ``repr`` of :class:`ClusterSecrets` hides them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as _rand
from dataclasses import dataclass, field
from pathlib import Path

from hacloud.errors import HacloudError

# corosync-keygen writes 256 bytes by default since corosync 3 (knet accepts 1024..4096 bits).
AUTHKEY_BYTES = 256


@dataclass(frozen=True)
class ClusterSecrets:
    authkey: bytes = field(repr=False)
    drbd_secret: str = field(repr=False)

    @staticmethod
    def generate() -> ClusterSecrets:
        return ClusterSecrets(_rand.token_bytes(AUTHKEY_BYTES), _rand.token_urlsafe(32))


def state_dir(spec_path: Path, cluster: str) -> Path:
    return spec_path.resolve().parent / ".hacloud" / cluster


#: In ``.hacloud/`` (and a render output): `git add -A` next to the spec must not pick up the
#: corosync authkey, the DRBD secret or BMC passwords.
GITIGNORE = "# written by hacloud: secrets live here, never commit them\n*\n"


def ignore_in_git(directory: Path) -> None:
    """Put a ``.gitignore`` ignoring everything into ``directory`` (kept if one is there)."""
    path = directory / ".gitignore"
    if not path.exists():
        path.write_text(GITIGNORE, encoding="utf-8")


def make_state_dir(directory: Path) -> None:
    """Create a cluster's state directory (0700) and the ``.gitignore`` of ``.hacloud/``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ignore_in_git(directory.parent)


def check_private(path: Path, what: str, rotate: str) -> None:
    """Refuse a secret file that other users can read (any group/other bit), as ssh does with
    private keys: its content must be considered exposed."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise HacloudError(
            f"{path} ({what}) is readable by other users (mode {mode:o})",
            f"run `chmod 600 {path}`; consider {rotate}",
            code="HAC213",
        )


def read_secret_file(path: Path, what: str) -> str | None:
    """The stripped text of a secret file, None when it does not exist (or is empty); a file
    others can read is refused (HacloudError), never used."""
    try:
        check_private(path, what, "the password exposed and change it")
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise HacloudError(
            f"cannot read {path} ({what}): {exc}", "check the file and its permissions", code="HAC214"
        ) from None
    return text or None


def load_or_create(directory: Path) -> ClusterSecrets:
    """Read the cluster's secrets, creating them (0600) on first use; never overwrite."""
    path = directory / "secrets.json"
    if path.exists():
        check_private(path, "the cluster's secrets", "the secrets exposed and rotate them")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return ClusterSecrets(base64.b64decode(raw["corosync_authkey"]), str(raw["drbd_secret"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HacloudError(
                f"{path} is damaged ({type(exc).__name__})",
                "restore it from a backup; the running cluster holds the same keys",
                code="HAC215",
            ) from None
    make_state_dir(directory)
    os.chmod(directory, 0o700)
    made = ClusterSecrets.generate()
    body = json.dumps(
        {
            "corosync_authkey": base64.b64encode(made.authkey).decode(),
            "drbd_secret": made.drbd_secret,
        }
    )
    # O_EXCL: two concurrent runs must not end with different keys on different nodes.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return made
