"""SIGTERM lets the scrape in flight finish and store its result, then exits 0 promptly."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from exporter.store import open_store
from tests.fixtures import JobSource, Reply, job, wait_until
from tests.processes import ExporterProcess


def test_sigterm_finishes_the_scrape_in_flight(tmp_path: Path, job_source: JobSource):
    store = tmp_path / "store.db"
    release = threading.Event()
    job_source.reply = Reply(body=json.dumps([job("late")]).encode(), hang=release)
    exporter = ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}",
        "--source", f"app={job_source.url}", "--scrape-interval", "0.1", "--scrape-timeout", "5",
    )  # fmt: skip
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
