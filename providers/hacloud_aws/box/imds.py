"""The box's instance metadata service (IMDSv2 and v1) at 169.254.169.254:80, per instance.

Contract:
- Identity: the request's source IP. Any private IP of any interface of an instance (primary,
  secondary such as corosync's second link) is that instance; an address a route table sends
  to an instance or to one of its interfaces (the overlay IP of ``aws-vpc-move-ip``, a /32
  outside the VPC) is that instance too. A loopback test mode pins every request to one
  instance (``pin``). Only instances EC2 shows ``running`` or ``stopping`` answer; an unknown
  source, a stopped instance or ``HttpEndpoint=disabled`` gets no answer (the connection is
  reset), as an instance without a metadata endpoint sees.
- Tokens (IMDSv2): ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
  1..21600 gives a token valid for that instance for that many seconds; a missing or bad TTL is
  400; a request carrying ``X-Forwarded-For`` is 403 (EC2 refuses proxied token requests). The
  token response leaves with IP TTL = the instance's ``HttpPutResponseHopLimit``, so a client
  more hops away never receives it (EC2's hop limit, "Configure the instance metadata options").
- GET ``/latest/...``: a token that is not valid for this instance is 401; no token is 401 when
  the instance's ``HttpTokens`` is ``required`` (IMDSv2 only) and answered (IMDSv1) when it is
  ``optional``. Paths are those of ``imds_tree``; others 404. Other methods 405.
- Credentials: ``iam/security-credentials/<role>`` returns real moto STS assumed-role keys for
  the instance profile's role (session name = instance id, so the caller is
  ``assumed-role/<role>/<instance id>`` as on EC2), obtained in-process (EC2 itself needs no
  ``sts:AssumeRole`` permission), cached, and replaced ``refresh_before_s`` before they expire
  (EC2 makes new ones available at least 5 minutes before; we use 15).
- Log: with ``log`` (``imds.jsonl`` in the box directory, 0600), one line per request: time,
  source, instance, method, path, status (0 = reset, no answer) and ms; never a token or a key
  (they travel in headers and bodies, which are not logged). The bench reads it for the IMDS
  part of a fence.
Nothing here prints a secret.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hacloud_aws.box import imds_tree, listeners
from hacloud_aws.box.frontend import ActionLog
from hacloud_aws.box.layout import ACCOUNT_ID
from hacloud_aws.box.state import CloudState, Instance

IMDS_ADDRESS = "169.254.169.254"
IMDS_PORT = 80
MAX_TOKEN_TTL = 21600  # s, EC2's maximum (and botocore's and fence_aws's request)
ROLE_DURATION_S = 21600  # EC2 instance-profile credentials last about 6 h
REFRESH_BEFORE_S = 900
ANSWERING_STATES = ("running", "stopping")  # the OS still runs; a stopped instance has no IMDS


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


class Tokens:
    """IMDSv2 session tokens: each bound to one instance, until its TTL runs out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, instance: str, ttl: int) -> str:
        token = secrets.token_urlsafe(40)
        now = self._clock()
        with self._lock:
            # drop the expired ones, so a client asking for a token per call cannot grow this
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (instance, now + ttl)
        return token

    def valid(self, token: str, instance: str) -> bool:
        with self._lock:
            entry = self._tokens.get(token)
        return entry is not None and entry[0] == instance and entry[1] > self._clock()


@dataclass
class _Issued:
    document: dict[str, str]
    expiration: datetime.datetime


