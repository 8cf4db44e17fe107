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


def load_or_create(directory: Path) -> ClusterSecrets:
    """Read the cluster's secrets, creating them (0600) on first use; never overwrite."""
    path = directory / "secrets.json"
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise HacloudError(
                f"{path} is readable by other users (mode {mode:o})",
                f"run `chmod 600 {path}`; consider the secrets exposed and rotate them",
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return ClusterSecrets(base64.b64decode(raw["corosync_authkey"]), str(raw["drbd_secret"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HacloudError(
                f"{path} is damaged ({type(exc).__name__})",
                "restore it from a backup; the running cluster holds the same keys",
            ) from None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
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
