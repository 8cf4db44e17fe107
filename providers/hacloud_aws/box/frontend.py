"""The WSGI front every API listener puts before moto: path filter, scripted throttling and the
action log.

Contract (``Frontend(app, listener, log, throttles, caller)`` is a WSGI application):

- ``/moto-api/*`` (moto's unauthenticated reset/seed/state API) and ``/latest/*`` (moto's own
  static, shared fake metadata service) are refused with 403 on *every* TCP listener: any local
  user can reach 127.0.0.1, and a guest must never reset the cloud or get moto's fixed
  credentials. The box is controlled only through its 0600 unix socket (``control.py``).
- The request body is read once and handed to moto byte for byte, ``Host`` untouched: moto
  recomputes SigV4 over both.
- A request without a SigV4 signature (header or presigned query) is answered 401
  ``MissingAuthenticationToken``, as EC2 does; moto would fail on it with a 500.
- A throttled action is answered as the service does: EC2 ``503`` with its
  ``<Response><Errors><Error><Code>RequestLimitExceeded`` body, IAM/STS ``400``
  ``<ErrorResponse>`` with ``Throttling``. moto never sees it (nothing changes).
- Every request becomes one JSON line: time, listener, source address, service, action, access
  key id and caller ARN, selected parameters (``LOGGED_PARAMS``: ids and flags only), HTTP
  status, milliseconds, and whether it was throttled. Never the ``Authorization`` header, a
  signature, a secret key, a session token or any other parameter.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

REFUSED_PREFIXES = ("/moto-api", "/latest/")
#: request parameters worth keeping (resource ids and flags); everything else may be secret
#: (IAM CreateLoginProfile's Password, STS tokens...) and is never written
LOGGED_PARAMS = re.compile(
    r"^(InstanceId(\.\d+)?|Force|SkipOsShutdown|DryRun|RouteTableId|DestinationCidrBlock|"
    r"NetworkInterfaceId|AllocationId|AssociationId|PublicIp|VolumeId|Device|RoleName|"
    r"InstanceProfileName|RoleSessionName)$"
)
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]{16,128})/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


def _ec2_throttle_body() -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
        f"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID>"
        "</Response>"
    ).encode()


def _unsigned_body() -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>MissingAuthenticationToken'
        "</Code><Message>The request must contain either a valid (registered) AWS access key ID or X.509 "
        f"certificate.</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


def _query_throttle_body() -> bytes:
    return (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
        f"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>{uuid.uuid4()}"
        "</RequestId></ErrorResponse>"
    ).encode()


@dataclass
class _Rule:
    count: int | None = None  # the next N calls
    until: float | None = None  # every call until this monotonic time
    size: float = 0.0  # token bucket: capacity...
    refill: float = 0.0  # ...and tokens per second (a bucket when size > 0)
    tokens: float = 0.0
    stamp: float = 0.0
    acting_only: bool = False  # dry runs (DryRun=true) pass untouched and do not count


@dataclass
class Throttles:
    """Scripted throttling per API action. ``clock`` is injectable so tests need no sleeps.

    ``set(action, count=N)`` throttles the next N calls; ``seconds=T`` every call for T s;
    ``bucket=(size, refill)`` a token bucket as EC2 documents its limits (one bucket per account
    and action, full at start, one token per call, ``refill`` tokens per second, a call finding
    no token is throttled). ``acting_only``: the rule ignores dry runs, so a script can throttle
    the call that acts (a fence's StopInstances) and not the permission checks before it.
    One rule per action; setting replaces it, ``clear`` drops it."""

    clock: Callable[[], float] = time.monotonic
    rules: dict[str, _Rule] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(
        self,
        action: str,
        *,
        count: int | None = None,
        seconds: float | None = None,
        bucket: tuple[float, float] | None = None,
        acting_only: bool = False,
    ) -> None:
        now = self.clock()
        rule = _Rule(count=count, until=None if seconds is None else now + seconds, acting_only=acting_only)
        if bucket is not None:
            rule.size, rule.refill = bucket
            rule.tokens, rule.stamp = bucket[0], now
        with self.lock:
            self.rules[action] = rule

    def clear(self, action: str | None = None) -> None:
        with self.lock:
            if action is None:
                self.rules.clear()
            else:
                self.rules.pop(action, None)

    def take(self, action: str, dry_run: bool = False) -> bool:
        """True when this call of ``action`` is to be throttled (and counts it)."""
        now = self.clock()
        with self.lock:
            rule = self.rules.get(action)
            if rule is None or (dry_run and rule.acting_only):
                return False
            if rule.count is not None:
                if rule.count <= 0:
                    del self.rules[action]
                    return False
                rule.count -= 1
                return True
            if rule.until is not None:
                return now < rule.until
            rule.tokens = min(rule.size, rule.tokens + (now - rule.stamp) * rule.refill)
            rule.stamp = now
            if rule.tokens >= 1.0:
                rule.tokens -= 1.0
                return False
            return True

    def describe(self) -> dict[str, dict[str, float | int | None]]:
        with self.lock:
            return {
                a: {"count": r.count, "until": r.until, "size": r.size, "refill": r.refill}
                for a, r in self.rules.items()
            }


class ActionLog:
    """Append-only JSON lines (``api.jsonl``, 0600) plus an in-memory copy for the control
    socket's ``actions`` query; entries are numbered from 0 in the order they finished."""

    def __init__(self, path: Path) -> None:
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._out = os.fdopen(fd, "a", encoding="utf-8")
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry = {"seq": len(self._entries), **entry}
            self._entries.append(entry)
            self._out.write(json.dumps(entry, sort_keys=True) + "\n")
            self._out.flush()

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries[max(seq, 0) :])

    def close(self) -> None:
        with self._lock:
            self._out.close()


