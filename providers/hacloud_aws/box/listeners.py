"""TLS listeners serving one WSGI app, bound on the host or inside a network namespace.

A socket keeps the namespace it was created in, and ``setns`` changes only the calling thread's
namespace: so a helper thread enters the namespace, binds, and ends, and the daemon serves the
socket from its own threads (:func:`hacloud.deploy.remote.socket_in_namespace`).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any

from hacloud.deploy.remote import socket_in_namespace
from hacloud.errors import HacloudError


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

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock

    try:
        return socket_in_namespace(namespace, listen)
    except OSError as exc:
        where = f"in network namespace {namespace}" if namespace else "on this host"
        raise HacloudError(
            f"the AWS box cannot listen on {host}:{port} {where}: {exc}",
            "check that the namespace exists (`ip netns list`), holds that address, and that no "
            "other process uses the port; listening below 1024 needs root",
            code="HAC695",
        ) from None


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
