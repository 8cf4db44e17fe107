"""hacloud's demo service: a tiny HTTP record store on the replicated filesystem.

Shipped to the nodes as one file and run by Pacemaker (agent ``ocf:hacloud:demo``) next to
the VIP. A write is acknowledged only after the record and its directory entry are fsync'd,
so with DRBD protocol C an acknowledged record survives the loss of the active node.

    POST /records        body (<= 1 MiB) -> 201 {"id": N, "node": hostname}
    GET  /records        -> 200 [ids]
    GET  /records/N      -> 200 the body, or 404
    GET  /digest?after=N -> 200 {"node": hostname, "records": [[id, sha256, first line], ...]}
                            for ids > N (how fence-test checks every record in one request)
    GET  /health         -> 200 {"node": hostname, "records": count, "last_id": N, "pid": PID}

Standard library only: the nodes need nothing but python3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1024 * 1024


class Store:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self.next_id = max(self.ids(), default=0) + 1

    def ids(self) -> list[int]:
        return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())

    def add(self, body: bytes) -> int:
        with self.lock:
            rid = self.next_id
            tmp = self.directory / f".{rid}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.directory / str(rid))
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the name is durable too, not only the bytes
            finally:
                os.close(dfd)
            self.next_id = rid + 1
            return rid

    def digest(self, after: int) -> list[list[object]]:
        out: list[list[object]] = []
        for rid in self.ids():
            if rid <= after:
                continue
            body = self.get(rid)
            if body is not None:
                first = body.split(b"\n", 1)[0][:200].decode("utf-8", errors="replace")
                out.append([rid, hashlib.sha256(body).hexdigest(), first])
        return out

    def get(self, rid: int) -> bytes | None:
        try:
            return (self.directory / str(rid)).read_bytes()
        except FileNotFoundError:
            return None


def make_handler(store: Store, node: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hacloud-demo/1"

        def log_message(self, format: str, *args: object) -> None:
            return  # requests are not logged: records may be anything

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, value: object) -> None:
            self._send(code, json.dumps(value).encode())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if self.path == "/health":
                ids = store.ids()
                last = ids[-1] if ids else 0
                self._json(200, {"node": node, "records": len(ids), "last_id": last, "pid": os.getpid()})
            elif url.path == "/digest":
                after = parse_qs(url.query).get("after", ["0"])[0]
                if not after.isdigit():
                    self._json(400, {"error": "after must be a record id"})
                    return
                self._json(200, {"node": node, "records": store.digest(int(after))})
            elif self.path == "/records":
                self._json(200, store.ids())
            elif self.path.startswith("/records/") and self.path[9:].isdigit():
                body = store.get(int(self.path[9:]))
                if body is None:
                    self._json(404, {"error": "no such record"})
                else:
                    self._send(200, body, "application/octet-stream")
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/records":
                self._json(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "Content-Length required"})
                return
            if length < 0 or length > MAX_BODY:
                self._json(413, {"error": f"body must be at most {MAX_BODY} bytes"})
                return
            body = self.rfile.read(length)
            self._json(201, {"id": store.add(body), "node": node})

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="directory on the replicated filesystem")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")  # noqa: S104 (the VIP moves between nodes)
    args = parser.parse_args(argv)
    store = Store(Path(args.data))
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(store, socket.gethostname()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
