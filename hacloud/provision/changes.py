"""What the cloud providers' infrastructure code shares (no SDK here).

Contract: an infrastructure run records every change it makes, or with ``apply=False`` would
make, through :meth:`Recorder.change`; the same code path is `up` and `plan`, so what `plan`
shows is what `up` does.
"""

from __future__ import annotations

from hacloud.spec.model import Spec
from hacloud.spec.workspace import Workspace


class Recorder:
    """Mixin for a provider's infrastructure dataclass with ``ws``, ``apply`` and ``changes``."""

    ws: Workspace
    apply: bool
    changes: list[str]

    @property
    def spec(self) -> Spec:
        return self.ws.spec

    @property
    def cluster(self) -> str:
        return self.spec.cluster.name

    def change(self, what: str) -> bool:
        """Record a change; True when it should be carried out now."""
        self.changes.append(what)
        self.ws.progress(("" if self.apply else "would: ") + what)
        return self.apply
