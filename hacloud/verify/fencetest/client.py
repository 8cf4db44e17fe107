"""fence-test's client: sequenced writes through the VIP at a steady rate, every answer logged.

Run by ``hacloud fence-test`` as a separate process where a user's client would sit (the lab:
inside its network namespace), so what it measures is what a client sees::

    python -m hacloud.verify.fencetest.client write --url http://VIP:PORT --run ID --out FILE [...]
    python -m hacloud.verify.fencetest.client digest --url http://VIP:PORT --after N
    python -m hacloud.verify.fencetest.client health --url http://VIP:PORT

``write`` sends ``POST /records`` from ``workers`` threads, ``rate`` requests a second in total,
each on a new connection with a short timeout (a client of a failed node must notice quickly,
and a kept-alive connection would stay stuck on the dead node). Every attempt gets a new
sequence number and is never retried, so a record stored twice is a real duplicate. Each
attempt is one JSON line in ``out``: ``seq``, ``sha`` (of the body), ``sent``/``done`` (epoch
seconds), ``ok``, ``id`` and ``node`` (from the answer) or ``error``. The body's first line is
``hacloud-fencetest <run> <seq>``, which lets the digest tell this run's records apart.

It stops by itself: at ``max_seconds``, after ``max_requests`` attempts, when ``stop_file``
appears, or on SIGTERM. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def body_for(run: str, seq: int) -> bytes:
    """A record: a header line naming the run and sequence, then random payload."""
    return f"hacloud-fencetest {run} {seq}\n{secrets.token_hex(96)}\n".encode()


def _post(host: str, port: int, body: bytes, timeout: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(
            "POST", "/records", body, {"Content-Type": "application/octet-stream", "Connection": "close"}
        )
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 201:
            return {"ok": False, "error": f"HTTP {resp.status}"}
        answer = json.loads(data)
        return {"ok": True, "id": int(answer["id"]), "node": answer.get("node")}
    except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
        return {"ok": False, "error": type(exc).__name__ + (f": {exc}" if str(exc) else "")}
    finally:
        conn.close()


class Writer:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.run = args.run
        self.interval = 1.0 / args.rate
        self.timeout = args.timeout
        self.workers = args.workers
        self.deadline = time.monotonic() + args.max_seconds
        self.max_requests = args.max_requests
        self.stop_file = Path(args.stop_file) if args.stop_file else None
        self.out = open(args.out, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed in run)
        self.lock = threading.Lock()
        self.seq = 0
        self.next_slot = time.monotonic()
        self.stopping = threading.Event()

    def _take(self) -> tuple[int, float] | None:
        """The next sequence number and the moment it may be sent (a shared steady clock)."""
        with self.lock:
            if self.stopping.is_set() or self.seq >= self.max_requests:
                return None
            self.seq += 1
            slot = max(self.next_slot, time.monotonic())
            self.next_slot = slot + self.interval
            return self.seq, slot

    def _should_stop(self) -> bool:
        if time.monotonic() >= self.deadline or (self.stop_file is not None and self.stop_file.exists()):
            self.stopping.set()
        return self.stopping.is_set()

    def worker(self) -> None:
        while not self._should_stop():
            taken = self._take()
            if taken is None:
                return
            seq, slot = taken
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = body_for(self.run, seq)
            sent = time.time()
            result = _post(self.host, self.port, body, self.timeout)
            line = {"seq": seq, "sha": hashlib.sha256(body).hexdigest(), "sent": sent, "done": time.time()}
            line.update(result)
            with self.lock:
                self.out.write(json.dumps(line) + "\n")

    def run_all(self) -> int:
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.out.close()
        return 0


def get_json(url: str, path: str, timeout: float) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"GET {path}: HTTP {resp.status}")
        result: dict[str, Any] = json.loads(data)
        return result
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hacloud.verify.fencetest.client", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--url", required=True)
    w.add_argument("--run", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--rate", type=float, default=20.0, help="requests per second, all workers together")
    w.add_argument("--workers", type=int, default=8)
    w.add_argument("--timeout", type=float, default=1.0, help="seconds per request")
    w.add_argument("--max-seconds", type=float, default=600.0)
    w.add_argument("--max-requests", type=int, default=100_000)
    w.add_argument("--stop-file")
    d = sub.add_parser("digest")
    d.add_argument("--url", required=True)
    d.add_argument("--after", type=int, default=0)
    d.add_argument("--timeout", type=float, default=60.0)
    h = sub.add_parser("health")
    h.add_argument("--url", required=True)
    h.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command in ("digest", "health"):
        path = f"/digest?after={args.after}" if args.command == "digest" else "/health"
        try:
            print(json.dumps(get_json(args.url, path, args.timeout)))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            print(f"{args.url}{path}: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.rate <= 0 or args.workers < 1 or args.timeout <= 0:
        parser.error("--rate and --timeout must be > 0 and --workers >= 1")
    writer = Writer(args)
    signal.signal(signal.SIGTERM, lambda *_: writer.stopping.set())
    print(f"writing to {args.url} as run {args.run} (pid {os.getpid()})", file=sys.stderr, flush=True)
    return writer.run_all()


if __name__ == "__main__":
    sys.exit(main())
