"""Value grammars shared by the spec, the inventory and the Terraform import.

Contract: every type here is an ``Annotated[str, ...]`` that pydantic checks at load time; a
value that passes cannot start a new line, a new configuration directive, an XML element or a
shell command in any file hacloud renders (the renderers escape or quote as well: two
independent defences). Each error message says what the value must look like.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

# ---------------------------------------------------------------- patterns (also in the JSON Schema)

IPV4 = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
# Pacemaker node names are the nodes' short host names: DNS labels.
HOSTNAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# A host to reach over SSH or a BMC: an address or a DNS name, nothing a shell or file reads twice.
HOST = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$"
# Absolute paths on a node: components of a safe charset (shlex.quote leaves them as they are),
# no empty component; `.`/`..` components are refused by _path below.
SAFE_PATH = r"^(/[A-Za-z0-9._@+:,-]+)+/?$"
# Provider ids in the inventory: EC2 ids, Azure VM names, lab guests, PLACEHOLDER-<node>.
PROVIDER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
AWS_INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
# Azure Linux VM names: 1-64 letters, digits, '_', '.', '-'; not starting with '_', not
# ending with '.' or '-' (Azure naming rules, Microsoft.Compute/virtualMachines).
AZURE_VM_NAME = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$"
# AWS regions (eu-central-1, us-gov-west-1, us-iso-east-1, cn-north-1).
AWS_REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"
# Azure locations are lower-case names without separators (westeurope, eastus2).
AZURE_LOCATION = r"^[a-z][a-z0-9]{1,39}$"
# Azure resource groups: 1-90 letters, digits, '_', '-', '.', '(', ')'; not ending with '.'.
AZURE_RESOURCE_GROUP = r"^[-\w.()]{0,89}[-\w()]$"
GUID = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
# An availability zone: AWS eu-central-1a, Azure "1".
ZONE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NIC = r"^[A-Za-z0-9_.:-]{1,15}$"
ROUTE_TABLE = r"^rtb-[0-9a-f]{8,17}$"
# BMC user names: printable ASCII, no leading/trailing blank (fence agents read their options
# one per line, so a newline would add an option).
BMC_USER = r"^[!-~]([ -~]{0,62}[!-~])?$"
# OCF parameter names become OCF_RESKEY_<name> environment variables: shell identifiers.
OCF_PARAM = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# Free text that reaches a file or an agent: any printable character, no control character.
LINE_TEXT = r"^[^\x00-\x1f\x7f]{0,1024}$"
# Provider-specific extra facts (resource ids, addresses, lists of them).
EXTRA_TEXT = r"^[^\x00-\x1f\x7f]{0,2048}$"
# An HTTPS endpoint (Azure Resource Manager): https://, a DNS name or address, an optional port
# 1-65535, nothing else (no user, path or query); it is curl's argument on the nodes and the
# SDK's base URL here, and azurecloud reads its host and port back.
HTTPS_ENDPOINT = r"^https://[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$"
VOLUME_NAME = r"^[a-z][a-z0-9_]{0,15}$"
CLUSTER_NAME = r"^[a-z][a-z0-9-]{0,31}$"


def _path(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{value!r} has a '.' or '..' component: write the path without it")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 CIDR: write e.g. 10.0.0.0/16") from None
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length: write e.g. {net.network_address}/16")
    return value


def _port(value: str) -> str:
    """An endpoint's port, when it has one, is a TCP port (the pattern allows up to 99999)."""
    if not is_https_endpoint(value):
        raise ValueError(f"{value!r} has a port outside 1-65535: write e.g. https://management.azure.com:443")
    return value


def _check(pattern: str, what: str, example: str) -> AfterValidator:
    """A validator for ``pattern`` whose error says what the value must be, with an example
    (a bare pattern mismatch would show the regular expression)."""
    compiled = re.compile(pattern.removeprefix("^").removesuffix("$"))

    def check(value: str) -> str:
        # fullmatch: Python's `$` would also match before a trailing newline
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}: write e.g. {example}")
        return value

    return AfterValidator(check)


def _doc(pattern: str, what: str, example: str) -> Any:
    """The JSON Schema side of :func:`_check`: the same pattern, and a description."""
    return Field(description=f"{what}, e.g. {example}", json_schema_extra={"pattern": pattern})


_IP = (IPV4, "an IPv4 address", "192.0.2.10")
_HOST = (HOST, "an address or DNS name", "192.0.2.10")
_NODE = (HOSTNAME, "a host name (a lower-case DNS label)", "node1")
_ID = (PROVIDER_ID, "a provider id (letters, digits, '_', '.', '-')", "i-0123456789abcdef0")
_ZONE = (ZONE, "an availability zone", "eu-central-1a")
_VOL = (VOLUME_NAME, "a DRBD resource name", "r0")
_RTB = (ROUTE_TABLE, "a route table id", "rtb-0123456789abcdef0")
_EXTRA = (EXTRA_TEXT, "one line of text", "subnet-0123456789abcdef0")
_HTTPS = (
    HTTPS_ENDPOINT,
    "an https:// URL of a host and an optional port, nothing else",
    "https://management.azure.com",
)
_PATH = (
    SAFE_PATH,
    "an absolute path of letters, digits and ._@+:,- (no blank, quote, $ or empty component)",
    "/srv/data or /dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
)

Ipv4Text = Annotated[str, _check(*_IP), _doc(*_IP)]
HostText = Annotated[str, _check(*_HOST), _doc(*_HOST)]
NodeName = Annotated[str, _check(*_NODE), _doc(*_NODE)]
ProviderId = Annotated[str, _check(*_ID), _doc(*_ID)]
ZoneName = Annotated[str, _check(*_ZONE), _doc(*_ZONE)]
VolumeName = Annotated[str, _check(*_VOL), _doc(*_VOL)]
RouteTableId = Annotated[str, _check(*_RTB), _doc(*_RTB)]
ExtraText = Annotated[str, _check(*_EXTRA), _doc(*_EXTRA)]
HttpsEndpoint = Annotated[str, _check(*_HTTPS), AfterValidator(_port), _doc(*_HTTPS)]
SafePath = Annotated[str, _check(*_PATH), AfterValidator(_path), _doc(*_PATH)]
_NIC = (NIC, "a network interface name (at most 15 of letters, digits and _.:-)", "ens5")
InterfaceName = Annotated[str, _check(*_NIC), _doc(*_NIC)]
_UNIT = (
    r"^[A-Za-z0-9:_.@-]{1,255}$",
    "a service as class:provider:type or class:unit (letters, digits and :_.@-)",
    "systemd:postgresql@15-main.service",
)
ServiceRef = Annotated[str, _check(*_UNIT), _doc(*_UNIT)]
CidrText = Annotated[str, AfterValidator(_cidr), Field(description="an IPv4 CIDR, e.g. 10.0.0.0/16")]


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` is in the grammar ``pattern`` (one of the patterns above)."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None


def is_https_endpoint(value: str) -> bool:
    """Whether ``value`` is in the :data:`HTTPS_ENDPOINT` grammar with a port in 1-65535."""
    if not matches(HTTPS_ENDPOINT, value):
        return False
    _, colon, port = value.removeprefix("https://").partition(":")
    return not colon or 1 <= int(port) <= 65535
