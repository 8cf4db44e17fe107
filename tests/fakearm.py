"""A fake Azure Resource Manager over HTTPS on loopback, judged by the official specs.

No Azure emulator exists (testbed.md §4), so this stands in for ARM, and a fake that accepted
anything would prove nothing. Every request is matched to the operation the official specs
(tests/data/azure-rest-specs) document for its method and path (tests/azure_specs.py); a request
no spec documents, or a body with a type error, a wrong enum, an unknown property or a
read-only field, is answered 400 with an ARM error body *and* recorded in ``problems``, which
the tests require to be empty. Every response body the fake returns is checked against the
operation's documented response schema too (``response_problems``).

Behaviour copied from ARM: PUT/DELETE/POST actions are long-running (201/202 with
``Azure-AsyncOperation`` or ``Location``, polled until done), 404 bodies carry
``ResourceNotFound``, a data disk must be in its VM's zone, a subnet must exist for a NIC, and
``throttle`` makes the next N calls of an operation answer 429 with ``Retry-After``.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure_specs import Specs

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
TENANT = "00000000-0000-4000-8000-0000000000aa"
RG = "hacloud-test"
VNET = "vnet"
SUBNET = "subnet"
SUBNET_PREFIX = "192.0.2.0/24"
# ARM asks for a few seconds between polls (Retry-After, whole seconds); the fake asks for 50 ms
# with the retry-after-ms header azure-core also honours, so tests run fast (no header at all
# would make the SDK wait its 30 s default).
LRO_RETRY_AFTER_MS = "50"
SUBNET_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/"
    f"{VNET}/subnets/{SUBNET}"
)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN), as ARM's TLS would be; returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-arm")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "arm.pem", directory / "arm.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _public(res: dict[str, Any]) -> dict[str, Any]:
    """A stored resource as ARM shows it (the fake's own bookkeeping keys start with '_')."""
    return {k: copy.deepcopy(v) for k, v in res.items() if not k.startswith("_")}


def _merge(base: Any, patch: Any) -> Any:
    """JSON merge of a PATCH body into a resource (objects merge, lists and values replace)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v)
        return out
    return copy.deepcopy(patch)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass
class Recorded:
    method: str
    path: str
    api_version: str
    op_id: str
    body: Any
    status: int = 0


@dataclass
class FakeArm:
    directory: Path
    specs: Specs = field(default_factory=Specs)
    store: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    response_problems: list[str] = field(default_factory=list)
    throttle: dict[str, int] = field(default_factory=dict)
    power: dict[str, str] = field(default_factory=dict)
    _ops: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _documented: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cert, key = self_signed(self.directory)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake.handle(self.command, self.path, raw, dict(self.headers))
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-ms-request-id", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.store.clear()
            self.requests.clear()
            self.problems.clear()
            self.response_problems.clear()
            self.throttle.clear()
            self.power.clear()
            self._ops.clear()
            vnet = SUBNET_ID.rsplit("/subnets/", 1)[0]
            self.store[SUBNET_ID.lower()] = {
                "id": SUBNET_ID,
                "name": SUBNET,
                "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {"addressPrefix": SUBNET_PREFIX, "provisioningState": "Succeeded"},
            }
            self.store[vnet.lower()] = {
                "id": vnet,
                "name": VNET,
                "type": "Microsoft.Network/virtualNetworks",
                "location": "westeurope",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
                    "provisioningState": "Succeeded",
                },
            }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ helpers

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.store.values() if r.get("type", "").lower() == rtype.lower()]

    def _lro(self, kind: str, then: Any = None) -> str:
        op = str(uuid.uuid4())
        # one poll answers InProgress, the next the outcome (as ARM does for a slow resource)
        self._ops[op] = [kind, 1, then]
        return f"{self._op_url(op)}?api-version=2025-11-01"

    def _op_url(self, op: str) -> str:
        where = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/westeurope"
        return f"{self.url}{where}/operations/{op}"

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, raw_path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            return self._handle(method, raw_path, raw, headers)

    def _handle(
        self, method: str, raw_path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not headers.get("Authorization", headers.get("authorization", "")).startswith("Bearer "):
            return (
                401,
                {},
                _error(
                    "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
                ),
            )
        if "/operations/" in path:
            return self._poll(path.rsplit("/", 1)[-1])
        body = json.loads(raw) if raw else None
        op = self.specs.match(method, path)
        rec = Recorded(method, path, query.get("api-version", ""), op.op_id if op else "", body)
        self.requests.append(rec)
        if op is None:
            self.problems.append(f"{method} {path}: no operation in the specs")
            rec.status = 400
            return 400, {}, _error("InvalidResourceType", f"no operation documented for {method} {path}")
        if not query.get("api-version"):
            self.problems.append(f"{op.op_id}: no api-version")
        key = f"{op.op_id}"
        if self.throttle.get(key, 0) > 0:
            self.throttle[key] -= 1
            rec.status = 429
            return 429, {"Retry-After": "1"}, _error("TooManyRequests", "The request is being throttled.")
        if method in ("PUT", "PATCH", "POST") and body is not None:
            problems = self.specs.request_problems(op, body)
            if problems:
                self.problems += [f"{op.op_id}: {p}" for p in problems]
                rec.status = 400
                return 400, {}, _error("InvalidRequestContent", "; ".join(problems))
        self._documented = set(op.spec.get("responses", {}))
        status, hdrs, out = self._route(method, path, op.op_id, body, query)
        rec.status = status
        if out is not None and status in (200, 201):
            self.response_problems += [
                f"{op.op_id}: {p}" for p in self.specs.response_problems(op, status, out)
            ]
        return status, hdrs, out

    def _poll(self, op: str) -> tuple[int, dict[str, str], Any]:
        state = self._ops.get(op)
        if state is None:
            return 404, {}, _error("NotFound", "no such operation")
        location = state[0] != "put"  # Location polling: 202 while running, then 200
        if state[1] > 0:
            state[1] -= 1
            if location:
                return (
                    202,
                    {
                        "Location": self._op_url(op),
                        "retry-after-ms": LRO_RETRY_AFTER_MS,
                    },
                    None,
                )
            return 200, {"retry-after-ms": LRO_RETRY_AFTER_MS}, {"status": "InProgress", "name": op}
        if callable(state[2]):
            state[2]()
            state[2] = None
        if location:
            return 200, {}, None
        return 200, {}, {"status": "Succeeded", "name": op}

    def _route(
        self, method: str, path: str, op_id: str, body: Any, query: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if op_id in (
            "RoleAssignments_ListForScope",
            "RoleAssignments_ListForResourceGroup",
            "RoleAssignments_ListForResource",
        ):
            return 200, {}, {"value": self._assignments_for(path.rsplit("/providers/", 1)[0], query)}
        if op_id.endswith("_List") or op_id.endswith("_ListForScope"):
            rtype = path.rsplit("/providers/", 1)[-1].lower()
            items = [
                r
                for k, r in self.store.items()
                if r.get("type", "").lower() == rtype
                and k.startswith(path.rsplit("/providers/", 1)[0].lower())
            ]
            return 200, {}, {"value": [_public(r) for r in items]}
        if method == "GET":
            if key.endswith("/instanceview"):
                vm = self.store.get(key.rsplit("/", 1)[0])
                if vm is None:
                    return 404, {}, _error("ResourceNotFound", f"The Resource '{path}' was not found.")
                code = self.power.get(vm["id"].lower(), "running")
                return (
                    200,
                    {},
                    {
                        "statuses": [
                            {
                                "code": "ProvisioningState/succeeded",
                                "level": "Info",
                                "displayStatus": "Provisioning succeeded",
                            },
                            {"code": f"PowerState/{code}", "level": "Info", "displayStatus": f"VM {code}"},
                        ]
                    },
                )
            found = self.store.get(key)
            if found is None:
                name = path.rsplit("/", 1)[-1]
                return (
                    404,
                    {},
                    _error(
                        "ResourceNotFound",
                        f"The Resource '{name}' under resource group '{RG}' was not found.",
                    ),
                )
            return 200, {}, _public(found)
        if method == "PUT":
            return self._put(path, op_id, body)
        if method == "PATCH":
            if key not in self.store:
                return 404, {}, _error("ResourceNotFound", f"The Resource '{path}' was not found.")
            merged = _merge(_public(self.store[key]), body)
            for k in ("id", "name", "type"):
                merged.pop(k, None)
            merged["properties"].pop("provisioningState", None)
            return self._put(path, op_id.replace("_Update", "_CreateOrUpdate"), merged, patch=True)
        if method == "DELETE":
            if key not in self.store:
                return 204, {}, None
            res = self.store[key]
            problem = self._delete_blocked(res)
            if problem:
                return 400, {}, _error("OperationNotAllowed", problem)

            def gone() -> None:
                self._deleted(res)
                self.store.pop(key, None)

            if "202" not in self._documented:  # a synchronous delete (role, availability set)
                gone()
                return 200, {}, _public(res) if op_id.startswith("Role") else None
            return 202, {"Location": self._lro("delete", gone), "retry-after-ms": LRO_RETRY_AFTER_MS}, None
        if method == "POST":
            vm_key = key.rsplit("/", 1)[0]
            if vm_key not in self.store:
                return 404, {}, _error("ResourceNotFound", "The Resource was not found.")
            action = key.rsplit("/", 1)[-1]
            target = {
                "poweroff": "stopped",
                "start": "running",
                "deallocate": "deallocated",
                "restart": "running",
            }.get(action)
            if target is None:
                return 400, {}, _error("InvalidOperation", action)
            vm_id = self.store[vm_key]["id"].lower()
            return (
                202,
                {
                    "Location": self._lro(action, lambda: self.power.__setitem__(vm_id, target)),
                    "retry-after-ms": LRO_RETRY_AFTER_MS,
                },
                None,
            )
        return 405, {}, _error("MethodNotAllowed", method)

    def _assignments_for(self, scope: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """RoleAssignments_ListForScope (ListForResourceGroup/ListForResource: the same URL on a
        group or a resource) as the spec documents it: "all role assignments that apply to a
        scope" (at or above it); ``$filter=atScope()`` the same; ``$filter=principalId eq {id}``
        those at, above or below the scope for that principal."""
        scope = scope.lower().rstrip("/")
        flt = query.get("$filter", "")
        principal = re.fullmatch(r"principalId eq '([^']+)'", flt.strip())
        if flt and principal is None and flt.strip() != "atScope()":
            raise ValueError(f"the fake does not know the filter {flt!r}")
        out = []
        for res in self.store.values():
            if res.get("type", "").lower() != "microsoft.authorization/roleassignments":
                continue
            at = res["properties"]["scope"].lower().rstrip("/")
            above = scope == at or scope.startswith(at + "/")
            below = at.startswith(scope + "/")
            if principal is not None:
                if res["properties"].get("principalId") == principal.group(1) and (above or below):
                    out.append(_public(res))
            elif above:
                out.append(_public(res))
        return out

    # ------------------------------------------------------------------ PUT per resource type

    def _put(
        self, path: str, op_id: str, body: dict[str, Any], patch: bool = False
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        existed = key in self.store
        res = copy.deepcopy(body)
        name = path.rsplit("/", 1)[-1]
        rtype = "/".join(path.rsplit("/providers/", maxsplit=1)[-1].split("/")[0:2])
        res.update(id=path, name=name, type=rtype)
        props = res.setdefault("properties", {})
        if op_id.startswith("RoleAssignments"):
            props["scope"] = path.split("/providers/Microsoft.Authorization/", maxsplit=1)[0]
            props.setdefault("principalType", "ServicePrincipal")
            self.store[key] = res
            return 201, {}, copy.deepcopy(res)
        if op_id.startswith("RoleDefinitions"):
            props.setdefault("type", "CustomRole")
            self.store[key] = res
            return 201, {}, copy.deepcopy(res)
        problem = self._check_put(op_id, res)
        if problem:
            return 400, {}, _error("InvalidParameter", problem)
        props["provisioningState"] = "Succeeded"
        self._decorate(op_id, res)
        self.store[key] = res
        out = _public(res)
        out["properties"]["provisioningState"] = "Updating" if existed else "Creating"
        # the status the spec documents for this operation: 201 Created, else 202 Accepted, else 200
        if existed or not {"201", "202"} & self._documented:
            status = 200
        else:
            status = 201 if "201" in self._documented else 202
        # Retry-After: the SDK polls after it (without it, every 30 s)
        return status, {"Azure-AsyncOperation": self._lro("put"), "retry-after-ms": LRO_RETRY_AFTER_MS}, out

    def _check_put(self, op_id: str, res: dict[str, Any]) -> str:
        props = res["properties"]
        if op_id == "NetworkInterfaces_CreateOrUpdate":
            for ipc in props.get("ipConfigurations", []):
                sid = ipc.get("properties", {}).get("subnet", {}).get("id", "")
                if sid.lower() not in self.store:
                    return f"Subnet {sid} referenced by the network interface does not exist."
        if op_id == "VirtualMachines_CreateOrUpdate":
            zones = res.get("zones") or []
            for dd in props.get("storageProfile", {}).get("dataDisks", []):
                did = dd.get("managedDisk", {}).get("id", "").lower()
                disk = self.store.get(did)
                if disk is None:
                    return f"Disk {did} was not found."
                if zones and disk.get("zones") and disk["zones"] != zones:
                    return (
                        f"Disk {disk['name']} is in zone {disk['zones'][0]} and cannot be attached to a VM "
                        f"in zone {zones[0]}."
                    )
                managed_by = disk.get("managedBy")
                if managed_by and managed_by.lower() != res["id"].lower():
                    return f"Disk {disk['name']} is already attached to {managed_by}."
            for nic in props.get("networkProfile", {}).get("networkInterfaces", []):
                if nic["id"].lower() not in self.store:
                    return f"Network interface {nic['id']} was not found."
        return ""

    def _decorate(self, op_id: str, res: dict[str, Any]) -> None:
        """The read-only fields ARM adds, shaped as in the specs' example responses."""
        props = res["properties"]
        if op_id == "VirtualMachines_CreateOrUpdate":
            old = self.store.get(res["id"].lower())
            props["vmId"] = old["properties"]["vmId"] if old else str(uuid.uuid4())
            ident = res.get("identity")
            if ident and "SystemAssigned" in ident.get("type", ""):
                kept = (old or {}).get("identity", {})
                ident["principalId"] = kept.get("principalId") or str(uuid.uuid4())
                ident["tenantId"] = TENANT
            os_disk = props.get("storageProfile", {}).get("osDisk", {})
            if os_disk and not (
                old and old["properties"]["storageProfile"]["osDisk"].get("managedDisk", {}).get("id")
            ):
                disk_name = os_disk.get("name") or f"{res['name']}_OsDisk_1_{uuid.uuid4().hex}"
                disk_id = (
                    res["id"].split("/providers/")[0] + f"/providers/Microsoft.Compute/disks/{disk_name}"
                )
                os_disk["name"] = disk_name
                os_disk.setdefault("managedDisk", {})["id"] = disk_id
                self.store[disk_id.lower()] = {
                    "id": disk_id,
                    "name": disk_name,
                    "type": "Microsoft.Compute/disks",
                    "location": res.get("location"),
                    "zones": res.get("zones"),
                    "managedBy": res["id"],
                    "properties": {
                        "creationData": {"createOption": "FromImage"},
                        "diskState": "Attached",
                        "provisioningState": "Succeeded",
                    },
                    "tags": {},
                    "_os_of": res["id"],
                    "_delete_with_vm": os_disk.get("deleteOption") == "Delete",
                }
            elif old:
                os_disk.setdefault("managedDisk", {})["id"] = old["properties"]["storageProfile"]["osDisk"][
                    "managedDisk"
                ]["id"]
                os_disk["name"] = old["properties"]["storageProfile"]["osDisk"]["name"]
            attached = {
                dd.get("managedDisk", {}).get("id", "").lower()
                for dd in props.get("storageProfile", {}).get("dataDisks", [])
            }
            for disk in self.of_type("Microsoft.Compute/disks"):
                if disk["id"].lower() in attached:
                    disk["managedBy"] = res["id"]
                    disk["properties"]["diskState"] = "Attached"
                elif (disk.get("managedBy") or "").lower() == res["id"].lower() and "_os_of" not in disk:
                    disk.pop("managedBy", None)
                    disk["properties"]["diskState"] = "Unattached"
            self.power.setdefault(res["id"].lower(), "running")
        elif op_id == "Disks_CreateOrUpdate":
            old = self.store.get(res["id"].lower())
            props["diskState"] = old["properties"]["diskState"] if old else "Unattached"
            props["uniqueId"] = old["properties"]["uniqueId"] if old else str(uuid.uuid4())
            props["timeCreated"] = (
                old["properties"]["timeCreated"] if old else datetime.datetime.now(datetime.UTC).isoformat()
            )
            if old and old.get("managedBy"):
                res["managedBy"] = old["managedBy"]
        elif op_id == "NetworkInterfaces_CreateOrUpdate":
            old = self.store.get(res["id"].lower())
            props.setdefault(
                "macAddress",
                (old or {}).get("properties", {}).get("macAddress")
                or "00-0D-3A-" + "-".join(f"{b:02X}" for b in uuid.uuid4().bytes[:3]),
            )
            used = {
                ipc["properties"].get("privateIPAddress")
                for nic in self.of_type("Microsoft.Network/networkInterfaces")
                if nic["id"].lower() != res["id"].lower()
                for ipc in nic["properties"].get("ipConfigurations", [])
            } | {
                f["properties"].get("privateIPAddress")
                for lb in self.of_type("Microsoft.Network/loadBalancers")
                for f in lb["properties"].get("frontendIPConfigurations", [])
            }
            hosts = list(ipaddress.IPv4Network(SUBNET_PREFIX).hosts())[3:]  # Azure keeps .1-.3
            # and within one NIC every ip configuration gets its own address
            used |= {
                ipc.get("properties", {}).get("privateIPAddress") for ipc in props.get("ipConfigurations", [])
            }
            for ipc in props.get("ipConfigurations", []):
                ipc["id"] = f"{res['id']}/ipConfigurations/{ipc['name']}"
                p = ipc.setdefault("properties", {})
                p["provisioningState"] = "Succeeded"
                if not p.get("privateIPAddress"):
                    old_ip = next(
                        (
                            o["properties"].get("privateIPAddress")
                            for o in (old or {}).get("properties", {}).get("ipConfigurations", [])
                            if o["name"] == ipc["name"]
                        ),
                        None,
                    )
                    p["privateIPAddress"] = old_ip or str(next(h for h in hosts if str(h) not in used))
                    used.add(p["privateIPAddress"])
                p.setdefault("privateIPAllocationMethod", "Dynamic")
        elif op_id in ("NetworkSecurityGroups_CreateOrUpdate", "LoadBalancers_CreateOrUpdate"):
            for child in (
                "securityRules",
                "frontendIPConfigurations",
                "backendAddressPools",
                "probes",
                "loadBalancingRules",
            ):
                for item in props.get(child, []):
                    item["id"] = f"{res['id']}/{child}/{item['name']}"
                    item.setdefault("properties", {})["provisioningState"] = "Succeeded"
        res.setdefault("tags", res.get("tags", {}))

    def _delete_blocked(self, res: dict[str, Any]) -> str:
        if res.get("type") == "Microsoft.Compute/disks" and res.get("managedBy"):
            return f"Disk {res['name']} is attached to VM {res['managedBy']}."
        if res.get("type") == "Microsoft.Network/networkInterfaces":
            for vm in self.of_type("Microsoft.Compute/virtualMachines"):
                if any(
                    n["id"].lower() == res["id"].lower()
                    for n in vm["properties"].get("networkProfile", {}).get("networkInterfaces", [])
                ):
                    return f"Network interface {res['name']} is used by VM {vm['name']}."
        if res.get("type") == "Microsoft.Network/networkSecurityGroups":
            for nic in self.of_type("Microsoft.Network/networkInterfaces"):
                if (
                    nic["properties"].get("networkSecurityGroup", {}).get("id", "").lower()
                    == res["id"].lower()
                ):
                    return f"Network security group {res['name']} is in use by {nic['name']}."
        return ""

    def _deleted(self, res: dict[str, Any]) -> None:
        if res.get("type") == "Microsoft.Compute/virtualMachines":
            for disk in list(self.of_type("Microsoft.Compute/disks")):
                if (disk.get("managedBy") or "").lower() == res["id"].lower():
                    if disk.get("_delete_with_vm"):
                        self.store.pop(disk["id"].lower(), None)
                    else:
                        disk.pop("managedBy", None)
                        disk["properties"]["diskState"] = "Unattached"
            self.power.pop(res["id"].lower(), None)