class Credentials:
    """The instance profile role's assumed-role keys per instance, from moto's STS in-process."""

    def __init__(
        self, region: str, duration_s: int = ROLE_DURATION_S, refresh_before_s: float = REFRESH_BEFORE_S
    ) -> None:
        self.region = region
        self.duration_s = duration_s
        self.refresh_before_s = refresh_before_s
        self._cache: dict[tuple[str, str], _Issued] = {}
        self._lock = threading.Lock()

    def _assume(self, instance: str, role: str) -> _Issued | None:
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        try:
            arn = iam_backends[ACCOUNT_ID]["aws"].get_role(role).arn
        except Exception:  # the role was deleted under its profile: EC2 hands out nothing
            return None
        sts: Any = sts_backends[ACCOUNT_ID]["aws"]  # policy/external_id None = none, as moto's API passes
        assumed = sts.assume_role(
            region_name=self.region,
            role_session_name=instance,
            role_arn=arn,
            policy=None,
            duration=self.duration_s,
            external_id=None,
        )
        now = datetime.datetime.now(datetime.UTC)
        document = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": assumed.access_key_id,
            "SecretAccessKey": assumed.secret_access_key,
            "Token": assumed.session_token,
            "Expiration": _iso(assumed.expiration),
        }
        return _Issued(document, _utc(assumed.expiration))

    def get(self, instance: str, role: str) -> dict[str, str] | None:
        """The current keys of ``role`` for ``instance`` (new ones once the cached keys are
        within ``refresh_before_s`` of expiring), or None when the role does not exist."""
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            issued = self._cache.get((instance, role))
            left = (issued.expiration - now).total_seconds() if issued else 0.0
            if issued is None or left <= self.refresh_before_s:
                issued = self._assume(instance, role)
                if issued is None:
                    self._cache.pop((instance, role), None)
                    return None
                self._cache[(instance, role)] = issued
            return dict(issued.document)

    def last_updated(self, instance: str, role: str | None) -> str:
        issued = self._cache.get((instance, role)) if role else None
        moment = datetime.datetime.now(datetime.UTC)
        return issued.document["LastUpdated"] if issued else _iso(moment)


def identify(source: str, cloud: CloudState) -> Instance | None:
    """The instance a request from ``source`` comes from (see the module contract)."""
    for inst in cloud.instances:
        if any(source in eni.private_ips for eni in inst.interfaces):
            return inst
    try:
        address = ipaddress.IPv4Address(source)
    except ValueError:
        return None
    by_eni = {eni.id: inst for inst in cloud.instances for eni in inst.interfaces}
    by_id = {inst.id: inst for inst in cloud.instances}
    for table in cloud.route_tables:
        for route in table.routes:
            if route.local or address not in ipaddress.IPv4Network(route.destination, strict=False):
                continue
            owner = by_eni.get(route.interface or "") or by_id.get(route.instance or "")
            if owner is not None and ipaddress.IPv4Network(route.destination).prefixlen == 32:
                return owner
    return None


class Service:
    """What the handler asks: who is calling, and what they may see. ``snapshot`` is the
    account's state now; ``facts`` reads ``imds_tree.Facts`` of an instance."""

    def __init__(
        self,
        region: str,
        snapshot: Callable[[], CloudState],
        credentials: Credentials,
        facts: Callable[[str, str], imds_tree.Facts] = imds_tree.Facts.read,
        pin: str | None = None,
        log: ActionLog | None = None,
    ) -> None:
        self.region = region
        self.snapshot = snapshot
        self.credentials = credentials
        self.facts = facts
        self.pin = pin
        self.log = log
        self.tokens = Tokens()

    def caller(self, source: str) -> Instance | None:
        cloud = self.snapshot()
        if self.pin is not None:
            inst = next((i for i in cloud.instances if i.id == self.pin), None)
        else:
            inst = identify(source, cloud)
        if inst is None or inst.state not in ANSWERING_STATES or inst.http_endpoint != "enabled":
            return None
        return inst

    def view(self, inst: Instance) -> imds_tree.View:
        role = inst.role

        def credentials() -> str | None:
            import json

            doc = self.credentials.get(inst.id, role) if role else None
            return json.dumps(doc, indent=2) if doc is not None else None

        return imds_tree.View(
            instance=inst,
            facts=self.facts(self.region, inst.id),
            region=self.region,
            credentials=credentials,
            last_updated=lambda: self.credentials.last_updated(inst.id, role),
        )


