"""Azure SDK clients and Azure errors turned into hacloud errors that say what to do.

Contract: :func:`clients` is the only place SDK clients are made: credentials through
``DefaultAzureCredential`` (CLI login, environment, managed identity) unless
:data:`CREDENTIAL_FACTORY` is set (tests, or an embedding program with its own credential);
requests go to ``provider.options.arm_endpoint``; azure-core's retry policy retries 429 and
5xx answers honouring ``Retry-After``. :func:`wait` polls a long-running operation to the
end or raises after the spec's ``operation_timeout``. :func:`azure_error` wraps every SDK
error in a :class:`~hacloud.errors.HacloudError` whose remedy says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hacloud.errors import HacloudError
from hacloud.spec.model import AzureOptions

T = TypeVar("T")

#: () -> an azure-core TokenCredential; None: DefaultAzureCredential
CREDENTIAL_FACTORY: Callable[[], Any] | None = None

CAPACITY_CODES = {
    "SkuNotAvailable",
    "ZonalAllocationFailed",
    "AllocationFailed",
    "OverconstrainedAllocationRequest",
}
QUOTA_CODES = {"QuotaExceeded", "OperationNotAllowed"}
DENIED_CODES = {"AuthorizationFailed", "LinkedAuthorizationFailed", "RoleAssignmentUpdateNotPermitted"}


@dataclass(frozen=True)
class Clients:
    compute: Any
    network: Any
    authorization: Any
    subscription: str
    timeout: float

    def wait(self, doing: str, start: Callable[..., Any], /, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """:func:`wait` with the spec's ``operation_timeout``; the result as wire JSON ({} for none)."""
        return wire(wait(doing, self.timeout, start, *args, **kwargs))


def require_sdk() -> None:
    try:
        import azure.mgmt.authorization
        import azure.mgmt.compute
        import azure.mgmt.network  # noqa: F401
    except ImportError:
        raise HacloudError(
            "the Azure provider needs the Azure SDK, which is not installed",
            "install hacloud with its Azure extra: pip install 'hacloud[azure]'",
            code="HAC680",
        ) from None


#: Per request: seconds to connect and to wait for a response (azure-core's default is 300 s
#: each); the same connect bound as the AWS clients, and a read bound above what ARM's
#: synchronous calls take (long-running operations are polled, each poll a short request).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: azure-core's retry policy: 429/5xx and timeouts, honouring Retry-After
RETRY_TOTAL = 8


def clients(opts: AzureOptions) -> Clients:
    require_sdk()
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient

    if CREDENTIAL_FACTORY is not None:
        credential = CREDENTIAL_FACTORY()
    else:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise HacloudError(
                "the Azure provider needs azure-identity, which is not installed",
                "install hacloud with its Azure extra: pip install 'hacloud[azure]'",
                code="HAC681",
            ) from None
        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    endpoint = opts.arm_endpoint.rstrip("/")
    common: dict[str, Any] = {
        "base_url": endpoint,
        "credential_scopes": [f"{endpoint}/.default"],
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": 1.0,
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    return Clients(
        compute=ComputeManagementClient(credential, opts.subscription_id, **common),
        network=NetworkManagementClient(credential, opts.subscription_id, **common),
        authorization=AuthorizationManagementClient(credential, opts.subscription_id, **common),
        subscription=opts.subscription_id,
        timeout=float(opts.operation_timeout),
    )


def error_code(exc: BaseException) -> str:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None)
    if code:
        return str(code)
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else type(exc).__name__


def _message(exc: BaseException) -> str:
    err = getattr(exc, "error", None)
    return str(getattr(err, "message", None) or getattr(exc, "message", None) or exc).splitlines()[0]


def azure_error(exc: BaseException, doing: str) -> HacloudError:
    code = error_code(exc)
    text = _message(exc)
    name = type(exc).__name__
    if name in ("ClientAuthenticationError", "CredentialUnavailableError"):
        return HacloudError(
            f"cannot {doing}: no usable Azure credentials ({text})",
            "run `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or run on a VM "
            "with a managed identity), then retry",
            code="HAC682",
        )
    if name in ("ServiceRequestError", "ServiceResponseError"):
        return HacloudError(
            f"cannot {doing}: Azure Resource Manager is unreachable ({text})",
            "check this machine's path to provider.options.arm_endpoint (proxy, firewall) and retry",
            code="HAC683",
        )
    status = getattr(exc, "status_code", None)
    if status == 429 or code == "TooManyRequests":
        return HacloudError(
            f"cannot {doing}: Azure kept throttling the requests after retries",
            "run the command again in a few minutes",
            code="HAC684",
        )
    if code in CAPACITY_CODES:
        return HacloudError(
            f"cannot {doing}: Azure has no capacity for it ({code}: {text})",
            "choose another VM size (provider.options.vm_size) or other zones (provider.options.zones), "
            "or retry later; what exists is reused by a re-run",
            code="HAC685",
        )
    if code in QUOTA_CODES and "quota" in text.lower():
        return HacloudError(
            f"cannot {doing}: a subscription quota is reached ({text})",
            "ask for a higher quota (Azure portal: Quotas) or use a smaller VM size",
            code="HAC686",
        )
    if code in DENIED_CODES:
        return HacloudError(
            f"cannot {doing}: the Azure identity in use may not ({code}: {text})",
            "give it Contributor and User Access Administrator (or Role Based Access Control "
            "Administrator) on the resource group, or use another login",
            code="HAC687",
        )
    return HacloudError(
        f"cannot {doing}: Azure answered {code}: {text}",
        "correct the cause named above and run the command again (a re-run reuses what exists)",
        code="HAC688",
    )


def call(doing: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    from azure.core.exceptions import AzureError

    try:
        return fn(*args, **kwargs)
    except AzureError as exc:
        raise azure_error(exc, doing) from None


def wait(doing: str, timeout: float, start: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Start a long-running operation and poll it to the end, at most ``timeout`` seconds."""
    from azure.core.exceptions import AzureError

    try:
        poller = start(*args, **kwargs)
        result = poller.result(timeout=timeout)
        if not poller.done():
            raise HacloudError(
                f"timed out after {timeout:.0f} s waiting to {doing} (Azure is still working on it)",
                "look at the resource's activity log in the portal; a re-run continues from what exists "
                "(provider.options.operation_timeout sets the wait)",
                code="HAC689",
            )
        return result
    except AzureError as exc:
        raise azure_error(exc, doing) from None


def wire(model: Any) -> dict[str, Any]:
    """An SDK model as the JSON ARM sent (wire names), for comparisons and reads."""
    if model is None:
        return {}
    if hasattr(model, "as_dict"):
        out = model.as_dict()
        return dict(out)
    return dict(model)
