"""The box's control protocol: JSON lines over a unix stream socket (``box.sock``, 0600, in the
0700 box directory), so only the user who runs hacloud can script faults; guests and other
local users cannot reach it (it is not TCP).

One request per line, one answer per line. Every answer has ``ok``; a refused request has
``ok: false`` with ``error``, ``remedy`` and ``code`` (HAC696) naming the field. Requests:

- ``{"op": "status"}`` → ``pid``, ``moto``, ``layout``, ``listeners``, ``throttles``, ``actions``
  (entries logged so far).
- ``{"op": "fault", "kind": "throttle", "action": A, "count": N}``: the next N calls of A;
  ``"seconds": T``: every call for T s; ``"bucket": {"size": S, "refill": R}``: a token bucket;
  ``"off": true``: stop throttling A (``action`` omitted with ``off``: every action);
  ``"acting_only": true``: dry runs of A pass and do not count.
- ``{"op": "state"}`` → ``state``: the account's ``CloudState`` (``state.py``) as JSON.
- ``{"op": "actions", "since": SEQ}`` → ``entries`` (the action log from entry SEQ on).
- ``{"op": "shutdown"}``: stop the daemon cleanly (as SIGTERM does).
- Network (a box started with ``--router``, ``netloop.py``): ``{"op": "fault", "kind":
  "partition", "on": B}``, ``{"op": "fault", "kind": "api_cut", "zone": Z, "on": B}`` (in force
  when answered) and ``{"op": "net"}`` → ``net``: router, faults, applies, kicks (applies an
  API call caused), last apply ms, error.
- Guests (a box started with ``--guests``, ``controller.py``): ``{"op": "guests"}`` →
  ``guests``: {iid: {power: on|off|frozen, pid, console}}; ``{"op": "freeze"|"thaw",
  "instance": IID}`` (SIGSTOP/SIGCONT of the guest: a hung kernel, EC2 still says running);
  ``{"op": "events", "since": EPOCH}`` → ``events`` [{t, instance, event}].
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError
from hacloud_aws.box.frontend import ActionLog, Throttles

MAX_LINE = 64 * 1024

FIELDS: dict[str, set[str]] = {
    "status": {"op"},
    "state": {"op"},
    "actions": {"op", "since"},
    "shutdown": {"op"},
    "fault": {"op", "kind", "action", "count", "seconds", "bucket", "off", "on", "zone", "acting_only"},
    "net": {"op"},
    "guests": {"op"},
    "freeze": {"op", "instance"},
    "thaw": {"op", "instance"},
    "events": {"op", "since"},
}


class RequestError(HacloudError):
    """A control request the box refuses (the answer names the field and the fix)."""

    exit_code = 2
    code = "HAC696"


def _number(req: dict[str, Any], name: str, low: float, integer: bool = False) -> float:
    value = req[name]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        what = "an integer" if integer else "a number"
        raise RequestError(
            f"{name}: {value!r} is not {what} >= {low}", f"give {name} as {what} >= {low}", code="HAC696"
        )
    return float(value)


def _throttle(req: dict[str, Any], throttles: Throttles) -> None:
    action = req.get("action")
    if action is not None and (not isinstance(action, str) or not action.isalnum()):
        raise RequestError(
            f"action: {action!r} is not an API action name",
            "give it as in the API, e.g. StopInstances",
            code="HAC696",
        )
    modes = [k for k in ("count", "seconds", "bucket", "off") if k in req]
    if len(modes) != 1:
        raise RequestError(
            f"a throttle takes exactly one of count, seconds, bucket, off (got {', '.join(modes) or 'none'})",
            'e.g. {"op": "fault", "kind": "throttle", "action": "StopInstances", "count": 6}',
            code="HAC696",
        )
    if modes[0] == "off":
        throttles.clear(action)
        return
    if action is None:
        raise RequestError(
            "action: missing", "name the API action to throttle, e.g. StopInstances", code="HAC696"
        )
    acting_only = req.get("acting_only", False)
    if not isinstance(acting_only, bool):
        raise RequestError(
            f"acting_only: {acting_only!r} is not true or false",
            "true throttles only the calls that act (not their dry runs)",
            code="HAC696",
        )
    if modes[0] == "count":
        throttles.set(action, count=int(_number(req, "count", 1, integer=True)), acting_only=acting_only)
    elif modes[0] == "seconds":
        throttles.set(action, seconds=_number(req, "seconds", 0), acting_only=acting_only)
    else:
        bucket = req["bucket"]
        if not isinstance(bucket, dict) or set(bucket) != {"size", "refill"}:
            raise RequestError(
                "bucket: must be {size, refill}", 'e.g. "bucket": {"size": 50, "refill": 5}', code="HAC696"
            )
        throttles.set(action, bucket=(_number(bucket, "size", 1), _number(bucket, "refill", 0)))


def _network(req: dict[str, Any], network: Any) -> dict[str, Any]:
    """The network ops (``net``, the ``partition``/``api_cut`` faults): see the module contract."""
    if network is None:
        raise RequestError(
            "this box runs no network (it was started without --router)",
            "start the box with --router NAME to have a VPC router and its faults",
            code="HAC743",
        )
    if req["op"] == "net":
        return {"net": network.status()}
    if not isinstance(req.get("on"), bool):
        raise RequestError(
            f"on: {req.get('on')!r} is not true or false",
            'e.g. {"op": "fault", "kind": "partition", "on": true}',
            code="HAC744",
        )
    zone = req.get("zone")
    return {"net": network.fault(req["kind"], req["on"], zone if isinstance(zone, str) else None)}


def _guests(req: dict[str, Any], machines: Any) -> dict[str, Any]:
    """The guest ops (``guests``, ``freeze``, ``thaw``, ``events``): see the module contract."""
    if machines is None:
        raise RequestError(
            "this box runs no guests (it was started without --guests)",
            "start the box with --router NAME --guests",
            code="HAC711",
        )
    if req["op"] == "guests":
        return {"guests": machines.status()}
    if req["op"] == "events":
        return {"events": machines.events(_number(req, "since", 0) if "since" in req else 0.0)}
    instance = req.get("instance")
    if not isinstance(instance, str) or not instance.startswith("i-"):
        raise RequestError(
            f"instance: {instance!r} is not an instance id",
            'e.g. {"op": "freeze", "instance": "i-0123456789abcdef0"}',
            code="HAC712",
        )
    return {"guests": machines.signal(instance, req["op"] == "freeze")}


class Controller:
    """Executes control requests against the running box's shared state."""

    def __init__(
        self,
        log: ActionLog,
        throttles: Throttles,
        status: Callable[[], dict[str, Any]],
        stop: Callable[[], None],
        state: Callable[[], dict[str, Any]] = dict,
        network: Any = None,  # netloop.NetLoop when the box runs its router
        machines: Any = None,  # controller.GuestController when the box runs guests
    ) -> None:
        self.log, self.throttles, self.status, self.stop, self.state = log, throttles, status, stop, state
        self.network, self.machines = network, machines

    def handle(self, req: Any) -> dict[str, Any]:
        """The answer to one decoded request (never raises for a bad request: it answers it)."""
        try:
            return {"ok": True, **self._dispatch(req)}
        except HacloudError as exc:
            return {"ok": False, "error": exc.message, "remedy": exc.remedy, "code": exc.code}
        except Exception as exc:  # a box bug: answer it, keep serving (the daemon log has no trace)
            return {
                "ok": False,
                "error": f"the box failed on {req.get('op') if isinstance(req, dict) else req!r}: {exc!r}",
                "remedy": "report it with the box's daemon.log; the box keeps running",
                "code": "HAC699",
            }

    def _dispatch(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict) or req.get("op") not in FIELDS:
            raise RequestError(
                f"op: {req.get('op') if isinstance(req, dict) else req!r} is not a control operation",
                f"use one of {', '.join(sorted(FIELDS))}",
                code="HAC696",
            )
        unknown = sorted(set(req) - FIELDS[req["op"]])
        if unknown:
            raise RequestError(
                f"{unknown[0]}: not a field of {req['op']}",
                f"allowed: {', '.join(sorted(FIELDS[req['op']]))}",
                code="HAC696",
            )
        op = req["op"]
        if op == "status":
            return {**self.status(), "throttles": self.throttles.describe()}
        if op == "state":
            return {"state": self.state()}
        if op == "actions":
            return {
                "entries": self.log.since(
                    int(_number(req, "since", 0, integer=True)) if "since" in req else 0
                )
            }
        if op == "shutdown":
            self.stop()
            return {}
        if op in ("guests", "freeze", "thaw", "events"):
            return _guests(req, self.machines)
        if op == "net" or req.get("kind") in ("partition", "api_cut"):
            return _network(req, self.network)
        if req.get("kind") != "throttle":
            raise RequestError(
                f"kind: {req.get('kind')!r} is not a fault this box knows",
                "use kind: throttle, partition or api_cut",
                code="HAC696",
            )
        _throttle(req, self.throttles)
        return {"throttles": self.throttles.describe()}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for raw in self.rfile:
            if len(raw) > MAX_LINE:
                answer: dict[str, Any] = {"ok": False, "error": "request line too long", "code": "HAC696"}
            else:
                try:
                    answer = self.server.controller.handle(json.loads(raw))
                except ValueError:
                    answer = {
                        "ok": False,
                        "error": "not a JSON line",
                        "remedy": "send one JSON object per line",
                        "code": "HAC696",
                    }
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    controller: Controller


def serve(path: Path, controller: Controller) -> _Server:
    """Bind ``path`` (0600; a stale socket from a dead box is replaced) and serve in a thread."""
    path.unlink(missing_ok=True)
    server = _Server(str(path), _Handler)
    path.chmod(0o600)
    server.controller = controller
    threading.Thread(target=server.serve_forever, name="box-control", daemon=True).start()
    return server


def call(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the box at ``path`` and return its answer; a refused request raises
    ``HacloudError`` with the box's code, an absent box HAC694."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = sock.makefile("rb").readline()
    except OSError as exc:
        raise HacloudError(
            f"the AWS box at {path.parent} does not answer ({exc.strerror or exc})",
            "start it again (`hacloud up`), or run `hacloud down` to clean up what is left",
            code="HAC694",
        ) from None
    answer: dict[str, Any] = json.loads(data)
    if not answer.get("ok"):
        raise HacloudError(
            answer.get("error", "refused"), answer.get("remedy", ""), code=answer.get("code", "HAC696")
        )
    return answer
