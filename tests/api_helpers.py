"""Helpers for the push and job API tests: the real app served over real HTTP on 127.0.0.1,
on a real SQLite file, with time and jitter injected so no test sleeps on a backoff."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from exporter.app import create_app, runtime_of
from exporter.clock import Clock, ManualClock
from exporter.config import Settings
from exporter.runtime.process import Runtime

START_MS = 1_700_000_000_000.0
TOKEN = "s3cret-token"


class FixedRandom(random.Random):
    """A random source whose draws are all `value`: backoff jitter becomes exact."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@dataclass
class LiveServer:
    app: Flask
    base_url: str
    session: requests.Session

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

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
        response = self.get("/metrics")
        assert response.status_code == 200
        return Metrics.parse(response.text)

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


class Metrics:
    """Samples of one /metrics page, looked up by name and labels."""

    def __init__(self, samples: dict[tuple[str, frozenset], float]) -> None:
        self.samples = samples

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def job(
        self, metric: str, job_type: str, job_name: str, source: str = "api", /, **extra: str
    ) -> float:
        """A job family's sample, 0 when the series does not exist yet."""
        labels = {"source": source, "type": job_type, "name": job_name, **extra}
        return self.value(metric, **labels) or 0.0

    def with_label(self, label: str, value: str) -> dict:
        return {key: v for key, v in self.samples.items() if (label, value) in key[1]}


def store_url(folder: Path) -> str:
    return f"sqlite:///{(folder / 'api.db').as_posix()}"


@contextmanager
def live_server(
    folder: Path,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    **settings: Any,
) -> Iterator[LiveServer]:
    """The app served by a threaded werkzeug server on an ephemeral port until the block
    ends; the scheduler is not started, so tests run sweeps themselves at chosen times."""
    base = Settings(listen="127.0.0.1:0", store=store_url(folder))
    app = create_app(replace(base, **settings), clock=clock or ManualClock(START_MS), rng=rng)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="api-test-server", daemon=True
    )
    thread.start()
    session = requests.Session()
    try:
        yield LiveServer(app, f"http://127.0.0.1:{server.server_port}", session)
    finally:
        session.close()
        server.shutdown()
        thread.join(10)
        server.server_close()
        runtime_of(app).stop()


def job_info(job_id: str, start_ms: float, **fields: Any) -> dict[str, Any]:
    """A JobInfoBase object as an app would push it."""
    return {
        "id": job_id,
        "name": fields.pop("name", "send_email"),
        "startTimestamp": start_ms,
        "backgroundJobType": fields.pop("type", "TASK"),
        "isFinished": fields.pop("isFinished", False),
        **fields,
    }
