"""Exemplars end to end: a real Prometheus stores the job ids a real exporter serves.

Starts `python -m exporter serve` and Debian's `prometheus --enable-feature=exemplar-storage`
scraping it every second (Prometheus asks for OpenMetrics first, the one format with
exemplars), once for the module. A pushed job and a job-API run then come back from
`/api/v1/query_exemplars` on the bucket their duration fell in.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers.processes import ExporterProcess
from tests.helpers.prometheus import prometheus_server, scraping
from tests.helpers.waiting import poll

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # bounds each wait; a scrape a second answers within a few


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("exporter")
    served = ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{folder / 'store.db'}"
    )
    try:
        yield served.url
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            served.stop(timeout=10)
        served.kill()


@pytest.fixture(scope="module")
def prometheus(exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    config = scraping("job-exporter", [exporter])
    with prometheus_server(folder, config, "--enable-feature=exemplar-storage") as url:
        yield url


def stored_exemplars(prometheus: str, metric: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every exemplar Prometheus keeps of `metric`'s buckets: (series labels, exemplar)."""
    now = time.time()
    response = requests.get(
        f"{prometheus}/api/v1/query_exemplars",
        params={"query": metric, "start": now - 600, "end": now + 60},
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return [
        (series["seriesLabels"], exemplar)
        for series in body["data"]
        for exemplar in series["exemplars"]
    ]


def wait_for_exemplar(prometheus: str, metric: str, job_id: str):
    """The (series labels, exemplar) Prometheus stored for `job_id`, polled until scraped."""
    found = poll(
        lambda: [
            (labels, exemplar)
            for labels, exemplar in stored_exemplars(prometheus, metric)
            if exemplar["labels"].get("job_id") == job_id
        ],
        timeout=DEADLINE,
        step=0.2,
    )
    assert found, f"no exemplar of {job_id!r} on {metric}: {stored_exemplars(prometheus, metric)}"
    return found[-1]


def test_a_pushed_job_comes_back_from_query_exemplars(exporter: str, prometheus: str):
    """Its id as pushed, on its bucket, observed when pushed. An id with a character
    OpenMetrics escapes, pushed with it, never reaches Prometheus: Prometheus would keep
    it escaped, and so hand dashboards another id."""
    start_ms = time.time() * 1000 - 10_000
    job_id = "push-größe-1"

    def item(job_id: str, seconds: float) -> dict[str, Any]:
        return {
            "id": job_id,
            "name": "resize",
            "startTimestamp": start_ms,
            "finishTimestamp": start_ms + seconds * 1000,
            "backgroundJobType": "TASK",
            "isFinished": True,
        }

    pushed_at = time.time()
    jobs = [item(job_id, 2), item('say "hi"', 20)]  # 2 s: the le="2.5" bucket; 20 s: 30.0
    response = requests.post(f"{exporter}/api/v1/push?source=live", json=jobs, timeout=10)
    assert response.status_code == 202, response.text
    metric = "background_jobs_duration_seconds_bucket"
    labels, exemplar = wait_for_exemplar(prometheus, metric, job_id)
    assert labels["source"] == "live" and labels["name"] == "resize"
    assert labels["le"] == "2.5"
    assert float(exemplar["value"]) == 2.0
    assert pushed_at - 1 <= exemplar["timestamp"] <= time.time()  # observed when pushed
    # Both were on every page that had the first: none had an exemplar for the second.
    stored = stored_exemplars(prometheus, metric)
    assert [one["labels"]["job_id"] for labels, one in stored if labels["source"] == "live"] == [
        job_id
    ]


def test_a_job_api_run_comes_back_from_query_exemplars(exporter: str, prometheus: str):
    created = requests.post(
        f"{exporter}/api/v1/jobs", json={"type": "EMAIL", "name": "welcome"}, timeout=10
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    leased = requests.post(
        f"{exporter}/api/v1/jobs/lease", json={"worker": "w1", "types": ["EMAIL"]}, timeout=10
    )
    assert leased.status_code == 200 and leased.json()["id"] == job_id
    done = requests.post(f"{exporter}/api/v1/jobs/{job_id}/complete", json={"worker": "w1"})
    assert done.status_code == 200, done.text
    for metric in (
        "background_jobs_duration_seconds_bucket",
        "background_jobs_queue_wait_seconds_bucket",
    ):
        labels, exemplar = wait_for_exemplar(prometheus, metric, job_id)
        assert (labels["source"], labels["type"], labels["name"]) == ("api", "EMAIL", "welcome")
        assert float(exemplar["value"]) <= float(labels["le"])
