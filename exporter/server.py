"""Serve an app with waitress until SIGTERM or SIGINT, then stop in order.

The socket is bound before the app is built, so a demo listening on port 0 knows its real
address (to scrape its own mock source) and so the log line names the actual port. On a
signal waitress stops accepting and gives in-flight requests time to finish; then the
scheduler lets a running scrape finish and the store closes.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable

from flask import Flask
from waitress.server import create_server

from exporter.app import runtime_of

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def local_url(sock: socket.socket) -> str:
    """An http:// URL this machine can reach the socket at (0.0.0.0 becomes 127.0.0.1)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(sock: socket.socket, build_app: Callable[[], Flask], threads: int = 8) -> None:
    """Run until a signal; every part is stopped even when building or serving fails."""
    app = build_app()
    runtime = runtime_of(app)
    server = create_server(app, sockets=[sock], threads=threads, ident="job-exporter")

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        runtime.start()
        log.info("job-exporter listening on %s", local_url(sock))
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        runtime.stop()
        log.info("job-exporter stopped")
