"""A NUL character in any input is a 400 naming the field, on both stores.

Found by probing the PostgreSQL store after fuzzing: PostgreSQL text cannot hold NUL, so
such a value reached the store and came back as a 503 "store unavailable" (and a source
sending one failed its whole scrape), while SQLite took it. Refusing NUL at the edge keeps
both stores alike and keeps one hostile value from spoiling a scrape or a push.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers.data import job
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

NUL = "\x00"
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("GET", "/api/v1/jobs", {"params": {"type": f"a{NUL}b"}}, "type"),
    ("GET", "/api/v1/jobs", {"params": {"name": NUL}}, "name"),
    ("GET", "/api/v1/jobinfo", {"params": {"source": f"a{NUL}"}}, "source"),
    ("GET", "/api/v1/jobs/a%00b", {}, "id"),
    ("POST", "/api/v1/jobs/a%00b/complete", {"json": {"worker": "w"}}, "id"),
    ("POST", "/api/v1/jobs", {"json": {"type": f"T{NUL}", "name": "x"}}, "type"),
    ("POST", "/api/v1/jobs/lease", {"json": {"worker": f"w{NUL}"}}, "worker"),
    ("POST", "/api/v1/jobs/lease", {"json": {"worker": "w", "types": ["T", NUL]}}, "types"),
    (
        "POST",
        "/api/v1/push",
        {"json": [job("ok"), job(f"id{NUL}"), job("n", name=NUL), job("t", type=f"T{NUL}")]},
        "id",
    ),
]


@pytest.fixture
def served(store_url: str, job_source: JobSource) -> Iterator[ExporterProcess]:
    process = ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_url,
        "--source",
        f"app={job_source.url}",
        "--scrape-interval",
        "0.1",
    )
    yield process
    assert process.stop() == 0, process.log


def test_nul_in_any_input_is_a_400_naming_the_field(served: ExporterProcess):
    for method, path, kwargs, field in CASES:
        response = requests.request(method, served.url + path, timeout=10, **kwargs)
        assert response.status_code == 400, (path, kwargs, response.status_code, response.text)
        fields = [error["field"] for error in response.json()["errors"]]
        assert field in fields, (path, fields)
    push = requests.post(served.url + "/api/v1/push", json=CASES[-1][2]["json"], timeout=10)
    by_index = {error["index"]: error["field"] for error in push.json()["errors"]}
    assert by_index == {1: "id", 2: "name", 3: "backgroundJobType"}
    assert requests.get(served.url + "/readyz", timeout=10).status_code == 200
    assert "unexpected error" not in served.log


def test_a_source_sending_nul_loses_only_that_item(served: ExporterProcess, job_source: JobSource):
    job_source.reply.body = json.dumps([job("good"), job("bad", name=f"x{NUL}")]).encode()

    def scraped():
        metrics = served.metrics()
        invalid = metrics.value("job_exporter_invalid_jobs_total", source="app", field="name")
        return metrics if invalid else None

    metrics = wait_until(scraped)
    assert metrics.value("job_exporter_source_up", source="app") == 1
    assert metrics.job("background_jobs_started_total") == 1
