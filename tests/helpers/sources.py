"""Fake job sources on 127.0.0.1: one whose answer each test sets, and one that misbehaves
differently on every request (for chaos tests)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.data import job


def serve_handler(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """`handler` served on an ephemeral port in a daemon thread; the server and its jobs URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jobs"


@dataclass
class Reply:
    """What the fake source answers next: a status, a body, and misbehaviour to act out."""

    status: int = 200
    body: bytes = b"[]"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    hang: threading.Event | None = None  # wait on this before answering
    chunked: bool = False  # send without Content-Length
    trickle_s: float | None = None  # pause between single bytes of the body


class JobSource:
    """An app's jobs endpoint on 127.0.0.1 whose answer each test sets."""

    def __init__(self) -> None:
        self.reply = Reply()
        self.requests = 0
        self.request_times: list[float] = []  # time.monotonic() of each request's arrival
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                source.requests += 1
                source.request_times.append(time.monotonic())
                reply = source.reply
                if reply.hang is not None:
                    reply.hang.wait(timeout=10)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.trickle_s is not None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    try:
                        for byte in reply.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle_s)
                    except OSError:
                        pass  # the exporter gave up on us, as it should
                elif reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(reply.body), 65536):
                        piece = reply.body[start : start + 65536]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server, self.url = serve_handler(Handler)

    def serve_jobs(self, jobs: list[dict[str, Any]]) -> None:
        self.reply = Reply(body=json.dumps(jobs).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


MODES = ("hang", "trickle", "huge", "truncated", "wrong_types", "many_names", "disconnect", "good")
EXPECTED_REASON = {
    "hang": "timeout",
    "trickle": "timeout",
    "huge": "too_large",
    "truncated": "invalid_json",
    "disconnect": "connection",
}


class ChaosSource:
    """Cycles through MODES; `served` counts how often each mode was acted out."""

    def __init__(self, start_ms: float) -> None:
        self.start_ms = start_ms
        self.served: dict[str, int] = dict.fromkeys(MODES, 0)
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        chaos = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with chaos._lock:
                    mode = MODES[chaos._next % len(MODES)]
                    chaos._next += 1
                    chaos.served[mode] += 1
                with contextlib.suppress(OSError):  # the exporter hung up on us, as it should
                    getattr(chaos, f"_{mode}")(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _job(self, n: int, name: str = "chaos") -> dict[str, Any]:
        return job(f"c{n}", name=name, start_ms=self.start_ms)

    def _hang(self, handler: BaseHTTPRequestHandler) -> None:
        self._stop.wait(5)

    def _trickle(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):
            if self._stop.wait(0.05):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        piece = b" " * (1 << 20)
        handler.wfile.write(b"%x\r\n[\r\n" % 1)
        for _ in range(50):  # 50 MB, never finished as far as the exporter cares
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"1\r\n]\r\n0\r\n\r\n")

    def _truncated(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, json.dumps([self._job(n) for n in range(50)]).encode()[:-40])

    def _wrong_types(self, handler: BaseHTTPRequestHandler) -> None:
        items: list[Any] = [self._job(n) for n in range(10)]
        items += [{"id": 5, "name": None, "startTimestamp": "yesterday", "isFinished": "no"}, 7]
        self._send(handler, json.dumps(items).encode())

    def _many_names(self, handler: BaseHTTPRequestHandler) -> None:
        items = [self._job(n, name=f"name-{n}") for n in range(10_000)]
        self._send(handler, json.dumps(items).encode())

    def _disconnect(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.shutdown(2)

    def _good(self, handler: BaseHTTPRequestHandler) -> None:
        self._send(handler, json.dumps([self._job(n) for n in range(10)]).encode())
