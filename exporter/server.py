"""Serve an app with waitress until SIGTERM or SIGINT, then stop in order.

The socket is bound before the app is built, so a demo listening on port 0 knows its real
address (to scrape its own mock source) and so the log line names the actual port. On a
signal waitress stops accepting and gives in-flight requests time to finish; then the
timers let a running scrape finish and the store closes.

Slow or hostile clients must not starve the others (docs/contract.md §8): waitress polls
thousands of connections (select() stops at 1024), closes idle ones sooner than its default,
refuses a body over the cap while reading it, and a write without its token from its
headers (exporter/runtime/edge.py).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from typing import cast

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from exporter.api.auth import (
    FORBIDDEN_ERRORS,
    FORBIDDEN_MESSAGE,
    UNAUTHORIZED_ERRORS,
    UNAUTHORIZED_MESSAGE,
    WWW_AUTHENTICATE,
    verdict,
)
from exporter.app import runtime_of
from exporter.config import DEFAULT_THREADS, ConfigError, Settings
from exporter.runtime import edge
from exporter.runtime.process import Runtime

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
# A connection holds a descriptor and a parser, never a thread, until its request is whole:
# a thousand clients sending a byte a second cost that many descriptors. Past the limit
# waitress stops accepting, so it is high; not higher, since each pass of waitress's loop
# visits every connection (4,000 slow clients: /metrics p50 28 ms, max 230 ms; 9,000: over
# a second). It is lowered to what the open files limit allows, less what the store,
# scrapes and spool files hold, since an accept() failing for want of descriptors spins.
# The limit is `max_connections` (DEFAULT_MAX_CONNECTIONS in config.py).
RESERVED_FILES = 256
# Idle connections (no request in progress, nothing sent) close after `idle_timeout`
# (waitress's default is 120 s), checked this often (waitress: every 30 s).
CLEANUP_INTERVAL_S = 5


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


def token_gate(settings: Settings) -> edge.Gate:
    """exporter/api/auth.py's rule, applied by the server to a request's headers."""

    def gate(method: str, path: str, headers: Mapping[str, str]) -> edge.Refusal | None:
        refused = verdict(method, path, headers.get("AUTHORIZATION", ""), settings)
        if refused is None:
            return None
        if refused == 403:
            return edge.Refusal(403, "Forbidden", FORBIDDEN_MESSAGE, FORBIDDEN_ERRORS, [])
        return edge.Refusal(
            401,
            "Unauthorized",
            UNAUTHORIZED_MESSAGE,
            UNAUTHORIZED_ERRORS,
            [("WWW-Authenticate", WWW_AUTHENTICATE)],
        )

    return gate


def connection_limit(wanted: int) -> int:
    open_files = edge.raise_open_files_limit()
    limit = min(wanted, open_files - RESERVED_FILES)
    if limit < wanted:
        log.warning(
            "the open files limit (%d) allows only %d connections at once; raise it "
            "(ulimit -n) for more",
            open_files,
            max(limit, 1),
        )
    return max(limit, 1)


def warn_if_open(sock: socket.socket, settings: Settings) -> None:
    host = sock.getsockname()[0]
    if not settings.tokens_set and not edge.is_loopback(host):
        log.warning(
            "listening on %s beyond loopback with no --api-token: anyone who can reach it "
            "may push jobs and create, change or delete API jobs",
            host,
        )


def close_connections(server: BaseWSGIServer) -> None:
    """Close the listening socket and every connection left once waitress has stopped, so
    a client's request on a kept-alive connection fails at once instead of waiting for its
    timeout; a response still being written is cut short (its request had waitress's 5 s)."""
    channels = cast(dict[int, HTTPChannel], server.active_channels)  # the stubs say one
    for channel in list(channels.values()):
        channel.handle_close()
    server.close()


def serve(
    sock: socket.socket,
    build_app: Callable[[], Flask],
    threads: int = DEFAULT_THREADS,
    reload: Callable[[Settings], Settings] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT; every part is stopped even when building or serving
    fails. SIGHUP reloads the sources with `reload`, on a thread of its own (it stops and
    starts scrapes, which may wait on a scrape in progress), or is ignored, said so."""
    app = build_app()
    runtime = runtime_of(app)
    settings = runtime.settings
    server = create_server(
        app,
        sockets=[sock],
        threads=threads,
        ident="job-exporter",
        outbuf_overflow=OUTBUF_OVERFLOW_BYTES,
        recv_bytes=RECV_BYTES,
        inbuf_overflow=INBUF_OVERFLOW_BYTES,
        channel_request_lookahead=REQUEST_LOOKAHEAD,
        connection_limit=connection_limit(settings.max_connections),
        asyncore_use_poll=True,
        channel_timeout=settings.idle_timeout,
        cleanup_interval=CLEANUP_INTERVAL_S,
        # waitress refuses a body of this size or more: one byte over the cap
        max_request_body_size=settings.max_body_bytes + 1,
    )
    assert isinstance(server, BaseWSGIServer)  # one socket: one server, not a multi-server
    server.channel_class = edge.channel_class(token_gate(settings), settings.max_body_bytes)
    warn_if_open(sock, settings)

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

    def hang_up(_signum: int, _frame: object) -> None:
        if reload is None:
            log.warning("received SIGHUP: ignored, there is no --config file to reload")
            return
        log.info("received SIGHUP, reloading the sources of the --config file")
        threading.Thread(target=_reload, args=(runtime, reload), name="reload").start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.signal(signal.SIGHUP, hang_up)
    try:
        runtime.start(local_url(sock))
        log.info("job-exporter listening on %s", local_url(sock))
        server.run()
    finally:
        stopping = True  # a further signal during cleanup must not cut it short
        close_connections(server)
        runtime.stop()
        log.info("job-exporter stopped")


_reloading = threading.Lock()


def _reload(runtime: Runtime, reload: Callable[[Settings], Settings]) -> None:
    """One reload at a time; a file that does not read keeps every source as it was."""
    with _reloading:
        try:
            runtime.reload_sources(reload(runtime.settings))
        except (ConfigError, OSError) as error:
            log.error("reload failed, the sources stay as they were: %s", error)
