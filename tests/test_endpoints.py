"""/metrics content negotiation and caching, /healthz, /readyz, and JSON errors."""

from __future__ import annotations

import gzip

import requests

from tests.helpers.data import job
from tests.helpers.metrics import Metrics
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_metrics_text_openmetrics_and_gzip(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    plain = requests.get(f"{exporter.url}/metrics", timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert Metrics(plain.text).job("background_jobs_started_total") == 1

    open_metrics = requests.get(
        f"{exporter.url}/metrics", headers={"Accept": OPENMETRICS}, timeout=5
    )
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")

    raw = requests.get(
        f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert job_lines(gzip.decompress(raw.raw.read()).decode()) == job_lines(plain.text)


def job_lines(text: str) -> list[str]:
    """The page without the process families, which are fresh on every answer."""
    return [line for line in text.splitlines() if "process_" not in line and "python_" not in line]


def test_metrics_bytes_are_reused_until_something_changes(exporter: Exporter, job_source):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    page = exporter.runtime.metrics_page
    (first, _), _ = page.render(None, False)
    (again, _), _ = page.render(None, False)
    assert again is first  # the very same bytes: nothing was rendered again
    job_source.serve_jobs([job("a"), job("b")])
    exporter.scrape()
    (changed, _), _ = page.render(None, False)
    assert changed is not first
    assert Metrics(changed.decode()).job("background_jobs_started_total") == 2


def test_healthz_and_readyz(exporter: Exporter):
    assert requests.get(f"{exporter.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{exporter.url}/readyz", timeout=5).status_code == 200


def test_a_broken_store_is_not_ready_and_metrics_show_the_last_counts(
    exporter: Exporter, job_source
):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    before = exporter.metrics()
    assert before.value("job_exporter_store_up") == 1
    assert before.job("background_jobs_started_total") == 1
    exporter.runtime.store.close()  # every store call now fails
    ready = requests.get(f"{exporter.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["error"] == "the store is unavailable (error)"
    assert "store.db" not in ready.text  # where the store is stays in the log
    metrics = exporter.metrics()  # the last counts read, marked as such
    assert metrics.value("job_exporter_store_up") == 0
    assert metrics.job("background_jobs_started_total") == before.job(
        "background_jobs_started_total"
    )
    failed = metrics.value("job_exporter_store_errors_total")
    assert failed >= 1
    job_source.serve_jobs([job("a"), job("b")])
    result = exporter.scrape()  # a scrape that cannot be stored is reported, not raised
    assert not result.ok and result.reason == "store"
    assert exporter.metrics().value("job_exporter_store_errors_total") > failed


def metrics_version(metrics: Metrics) -> str:
    (version,) = [
        dict(labels)["version"]
        for name, labels in metrics.samples
        if name == "job_exporter_build_info"
    ]
    return version


def test_unknown_routes_and_methods_answer_json(exporter: Exporter):
    missing = requests.get(f"{exporter.url}/nothing-here", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"] and missing.json()["errors"] == []
    wrong = requests.post(f"{exporter.url}/metrics", timeout=5)
    assert wrong.status_code == 405
    assert "error" in wrong.json()
