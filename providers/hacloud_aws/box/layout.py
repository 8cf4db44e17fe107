"""The box's state directory and the fixed layout of its emulated account.

Contract: ``box_dir(state_dir)`` is ``.hacloud/<cluster>/aws-box/`` (mode 0700, owned by the
user running hacloud). ``BoxPaths`` names every file the box keeps there; the daemon removes its
*runtime* files (``box.json``, ``admin.json``, ``box.sock``) when it stops and keeps the lab PKI
(guests trust that CA, so it outlives one daemon) and its logs (evidence of what ran).

``Layout`` is the account the box creates in-process at start, before any request is served:
one VPC with three subnets (A and B in two zones for the pair, C for clients and the admin),
one route table explicitly associated with each, an internet gateway, the AMI, the key pair and
one Elastic IP. moto's ids are drawn from ``mock_random``; seeded with ``SEED`` and created by
the same calls in the same order they are identical on every start (verified by
``test_layout_ids_are_identical_across_starts``), so a spec can name them.

Addresses come from the RFC 5737 blocks (192.0.2.0/24 for the VPC, 198.51.100.0/24 outside it):
nothing the box routes can ever be a real host.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError

BOX_DIRNAME = "aws-box"
#: fixed seed of moto's id generator (any constant works; changing it changes every id)
SEED = 18_2026
ACCOUNT_ID = "123456789012"  # moto's default account: the one its backends serve
VPC_CIDR = "192.0.2.0/24"
#: (name, CIDR, zone suffix): A and B hold the pair's nodes in two zones, C clients and the admin
SUBNETS = (("a", "192.0.2.0/26", "a"), ("b", "192.0.2.64/26", "b"), ("c", "192.0.2.128/26", "a"))
#: where the guests reach the API (the 4th /26 belongs to no subnet: it is the router's own)
ENDPOINT_ADDRESS = "192.0.2.253"
ELASTIC_IP = "198.51.100.200"
AMI_NAME = "hacloud-lab-debian12"
KEY_NAME = "hacloud-box"
ADMIN_USER = "hacloud-admin"


@dataclass(frozen=True)
class BoxPaths:
    """Every file of one box, under ``root`` (``.hacloud/<cluster>/aws-box``)."""

    root: Path

    @property
    def box_json(self) -> Path:
        return self.root / "box.json"

    @property
    def admin_json(self) -> Path:
        return self.root / "admin.json"

    @property
    def sock(self) -> Path:
        return self.root / "box.sock"

    @property
    def api_log(self) -> Path:
        return self.root / "api.jsonl"

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def tls_pem(self) -> Path:
        return self.root / "tls.pem"

    @property
    def tls_key(self) -> Path:
        return self.root / "tls.key"

    @property
    def ssh_key(self) -> Path:
        return self.root / "id_ed25519"

    def runtime_files(self) -> tuple[Path, ...]:
        """The files that exist only while the daemon runs (removed by a clean stop)."""
        return (self.box_json, self.admin_json, self.sock)


def box_dir(state_dir: Path) -> Path:
    """The box directory of a cluster whose state directory is ``state_dir``."""
    return state_dir / BOX_DIRNAME


def prepare(root: Path) -> BoxPaths:
    """Create ``root`` (0700, with a ``.gitignore`` of everything) or check an existing one;
    refuse what others could read or swap.

    The directory holds the CA key and the admin's secret key, so a symlink, a directory of
    another user or one with group/other bits is refused (HAC690), never "fixed" silently.
    """
    root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise HacloudError(
            f"{root} is not a private directory of this user (a symlink, another owner, or mode "
            f"{stat.S_IMODE(info.st_mode):o}); it would hold the box's CA key and admin key",
            f"remove {root} (no data lives there: `hacloud down` recreates it) or `chmod 700 {root}`",
            code="HAC690",
        )
    from hacloud.spec.secrets import ignore_in_git

    ignore_in_git(root)  # `git add -A` never takes the CA key or the admin key, wherever the box is
    return BoxPaths(root)


@dataclass(frozen=True)
class Layout:
    """The ids of the box account's fixed resources (identical on every start of a box)."""

    region: str
    account: str
    vpc: str
    subnets: dict[str, str]
    route_tables: dict[str, str]
    internet_gateway: str
    ami: str
    key_name: str
    eip_allocation: str
    eip_address: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
