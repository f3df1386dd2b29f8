"""Apps served in-process over real HTTP on 127.0.0.1, on a real SQLite file, with time and
jitter injected: no scheduler runs, so tests scrape and sweep themselves at chosen times.

ServedApp serves any WSGI app; two fronts serve the exporter's own app: Exporter for the
scrape tests (sources to scrape, a manual clock) and LiveServer for the push and job API
tests (request helpers that assert each step's status).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import make_server

from exporter.app import create_app, runtime_of
from exporter.clock import Clock, ManualClock
from exporter.config import Settings, SourceSettings
from exporter.runtime.process import Runtime
from exporter.sources.scrape import ScrapeResult
from tests.helpers.data import START_MS
from tests.helpers.metrics import Metrics, read_metrics


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


class ServedApp:
    """A WSGI app served by a threaded werkzeug server on 127.0.0.1:`port` (0: any free port)
    until `close()`."""

    def __init__(self, app: Flask, port: int = 0) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="test-server", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, then whatever `stopped()` stops; a second call does nothing."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()
        self.stopped()

    def stopped(self) -> None:
        """Called once the server has stopped."""


class _ExporterApp(ServedApp):
    """The exporter's app: its runtime stops with the server."""

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    def stopped(self) -> None:
        self.runtime.stop()


class Exporter(_ExporterApp):
    """An exporter scraping `JobSource`s when told to (`scrape()`), on `store_path`."""

    def __init__(
        self, store_path: Path, sources: dict[str, str], clock: ManualClock, **settings: Any
    ) -> None:
        self.clock = clock
        self.settings = Settings(
            listen="127.0.0.1:0",
            store=sqlite_url(store_path),
            sources=tuple(SourceSettings(name, url) for name, url in sources.items()),
            **settings,
        )
        super().__init__(create_app(self.settings, clock=clock))
        self.url = self.base_url

    def scrape(self, source: str = "app") -> ScrapeResult:
        return self.runtime.scraper.scrape(source)

    def prune(self) -> int:
        """One run of the retention sweep of tracked jobs (its timer's work)."""
        return self.runtime.sweeper.tracked_jobs()

    def metrics(self) -> Metrics:
        return read_metrics(self.url)


class LiveServer(_ExporterApp):
    """The exporter's app for the push and job API tests, with one requests session."""

    def __init__(self, app: Flask, port: int = 0) -> None:
        super().__init__(app, port)
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()
        super().close()

    @property
    def clock(self) -> Any:
        return self.runtime.clock

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), json=json, timeout=10, **kwargs)

    def metrics(self) -> Metrics:
        """/metrics read for source `api`, where a series not there yet reads 0."""
        response = self.get("/metrics")
        assert response.status_code == 200
        return Metrics(response.text, source="api", missing=0.0)

    # The job API's steps, asserting success: they keep the life-cycle tests readable.

    def create(self, job_type: str = "TASK", name: str = "send_email", **body: Any) -> dict:
        response = self.post("/api/v1/jobs", {"type": job_type, "name": name, **body})
        assert response.status_code == 201, response.text
        return response.json()

    def lease(self, worker: str = "w1", **body: Any) -> dict | None:
        response = self.post("/api/v1/jobs/lease", {"worker": worker, **body})
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    def step(self, job_id: str, action: str, body: Any = None, status: int = 200) -> dict:
        response = self.post(f"/api/v1/jobs/{job_id}/{action}", body)
        assert response.status_code == status, response.text
        return response.json()


@contextmanager
def live_server(
    folder: Path,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    **settings: Any,
) -> Iterator[LiveServer]:
    """The app on `folder`/api.db (unless `store` is given) with a manual clock at START_MS
    unless `clock` is given, served until the block ends."""
    base = Settings(listen="127.0.0.1:0", store=sqlite_url(folder / "api.db"))
    app = create_app(replace(base, **settings), clock=clock or ManualClock(START_MS), rng=rng)
    server = LiveServer(app)
    try:
        yield server
    finally:
        server.close()
