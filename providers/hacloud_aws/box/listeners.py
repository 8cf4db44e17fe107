"""TLS listeners serving one WSGI app, bound on the host or inside a network namespace.

A socket keeps the namespace it was created in, and ``setns`` changes only the calling thread's
namespace: so a helper thread enters the namespace, binds, and ends, and the daemon serves the
socket from its own threads (the pattern of ``hacloud.deploy.remote.connect_in_namespace``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import ssl
import threading
from typing import Any

from hacloud.errors import HacloudError

CLONE_NEWNET = 0x40000000


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``ADDR[:PORT]`` with an IPv4 address (what a listener binds)."""
    import ipaddress

    host, _, port = text.partition(":")
    try:
        ipaddress.IPv4Address(host)
        number = int(port) if port else default_port
        if not 0 <= number <= 65535:
            raise ValueError(port)
    except ValueError:
        raise HacloudError(
            f"{text!r} is not ADDRESS[:PORT] with an IPv4 address and a port 0-65535",
            "e.g. 192.0.2.253:443",
            code="HAC698",
        ) from None
    return host, number


def bind(host: str, port: int, namespace: str | None = None) -> socket.socket:
    """A listening TCP socket on ``host:port``, inside ``namespace`` when given (HAC695 if not)."""
    result: dict[str, Any] = {}

    def worker() -> None:
        try:
            if namespace is not None:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            result["sock"] = sock
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=worker, name=f"bind-{namespace or 'host'}")
    thread.start()
    thread.join()
    if "error" in result:
        where = f"in network namespace {namespace}" if namespace else "on this host"
        raise HacloudError(
            f"the AWS box cannot listen on {host}:{port} {where}: {result['error']}",
            "check that the namespace exists (`ip netns list`), holds that address, and that no "
            "other process uses the port; listening below 1024 needs root",
            code="HAC695",
        )
    sock: socket.socket = result["sock"]
    return sock


def serve(sock: socket.socket, app: Any, context: ssl.SSLContext) -> Any:
    """Serve ``app`` over TLS on the bound ``sock`` in a thread; returns the werkzeug server
    (``shutdown()``/``server_close()`` stop it)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the action log records requests
    host, port = sock.getsockname()[:2]
    server = make_server(
        host,
        port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=context,
        fd=sock.fileno(),
    )
    sock.close()  # werkzeug serves a duplicate of the descriptor
    threading.Thread(target=server.serve_forever, name=f"api-{host}:{port}", daemon=True).start()
    return server
