"""GET /metrics at 2,000 (type, name) pairs: right after a change, and with nothing changed."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import requests
from prometheus_client import generate_latest
from werkzeug.serving import make_server

from bench.baseline import equivalent_registry
from bench.data import START_MS, encode, pair_jobs
from bench.harness import Result, median_seconds
from bench.servers import StaticSource
from exporter.app import create_app, runtime_of
from exporter.clock import ManualClock
from exporter.config import Settings, SourceSettings

PAIRS = 2000


def run(quick: bool) -> list[Result]:
    repeat = 5 if quick else 15
    jobs = pair_jobs(PAIRS)
    source = StaticSource(encode(jobs))
    folder = tempfile.TemporaryDirectory()
    settings = Settings(
        store=f"sqlite:///{Path(folder.name, 'bench.db')}",
        sources=(SourceSettings("app", source.url),),
        max_series_per_source=PAIRS + 10,
    )
    app = create_app(settings, clock=ManualClock(START_MS + 60_000))
    runtime = runtime_of(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    session = requests.Session()
    try:
        if not runtime.scraper.scrape("app").ok:
            raise RuntimeError("the benchmark source could not be scraped")
        exposition = session.get(url, timeout=30).text
        if exposition.count("background_jobs_started_total{") != PAIRS:
            raise RuntimeError("the exporter does not show one series per pair")
        running = iter([job for job in jobs if not job["isFinished"]])

        def change() -> None:  # one more job finishes, then the exporter scrapes it
            next(running)["isFinished"] = True
            source.body = encode(jobs)
            runtime.scraper.scrape("app")

        after_change = median_seconds(lambda: session.get(url, timeout=30), repeat, setup=change)
        session.get(url, timeout=30)
        unchanged = median_seconds(lambda: session.get(url, timeout=30), repeat * 4)
        registry = equivalent_registry(exposition)
        baseline = median_seconds(lambda: generate_latest(registry), repeat)
    finally:
        server.shutdown()
        runtime.stop()
        source.close()
        folder.cleanup()
    what = f"GET /metrics, {PAIRS} pairs, {exposition.count(chr(10))} lines"
    base = "prometheus_client generate_latest, same series"
    return [
        Result(
            "metrics_after_change",
            f"{what}, right after a change",
            after_change * 1000,
            baseline * 1000,
            base,
            "ms",
            0.8,
            at_most=True,
        ),
        Result(
            "metrics_unchanged",
            f"{what}, nothing changed",
            unchanged * 1000,
            baseline * 1000,
            base,
            "ms",
            0.05,
            at_most=True,
        ),
    ]
