"""A workspace: one validated spec and where its state lives.

Contract: ``state_dir`` (``.hacloud/<cluster>`` next to the spec) holds everything hacloud keeps
for a cluster (secrets, lab disks, known host keys); ``resolve`` makes a path from the spec
relative to the spec's directory. ``progress`` reports what a long step is doing; only the CLI
decides how to show it. ``terraform`` set means drop-in mode: the nodes come from that
Terraform, never from the provider's own discovery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hacloud.spec import Spec
from hacloud.terraform import TerraformSource


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Workspace:
    spec: Spec
    spec_path: Path
    progress: Callable[[str], None] = field(default=_quiet, compare=False)
    #: drop-in mode: the nodes are Terraform's, described there (see hacloud.dropin)
    terraform: TerraformSource | None = None

    @property
    def base_dir(self) -> Path:
        return self.spec_path.resolve().parent

    @property
    def state_dir(self) -> Path:
        return self.base_dir / ".hacloud" / self.spec.cluster.name

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p
