"""SIGTERM lets the scrape in flight finish and store its result, then exits 0 promptly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from exporter.store import open_store
from tests.helpers.data import job
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource, Reply
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow


def test_sigterm_finishes_the_scrape_in_flight(tmp_path: Path, job_source: JobSource):
    store = tmp_path / "store.db"
    release = threading.Event()
    job_source.reply = Reply(body=json.dumps([job("late")]).encode(), hang=release)
    exporter = ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{store}",
        "--source",
        f"app={job_source.url}",
        "--scrape-interval",
        "0.1",
        "--scrape-timeout",
        "5",
    )
    try:
        wait_until(lambda: job_source.requests >= 1)  # the scrape is waiting on the source
        exporter.process.send_signal(signal.SIGTERM)
        threading.Timer(0.5, release.set).start()  # the source answers after the signal
        started = time.monotonic()
        code = exporter.process.wait(15)
        took = time.monotonic() - started
    finally:
        release.set()
        exporter.kill()
    assert code == 0
    assert took < 10
    counted = open_store(f"sqlite:///{store}")
    try:
        series = counted.snapshot().series[("app", "TASK", "send_email")]
        assert series[("started", "")] == 1  # the answer that came after SIGTERM was stored
    finally:
        counted.close()


SLOW_ROUTE_SERVER = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from exporter.app import create_app
    from exporter.config import Settings
    from exporter.server import bind, serve

    folder = Path(sys.argv[1])
    sock = bind("127.0.0.1", 0)
    (folder / "port").write_text(str(sock.getsockname()[1]))

    def build():
        app = create_app(Settings(store=f"sqlite:///{folder / 'store.db'}"))

        @app.get("/slow")  # a request still running when SIGTERM arrives
        def slow():
            (folder / "in-flight").write_text("yes")
            threading.Event().wait(1.0)
            return {"finished": True}

        return app

    serve(sock, build)
""")


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_ROUTE_SERVER, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    answers: list[requests.Response] = []
    try:
        wait_until(lambda: (tmp_path / "port").exists())
        url = f"http://127.0.0.1:{(tmp_path / 'port').read_text()}/slow"
        wait_until(lambda: _answers(url.replace("/slow", "/healthz")))
        client = threading.Thread(target=lambda: answers.append(requests.get(url, timeout=15)))
        client.start()
        wait_until(lambda: (tmp_path / "in-flight").exists())  # the handler is running now
        process.send_signal(signal.SIGTERM)
        client.join(15)
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert code == 0
    assert len(answers) == 1 and answers[0].status_code == 200
    assert answers[0].json() == {"finished": True}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False