class _Answered(Exception):
    """The handler already answered (an error); stop handling this request."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's and requests' pools expect
    server: _Server
    _t0 = 0.0  # when the request being handled began (perf_counter)
    _instance: Instance | None = None  # who sent it, once known

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the URL can name a role; nothing secret, but the daemon log stays quiet

    def _record(self, status: int) -> None:
        log = self.server.service.log
        if log is not None:
            inst = self._instance
            log.add({
                "t": round(time.time(), 6),
                "source": self.client_address[0],
                "instance": inst.id if inst is not None else None,
                "method": self.command,
                "path": self.path.split("?", 1)[0][:256],
                "status": status,
                "ms": round((time.perf_counter() - self._t0) * 1000, 2),
            })  # fmt: skip

    def _send(self, code: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self._record(code)
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _reset(self) -> None:
        """No answer at all: RST, as from an address where nothing listens."""
        self._record(0)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 65536:
            self.rfile.read(length)

    def _caller(self) -> Instance | None:
        """The calling instance, or None (no answer is due). A state read that fails answers 500
        and raises ``_Answered``: it must not look like "not an instance"."""
        try:
            self._instance = self.server.service.caller(self.client_address[0])
            return self._instance
        except Exception as exc:
            self._send(500, f"the box could not read its state: {type(exc).__name__}")
            raise _Answered from exc

    def do_PUT(self) -> None:
        self._t0, self._instance = time.perf_counter(), None
        self._drain()
        with contextlib.suppress(_Answered):
            self._put()

    def do_GET(self) -> None:
        self._t0, self._instance = time.perf_counter(), None
        with contextlib.suppress(_Answered):
            self._get()

    def _put(self) -> None:
        service = self.server.service
        inst = self._caller()
        if inst is None:
            return self._reset()
        if self.path != "/latest/api/token":
            return self._send(405 if self.path.startswith("/latest/") else 404)
        if self.headers.get("X-Forwarded-For") is not None:
            return self._send(403, "Forbidden")
        ttl_text = (self.headers.get("X-aws-ec2-metadata-token-ttl-seconds") or "").strip()
        if not ttl_text.isdigit() or not 1 <= int(ttl_text) <= MAX_TOKEN_TTL:
            return self._send(400, "Bad Request")
        token = service.tokens.issue(inst.id, int(ttl_text))
        # the hop limit: the token's packets die after this many routers, as on Nitro. The
        # connection ends with this answer: TCP rebuilds retransmissions with the socket's TTL
        # at that moment, so restoring it for later answers would let a lost token through
        self.connection.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, max(1, inst.hop_limit))
        self.close_connection = True
        self._send(200, token, {"X-aws-ec2-metadata-token-ttl-seconds": ttl_text, "Connection": "close"})

    def _get(self) -> None:
        service = self.server.service
        inst = self._caller()
        if inst is None:
            return self._reset()
        token = self.headers.get("X-aws-ec2-metadata-token")
        if token is not None and not service.tokens.valid(token, inst.id):
            return self._send(401, "Unauthorized")
        if token is None and inst.http_tokens == "required":
            return self._send(401, "Unauthorized")
        path = self.path.split("?", 1)[0]
        answer = None
        if path.startswith("/latest/"):
            answer = imds_tree.lookup(path[len("/latest/") :], service.view(inst))
        if answer is None:
            return self._send(404, "Not Found")
        self._send(200, answer)

    def _not_allowed(self) -> None:
        self._drain()
        self._send(405, "Method Not Allowed")

    do_POST = do_DELETE = do_PATCH = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: Service

    def server_close(self) -> None:
        super().server_close()
        if self.service.log is not None:
            self.service.log.close()


def serve(sock: socket.socket, service: Service) -> ThreadingHTTPServer:
    """Serve IMDS on the bound ``sock`` (``listeners.bind``) in a thread; returns the server
    (``shutdown()``/``server_close()`` stop it)."""
    server = _Server(sock.getsockname()[:2], _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()[:2]
    server.service = service
    threading.Thread(target=server.serve_forever, name="imds", daemon=True).start()
    return server


def start(
    region: str, snapshot: Callable[[], CloudState], namespace: str | None, log: ActionLog | None = None
) -> ThreadingHTTPServer:
    """The box's IMDS at 169.254.169.254:80 inside ``namespace`` (which must hold that address,
    e.g. on ``lo``; HAC695 from ``listeners.bind`` if not); ``server_close()`` closes ``log``."""
    sock = listeners.bind(IMDS_ADDRESS, IMDS_PORT, namespace)
    return serve(sock, Service(region, snapshot, Credentials(region), log=log))
