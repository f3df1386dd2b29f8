"""Serve an app with waitress until SIGTERM or SIGINT, then stop in order.

The socket is bound before the app is built, so a demo listening on port 0 knows its real
address (to scrape its own mock source) and so the log line names the actual port. On a
signal waitress stops accepting and gives in-flight requests time to finish; then the
timers let a running scrape finish and the store closes.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable

from flask import Flask
from waitress.server import create_server

from exporter.app import runtime_of
from exporter.config import DEFAULT_THREADS

log = logging.getLogger(__name__)

# A /metrics page of thousands of series is megabytes; waitress spools any response over
# its 1 MiB default to a temporary file, so keep pages that size in memory.
OUTBUF_OVERFLOW_BYTES = 64 * 1024 * 1024
# Pushes are request bodies of tens of kB to MBs: read them in 64 KiB pieces rather than
# waitress's 8 KiB, each piece being a pass through its Python parser (a 500-job push was
# eight), and keep bodies up to 8 MiB in memory instead of spooling those over 512 KiB.
RECV_BYTES = 64 * 1024
INBUF_OVERFLOW_BYTES = 8 * 1024 * 1024
# Read one request ahead on each connection: waitress then sees a client that hung up while
# its request waited for a thread, and does not run it. After a store outage, scrapes that
# Prometheus gave up on would otherwise each run in turn before the one it waits for now.
REQUEST_LOOKAHEAD = 1


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


def serve(
    sock: socket.socket, build_app: Callable[[], Flask], threads: int = DEFAULT_THREADS
) -> None:
    """Run until a signal; every part is stopped even when building or serving fails."""
    app = build_app()
    runtime = runtime_of(app)
    server = create_server(
        app,
        sockets=[sock],
        threads=threads,
        ident="job-exporter",
        outbuf_overflow=OUTBUF_OVERFLOW_BYTES,
        recv_bytes=RECV_BYTES,
        inbuf_overflow=INBUF_OVERFLOW_BYTES,
        channel_request_lookahead=REQUEST_LOOKAHEAD,
    )

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        log.info(
            "received %s, %s",
            signal.Signals(signum).name,
            "already shutting down" if stopping else "shutting down",
        )
        if not stopping:
            stopping = True
            raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        runtime.start(local_url(sock))
        log.info("job-exporter listening on %s", local_url(sock))
        server.run()
    finally:
        stopping = True  # a further signal during cleanup must not cut it short
        server.close()
        runtime.stop()
        log.info("job-exporter stopped")
