"""Fixtures shared by the test modules: a controllable job source and a served exporter.

Both talk real HTTP on 127.0.0.1. The exporter runs in-process with a manual clock and a
real SQLite file, and its scrapes are triggered by the test (no scheduler, no sleeping), so
every count can be checked exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from exporter.app import create_app, runtime_of
from exporter.clock import ManualClock
from exporter.config import Settings, SourceSettings
from exporter.sources.scrape import ScrapeResult
from tests.postgres_cluster import PostgresCluster

START_MS = 1_700_000_000_000.0


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
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                source.requests += 1
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jobs"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def serve_jobs(self, jobs: list[dict[str, Any]]) -> None:
        self.reply = Reply(body=json.dumps(jobs).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def job(
    job_id: str,
    *,
    name: str = "send_email",
    type: str = "TASK",
    start_ms: float = START_MS,
    finished: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A JobInfoBase item; extra keyword arguments become extension fields."""
    item = {
        "id": job_id,
        "name": name,
        "startTimestamp": start_ms,
        "backgroundJobType": type,
        "isFinished": finished,
    }
    item.update(extra)
    return item


class Metrics:
    """One read of /metrics, with samples looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def job(
        self,
        metric: str,
        /,
        source: str = "app",
        type: str = "TASK",
        job: str = "send_email",
        **labels: str,
    ) -> float | None:
        """A job family's sample; `job` is the job's name label."""
        return self.value(metric, source=source, type=type, name=job, **labels)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


class Exporter:
    """An exporter app served over real HTTP, scraping `JobSource`s when told to."""

    def __init__(
        self, store_path: Path, sources: dict[str, str], clock: ManualClock, **settings: Any
    ) -> None:
        self.clock = clock
        self.settings = Settings(
            listen="127.0.0.1:0",
            store=f"sqlite:///{store_path}",
            sources=tuple(SourceSettings(name, url) for name, url in sources.items()),
            **settings,
        )
        self.app = create_app(self.settings, clock=clock)
        self.runtime = runtime_of(self.app)
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def scrape(self, source: str = "app") -> ScrapeResult:
        return self.runtime.scraper.scrape(source)

    def metrics(self) -> Metrics:
        response = requests.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return Metrics(response.text)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self.runtime.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def job_source() -> Iterator[JobSource]:
    source = JobSource()
    yield source
    source.close()


@pytest.fixture
def make_exporter(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., Exporter]]:
    """Build exporters on one store file; several in turn model restarts of one process."""
    made: list[Exporter] = []

    def make(sources: dict[str, str], **settings: Any) -> Exporter:
        exporter = Exporter(tmp_path / "store.db", sources, clock, **settings)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()


@pytest.fixture
def exporter(make_exporter: Callable[..., Exporter], job_source: JobSource) -> Exporter:
    return make_exporter({"app": job_source.url})


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def require_tool(name: str) -> str:
    """The path of a command the tests drive for real; a missing one fails, never skips."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; scripts/setup installs it")
    return path


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session; each test takes a new database."""
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind: a SQLite file, and a database on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()
