"""Power control of on-prem nodes through their BMCs, from this machine, with the stock agents.

Used by ``hacloud fence-test`` to pull a node's plug behind the cluster's back and to confirm,
independently of the cluster, that a fenced node is off. The BMC named in the spec's
``fence_ipmilan`` or ``fence_redfish`` method is driven by the same agent the cluster uses,
run locally; the password goes to the agent on stdin, never on a command line.
"""

from __future__ import annotations

import shutil
import subprocess

from hacloud.errors import HacloudError, ProviderUnavailable
from hacloud.spec.model import IpmiFencing, IpmiTarget, RedfishFencing
from hacloud.spec.workspace import Workspace

# fencing.py's status exit codes
ON, OFF = 0, 2


def _target(ws: Workspace, node: str) -> tuple[str, dict[str, str]]:
    from hacloud.deploy.session import fence_passwords

    for method in ws.spec.fencing:
        if isinstance(method, IpmiFencing | RedfishFencing) and node in method.nodes:
            passwords, missing = fence_passwords(ws.spec, ws.base_dir)
            if node not in passwords:
                raise HacloudError(
                    missing[0] if missing else f"no BMC password for {node}",
                    "create it (0600)",
                    code="HAC644",
                )
            bmc = method.nodes[node]
            options = {"ip": bmc.ip, "ipport": str(bmc.port), "username": bmc.username}
            options["password"] = passwords[node]
            if isinstance(bmc, IpmiTarget):
                options["lanplus"] = "1" if bmc.lanplus else "0"
            else:
                options["ssl"] = "1"
                if bmc.systems_uri:  # else the agent discovers it, as in the cluster
                    options["systems_uri"] = bmc.systems_uri
                if bmc.ssl_insecure:
                    options["ssl_insecure"] = "1"
            return method.kind, options
    raise ProviderUnavailable(
        f"{node} has no fence_ipmilan or fence_redfish BMC in the spec: hacloud cannot switch its power",
        "use `fence-test --method fence` (through the cluster) or `--method crash`",
        code="HAC645",
    )


def run_agent(ws: Workspace, node: str, action: str) -> int:
    agent, options = _target(ws, node)
    if shutil.which(agent) is None:
        raise HacloudError(
            f"{agent} is not installed on this machine", "apt-get install fence-agents", code="HAC646"
        )
    stdin = "".join(f"{k}={v}\n" for k, v in {**options, "action": action}.items())
    try:
        proc = subprocess.run([agent], input=stdin, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise HacloudError(
            f"{agent} {action} for {node} timed out", "check that this machine reaches the BMC", code="HAC647"
        ) from None
    if action != "status" and proc.returncode != 0:
        raise HacloudError(
            f"{agent} could not power {node} {action}: {proc.stderr.strip()[-300:]}",
            "check the BMC address and credentials in the spec's fencing section",
            code="HAC648",
        )
    return proc.returncode