def _params(environ: dict[str, Any], body: bytes) -> dict[str, str]:
    form = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form.update(parse_qs(body.decode("utf-8", "replace")))
    return {k: v[0] for k, v in form.items() if v}


def _respond(start_response: StartResponse, status: str, body: bytes, ctype: str) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


class Frontend:
    """One listener's WSGI application in front of the shared moto app (see module contract)."""

    def __init__(
        self,
        app: WsgiApp,
        listener: str,
        log: ActionLog,
        throttles: Throttles,
        caller: Callable[[str], str] = lambda key: "",
    ) -> None:
        self.app, self.listener, self.log, self.throttles, self.caller = app, listener, log, throttles, caller

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = _params(environ, body)
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        key, service = (match.group(1), match.group(3)) if match else ("", "")
        entry: dict[str, Any] = {
            "t": round(time.time(), 6),
            "listener": self.listener,
            "source": environ.get("REMOTE_ADDR", ""),
            "service": service,
            "action": params.get("Action", ""),
            "key": key,
            "caller": self.caller(key) if key else "",
            "params": {k: v for k, v in params.items() if LOGGED_PARAMS.match(k)},
            "throttled": False,
        }
        signed = match is not None or "X-Amz-Credential" in params
        if path.startswith(REFUSED_PREFIXES):
            entry.update(action=path.split("?")[0][:80], status=403)
            result = _respond(
                start_response, "403 Forbidden", b"refused by the hacloud AWS box\n", "text/plain"
            )
        elif not signed:  # every request is authenticated; moto cannot even route an unsigned one
            entry.update(status=401)
            result = _respond(start_response, "401 Unauthorized", _unsigned_body(), "text/xml")
        elif entry["action"] and self.throttles.take(
            entry["action"], str(params.get("DryRun", "")).lower() == "true"
        ):
            entry.update(status=503 if service == "ec2" else 400, throttled=True)
            if service == "ec2":
                result = _respond(start_response, "503 Service Unavailable", _ec2_throttle_body(), "text/xml")
            else:
                result = _respond(start_response, "400 Bad Request", _query_throttle_body(), "text/xml")
        else:
            result = self._forward(environ, start_response, entry)
        entry["ms"] = round((time.perf_counter() - start) * 1000, 3)
        self.log.add(entry)
        return result

    def _forward(
        self, environ: dict[str, Any], start_response: StartResponse, entry: dict[str, Any]
    ) -> list[bytes]:
        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            entry["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        chunks = self.app(environ, capture)
        try:
            return list(chunks)  # moto answers in one piece; joining here makes the timing complete
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
