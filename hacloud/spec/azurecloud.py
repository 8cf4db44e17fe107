"""Which Azure cloud an ARM endpoint belongs to, as ``fence_azure_arm cloud=`` names it.

Contract: :func:`cloud_of` maps ``provider.options.arm_endpoint`` to the agent's ``cloud``
value (``public`` renders no parameter), None for an endpoint of no known cloud;
:func:`refused` says why an endpoint can never work with the agent. The agent accepts china,
usgov (and germany, stack): fence-agents ``lib/azure_fence.py.py``,
``get_azure_cloud_environment``; the endpoints are the Azure SDK's
(``azure.mgmt.core.tools.get_arm_endpoints``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

CLOUDS = ("public", "china", "usgov")
ENDPOINTS = {
    "management.azure.com": "public",
    "management.chinacloudapi.cn": "china",
    "management.usgovcloudapi.net": "usgov",
}
PUBLIC_ENDPOINT = "https://management.azure.com"
# Why the agent's other clouds are refused rather than rendered:
REFUSED = {
    "management.microsoftazure.de": "Microsoft Cloud Deutschland closed in October 2021, and "
    "fence-agents >= 4.13 (azure-identity) ignore cloud=germany and talk to public Azure",
}


def _host(endpoint: str) -> str:
    """``host`` or ``host:port`` (443 left out) of an endpoint; "" for text that is no URL
    with a valid port (the grammar refuses it, but nothing here may raise: the spec loader's
    cross-field rules and the renderer call this on any text, e.g. ``https://h:99999``)."""
    try:
        parts = urlsplit(endpoint.rstrip("/"))
        port = parts.port  # raises ValueError for a port that is no number or out of range
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    return host if port in (None, 443) else f"{host}:{port}"


def cloud_of(endpoint: str) -> str | None:
    """The agent's cloud for an ARM endpoint; None for an endpoint of no known cloud."""
    return ENDPOINTS.get(_host(endpoint))


def refused(endpoint: str) -> str:
    """Why no ``cloud`` choice can make fence_azure_arm work with this endpoint ("" if one can)."""
    return REFUSED.get(_host(endpoint), "")


def unknown(endpoint: str) -> str:
    """What is wrong with an endpoint of no known cloud."""
    return (
        f"fence_azure_arm can only be pointed at a known Azure cloud; {endpoint} is none of "
        f"{', '.join('https://' + h for h in ENDPOINTS)} (Azure Stack Hub is not supported)"
    )
