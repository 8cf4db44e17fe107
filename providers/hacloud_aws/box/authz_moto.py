"""The IAM judge's hook into moto 5.2.5 (pinned by ``hacloud[aws-box]``): it replaces the
authorisation step ``IAMRequest.check_action_permitted`` for EC2, IAM and STS with the judge of
``authz.py`` and keeps moto's authentication (SigV4, access key, session token). It also gives
the judge what only moto's state knows (an Elastic IP's allocation and interface, an IAM name's
path, a role's trust policy) and answers refusals in each service's own shape.

Contract: ``install()`` (the daemon calls it once, after ``moto_ext.install()``) returns its
undo; ``installed()`` is the same for a ``with`` block. See ``authz.py`` for the rules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from hacloud_aws.box.authz import JUDGED, NAMESPACES, Request, judge, message, reference, trusted

log = logging.getLogger("hacloud_aws.box.authz")


def _http_error(req: Request, text: str, dry_run: bool = False) -> Exception:
    from xml.sax.saxutils import escape

    from werkzeug.exceptions import HTTPException

    request_id = str(uuid.uuid4())
    element = f"<Message>{escape(text)}</Message>"
    if req.service == "ec2":
        code = "DryRunOperation" if dry_run else "UnauthorizedOperation"
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        body += f"<Code>{code}</Code>{element}</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    else:
        body = f'<ErrorResponse xmlns="{NAMESPACES[req.service]}"><Error><Type>Sender</Type>'
        body += (
            f"<Code>AccessDenied</Code>{element}</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )

    class Refused(HTTPException):
        code = 412 if dry_run else 403

        def get_body(self, *args: Any, **kwargs: Any) -> str:
            return body

        def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
            return [("Content-Type", "text/xml")]

    error = Refused()
    error.description = body
    return error


def _check_trust(req: Request) -> None:
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    for arn in req.values("RoleArn"):
        try:
            role = iam_backends[req.account]["aws"].get_role_by_arn(arn)
        except NotFoundException:
            continue  # no such role: moto answers that itself
        if not trusted(json.loads(role.assume_role_policy_document), req):
            raise _http_error(
                req,
                f"User: {req.principal} is not authorized to perform: sts:AssumeRole on resource: {arn}",
            )


# -- the hook into moto ------------------------------------------------------------------------


def _resolver(account: str, region: str) -> Callable[[str, str, str], list[str]]:
    def resolve(kind: str, name: str, value: str) -> list[str]:
        try:
            if kind in ("role", "instance-profile"):
                from moto.iam.models import iam_backends

                iam = iam_backends[account]["aws"]
                found = iam.get_role(value) if kind == "role" else iam.get_instance_profile(value)
                return [str(found.arn).split(f":{kind}/", 1)[1]]
            from moto.ec2.models import ec2_backends

            ec2 = ec2_backends[account][region]
            if name == "PublicIp":
                eips = ec2.address_by_ip([value], fail_if_not_found=False)
            elif name == "AssociationId":
                eips = ec2.address_by_association([value])
            else:
                return []
        except Exception:  # an unknown name: the ARN keeps the name; moto answers NotFound after
            return []
        if kind == "elastic-ip":
            return [e.allocation_id for e in eips if e.allocation_id]
        enis = [getattr(e, "eni", None) for e in eips]
        return [str(eni.id) for eni in enis if eni is not None]

    return resolve


def _policies(iam_request: Any) -> list[tuple[str, dict[str, Any]]]:
    from moto.iam.access_control import IAMPolicy

    out = []
    for index, policy in enumerate(iam_request._access_key.collect_policies(), 1):
        name = getattr(policy, "name", None) or (
            policy.get("policy_name") if isinstance(policy, dict) else None
        )
        out.append((f"policy {name or index}", IAMPolicy(policy)._policy_json))
    return out


def _check(orig: Callable[..., None]) -> Callable[..., None]:
    def check_action_permitted(self: Any, resource: str) -> None:
        service, _, action = self._action.partition(":")
        if service not in JUDGED:
            return orig(self, resource)
        req = Request(
            service=service,
            action=action,
            region=self._region,
            account=self.account_id,
            principal=self._access_key.arn,
            params={k: v if isinstance(v, list) else [v] for k, v in (self._data or {}).items()},
            resolve=_resolver(self.account_id, self._region),
        )
        verdict = judge(req, _policies(self))
        if verdict is not None:
            text = message(req, *verdict)
            if verdict[1].unsupported:
                log.warning("refused for a condition the box does not evaluate: %s", text)
            raise _http_error(req, text)
        if req.service == "sts" and req.action == "AssumeRole":
            _check_trust(req)
        if req.service == "ec2" and [v.lower() for v in req.values("DryRun")] == ["true"]:
            # allowed, so DryRun ends here for every action, as EC2 answers it; moto 5.2.5
            # ignores DryRun on some (ReplaceRoute would really move the route)
            raise _http_error(req, "Request would have succeeded, but DryRun flag is set.", dry_run=True)
        return None

    return check_action_permitted


def install() -> Callable[[], None]:
    """Judge every EC2/IAM/STS request from now on; returns the undo."""
    from moto.iam.access_control import IAMRequest

    reference()  # a missing or broken extract stops the box at start, not at the first request
    # defined on IAMRequestBase: set on the subclass EC2/IAM/STS use, so undo is a delete
    orig = IAMRequest.check_action_permitted
    IAMRequest.check_action_permitted = _check(orig)  # type: ignore[method-assign]

    def undo() -> None:
        del IAMRequest.check_action_permitted

    return undo


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The judge for a ``with`` block (tests that run moto in their own process)."""
    undo = install()
    try:
        yield
    finally:
        undo()
