"""boto3 clients and AWS errors turned into hacloud errors that say what to do.

Contract: :func:`clients` is the only place a boto3 session is made (botocore *standard*
retries: throttling and transient 5xx are retried with backoff); :func:`aws_error` turns any
botocore exception into a :class:`~hacloud.errors.HacloudError` whose remedy names the spec
field or the permission to fix. On real AWS the endpoint and credentials come from boto3's own
settings (``AWS_ENDPOINT_URL``, profiles), so hacloud adds no endpoint option of its own; an
emulated AWS passes its ``ApiAccess`` (the only difference in the provider's code path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hacloud.errors import HacloudError
from hacloud.poll import poll_until

T = TypeVar("T")

# Errors that say "this AZ cannot give you that now": retrying within one run does not help,
# so instance creation stops at once and says what to change (issue #6 §8).
CAPACITY_CODES = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "Unsupported",
    "InsufficientHostCapacity",
}
QUOTA_CODES = {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"}
THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"}
DENIED_CODES = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"}

# Spec field to name when AWS says an id does not exist.
NOT_FOUND_FIELDS = {
    "InvalidSubnetID.NotFound": "provider.options.subnets",
    "InvalidAMIID.NotFound": "provider.options.ami",
    "InvalidAMIID.Malformed": "provider.options.ami",
    "InvalidKeyPair.NotFound": "provider.options.key_name",
    "InvalidRouteTableID.NotFound": "vip.route_tables",
    "InvalidAllocationID.NotFound": "vip.allocation_id",
    "InvalidInstanceID.NotFound": "nodes[].id",
    "InvalidInstanceID.Malformed": "nodes[].id",
}


@dataclass(frozen=True)
class Clients:
    ec2: Any
    iam: Any
    sts: Any
    region: str
    #: an EC2 client that never retries: instance creation handles its own errors
    ec2_once: Any


def require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise HacloudError(
            "the AWS provider needs boto3, which is not installed",
            "install hacloud with its AWS extra: pip install 'hacloud[aws]'",
            code="HAC651",
        ) from None


@dataclass(frozen=True)
class ApiAccess:
    """Where the API is and who calls it. The default is boto3's own chain (real AWS: endpoint,
    credentials and CA from the environment, profiles or an instance role); an emulated AWS
    gives its local endpoint, its CA and its admin key (``hacloud_aws.site``)."""

    endpoint_url: str | None = None
    verify: str | bool = True
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)


def clients(region: str, access: ApiAccess | None = None) -> Clients:
    """boto3 clients for ``region`` (imports boto3 here, never at hacloud import time)."""
    require_boto3()
    import boto3
    from botocore.config import Config

    access = access or ApiAccess()
    session = boto3.session.Session(
        region_name=region, aws_access_key_id=access.key_id, aws_secret_access_key=access.secret
    )
    retrying = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60)
    once = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=10, read_timeout=60)

    def client(service: str, config: Config) -> Any:
        return session.client(service, config=config, endpoint_url=access.endpoint_url, verify=access.verify)

    return Clients(
        ec2=client("ec2", retrying),
        iam=client("iam", retrying),
        sts=client("sts", retrying),
        region=region,
        ec2_once=client("ec2", once),
    )


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def _transport_error(name: str, doing: str, text: str) -> HacloudError | None:
    """botocore's own failures (no credentials, no connection), by exception class name."""
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return HacloudError(
            f"cannot {doing}: no AWS credentials were found",
            "run `aws configure` or `aws sso login`, set AWS_PROFILE, "
            "or run hacloud on an instance with a role",
            code="HAC652",
        )
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
    ):
        return HacloudError(
            f"cannot {doing}: the AWS API is unreachable ({text})",
            "check this machine's network path to the EC2/IAM endpoints (proxy, VPC endpoint) and retry",
            code="HAC653",
        )
    return None


def aws_error(exc: BaseException, doing: str, where: str = "") -> HacloudError:
    """A hacloud error for a failed AWS call made while ``doing`` (e.g. "create node1")."""
    code = error_code(exc)
    text = _message(exc)
    name = type(exc).__name__
    at = f" in {where}" if where else ""
    transport = _transport_error(name, doing, text)
    if transport is not None:
        return transport
    if code in CAPACITY_CODES:
        return HacloudError(
            f"cannot {doing}: AWS has no capacity{at} ({code}: {text})",
            "try another instance type (provider.options.instance_type), or a subnet in another "
            "availability zone (provider.options.subnets), or retry later; nothing else was changed",
            code="HAC654",
        )
    if code in QUOTA_CODES:
        return HacloudError(
            f"cannot {doing}: an account quota is reached{at} ({code}: {text})",
            "ask for a higher EC2 quota (Service Quotas console) or use a smaller instance type",
            code="HAC655",
        )
    if code in THROTTLE_CODES:
        return HacloudError(
            f"cannot {doing}: AWS kept throttling the requests after retries ({code})",
            "run the command again in a few minutes; lower the request rate of other tools in this account",
            code="HAC656",
        )
    if code in DENIED_CODES:
        return HacloudError(
            f"cannot {doing}: the AWS credentials in use are not allowed to ({code}: {text})",
            "grant the missing permission to the caller (see `aws sts get-caller-identity`) or use "
            "credentials that have it (AWS_PROFILE)",
            code="HAC657",
        )
    if code in NOT_FOUND_FIELDS:
        return HacloudError(
            f"cannot {doing}: {text}",
            f"correct {NOT_FOUND_FIELDS[code]} in the spec: the id must exist in region of the spec",
            code="HAC658",
        )
    return HacloudError(
        f"cannot {doing}: AWS answered {code or name}: {text}",
        "correct the cause named above and run the command again (a re-run reuses what exists)",
        code="HAC659",
    )


def call(doing: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` with any botocore error wrapped as a hacloud error."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - clients() already said what to install
        return fn(**kwargs)
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, doing) from None


def wait_for(
    doing: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``probe`` until it returns a value (:func:`hacloud.poll.poll_until`, on a clock made
    of ``clock`` and ``sleep``); raise a hacloud error after ``timeout`` s."""
    value = poll_until(probe, timeout=timeout, interval=interval, clock=_Clock(clock, sleep))
    if value is None:
        raise HacloudError(
            f"timed out after {timeout:.0f} s waiting to {doing}",
            "look at the resource in the EC2 console; a re-run continues from what exists",
            code="HAC670",
        )
    return value


@dataclass(frozen=True)
class _Clock:
    """A :class:`hacloud.poll.Clock` from a monotonic function and a sleep function."""

    mono: Callable[[], float]
    nap: Callable[[float], None]

    def monotonic(self) -> float:
        return self.mono()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.nap(seconds)
