"""A workspace: one validated spec and where its state lives.

Contract: ``state_dir`` (``.hacloud/<cluster>`` next to the spec) holds everything hacloud keeps
for a cluster (secrets, lab disks, known host keys) and belongs to one spec file: the first
spec that keeps state there is recorded in its ``owner`` file, and another spec file naming the
same cluster is refused (:func:`check_owner`), so two specs never share keys or disks by
accident. ``resolve`` makes a path from the spec relative to the spec's directory.
``progress`` reports what a long step is doing; only the CLI decides how to show it.
``terraform`` set means drop-in mode: the nodes come from that Terraform, never from the
provider's own discovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hacloud.errors import UsageError
from hacloud.spec.model import Spec


@dataclass(frozen=True)
class TerraformSource:
    """Where a drop-in cluster's nodes are described: ``path`` (dir, output JSON or state) and an
    optional ``tf_map`` naming outputs for Terraform that does not use hacloud's modules."""

    path: Path
    tf_map: Path | None = None

    def to_json(self) -> str:
        data = {"path": str(self.path), "tf_map": str(self.tf_map) if self.tf_map else None}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TerraformSource:
        data = json.loads(text)
        return cls(Path(data["path"]), Path(data["tf_map"]) if data.get("tf_map") else None)


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Workspace:
    spec: Spec
    spec_path: Path
    progress: Callable[[str], None] = field(default=_quiet, compare=False)
    #: drop-in mode: the nodes are Terraform's, described there (see hacloud.provision.dropin)
    terraform: TerraformSource | None = None

    @property
    def base_dir(self) -> Path:
        return self.spec_path.resolve().parent

    @property
    def state_dir(self) -> Path:
        return self.base_dir / ".hacloud" / self.spec.cluster.name

    def claim(self) -> None:
        """Record this spec as the owner of its state directory (see :func:`record_owner`)."""
        record_owner(self.state_dir, self.spec_path)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


OWNER_FILE = "owner"


def check_owner(state_dir: Path, spec_path: Path) -> None:
    """Refuse a spec file that does not own ``state_dir`` (reads only).

    The owner file names the spec files (one a line) that describe this cluster and so share
    its keys: the one that made it, and any an operator added on purpose (an on-prem view of
    the same hosts, a renamed spec). A state directory from an older hacloud has no owner file:
    the first spec that keeps state there claims it (:func:`record_owner`), so existing
    clusters keep working."""
    try:
        text = (state_dir / OWNER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    owners = [line.strip() for line in text.splitlines() if line.strip()]
    if spec_path.name not in owners:
        cluster = state_dir.name
        raise UsageError(
            f"{state_dir} holds the keys and state of cluster {cluster} as described by "
            f"{', '.join(owners) or 'another spec'}; {spec_path.name} names the same cluster and "
            "would share its corosync and DRBD keys",
            f"give {spec_path.name} its own cluster.name; or, if {spec_path.name} describes that "
            f"same cluster (renamed, or another view of the same nodes), add the line "
            f"{spec_path.name} to {state_dir / OWNER_FILE}",
            code="HAC216",
        )


def record_owner(state_dir: Path, spec_path: Path) -> None:
    """Make ``spec_path`` the owner of ``state_dir`` unless another spec file is (then refuse)."""
    import os

    from hacloud.spec.secrets import make_state_dir

    check_owner(state_dir, spec_path)
    make_state_dir(state_dir)
    try:
        # O_EXCL: of two runs racing for a new directory, one records and the other checks
        fd = os.open(state_dir / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        check_owner(state_dir, spec_path)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(spec_path.name + "\n")
