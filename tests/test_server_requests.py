"""How `serve` treats requests on the way to the app (exporter/server.py)."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.helpers.data import job
from tests.helpers.processes import ExporterProcess

pytestmark = pytest.mark.slow


def abandoned_push(url: str, source: str) -> None:
    """A push whose client hangs up without waiting for the answer."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps([job("abandoned", finished=True)]).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"POST /api/v1/push?source={source} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


def test_requests_whose_client_left_before_a_thread_took_them_are_not_worked_on(
    tmp_path: Path,
):
    store = tmp_path / "store.db"
    served = ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}", "--threads", "1"
    )
    try:
        blocker = sqlite3.connect(store, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the one thread's push waits on this lock
        waiting = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
        body = json.dumps([job("kept", finished=True)]).encode()
        waiting.sendall(
            b"POST /api/v1/push?source=kept HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        for n in range(5):
            abandoned_push(served.url, f"gone{n}")
        blocker.execute("COMMIT")
        blocker.close()
        waiting.settimeout(10)
        assert waiting.recv(100).startswith(b"HTTP/1.1 ")
        waiting.close()
        metrics = served.metrics()
        started = {
            dict(labels)["source"]
            for name, labels in metrics.samples
            if name == "background_jobs_started_total"
        }
        assert "kept" in started
        assert not any(source.startswith("gone") for source in started), started
    finally:
        served.stop()
