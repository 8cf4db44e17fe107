"""`hacloud status`: the cluster's state and the one judgement of its health.

Contract: :func:`cluster_status` reads only (no lock: status must answer while `up` or a
fence-test runs) and returns the ``status --json`` document; healthy is decided by
:func:`hacloud.deploy.query.health.judge`, the rules `up`, `failover` and fence-test use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hacloud.deploy.query.health import judge
from hacloud.deploy.query.status import as_json, current_status
from hacloud.deploy.session import workspace
from hacloud.provision.terraform import TerraformSource


def cluster_status(spec_path: Path, terraform: TerraformSource | None = None) -> dict[str, Any]:
    """Everything `hacloud status` shows, as data (also its --json form)."""
    status = current_status(workspace(spec_path, terraform=terraform))
    return as_json(status, judge(status).texts())
