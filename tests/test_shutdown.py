"""SIGTERM lets the scrape in flight finish and store its result, then exits 0 promptly:
within 2 s, less than Docker's 10 s grace, whatever the process was waiting on."""

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
from tests.helpers.metrics import Metrics
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


STOP_WITHIN_S = 2.0


def seconds_to_exit(exporter: ExporterProcess) -> tuple[int, float]:
    """SIGTERM, then the exit code and the seconds until the process ended."""
    exporter.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = exporter.process.wait(30)
    return code, time.monotonic() - started


def api_jobs_running(metrics: Metrics) -> float:
    return sum(
        value
        for (name, labels), value in metrics.samples.items()
        if name == "background_jobs_running" and ("source", "api") in labels
    )


def test_the_demo_stops_within_2_s_of_sigterm_while_its_workers_run_jobs(tmp_path: Path):
    """Its workers and its scrape of itself are HTTP clients of the process: each one's
    request must fail at once when the server stops, not wait for its 10 s timeout."""
    demo = ExporterProcess("demo", "--listen", "127.0.0.1:0", "--workers", "8", cwd=tmp_path)
    try:
        wait_until(lambda: api_jobs_running(demo.metrics()) >= 2, timeout=20)
        code, took = seconds_to_exit(demo)
    finally:
        demo.kill()
    assert code == 0, demo.log
    assert took < STOP_WITHIN_S, f"{took:.1f} s:\n{demo.log}"
    assert "job-exporter stopped" in demo.log


def test_serve_stops_within_2_s_of_sigterm_while_a_source_hangs(
    tmp_path: Path, job_source: JobSource
):
    """A scrape waiting on a source that does not answer (for up to its 10 s timeout) is
    given a moment, not its whole timeout."""
    never = threading.Event()
    job_source.reply = Reply(hang=never)
    exporter = ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--source",
        f"app={job_source.url}",
        "--scrape-timeout",
        "10",
    )
    try:
        wait_until(lambda: job_source.requests >= 1)  # the scrape is waiting on the source
        code, took = seconds_to_exit(exporter)
    finally:
        never.set()
        exporter.kill()
    assert code == 0, exporter.log
    assert took < STOP_WITHIN_S, f"{took:.1f} s:\n{exporter.log}"
    assert "job-exporter stopped" in exporter.log
