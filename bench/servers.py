"""Servers the benchmarks start on 127.0.0.1: a static job source, and helper processes."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class StaticSource:
    """Serves whatever bytes `body` holds, as an app's jobs endpoint would. A subclass
    that changes its jobs between answers overrides `before_answer` and `answered`."""

    def __init__(self, body: bytes = b"[]") -> None:
        self.body = body
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                source.before_answer()
                body = source.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                source.answered()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jobs"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def before_answer(self) -> None:
        """Called before each answer is read from `body`."""

    def answered(self) -> None:
        """Called once each answer is sent."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(store_url: str, *options: str) -> tuple[subprocess.Popen, str]:
    """`python -m exporter serve` on a free port of 127.0.0.1 with `options`, and its URL
    once it says it listens."""
    command = [sys.executable, "-m", "exporter", "serve", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--store", store_url, *options],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if match := re.search(r"listening on (http://\S+)", line):
            # Keep reading its log, so a full pipe never stalls the exporter.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, match.group(1)
    raise SystemExit("the exporter exited before listening")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, check=lambda response: response.ok, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check(requests.get(url, timeout=5)):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready within {timeout} s")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wrk(url: str, seconds: int, connections: int = 4) -> float:
    """Requests per second that wrk (Debian package) reaches against `url`."""
    out = subprocess.run(
        # wrk's own 2 s timeout would flag the slowest baseline's answers as socket errors
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk printed no rate:\n{out.stdout}\n{out.stderr}")
