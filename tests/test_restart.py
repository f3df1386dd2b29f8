"""A restarted process on the same store file changes no count and goes on counting."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.data import job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

JOB_FAMILIES = ("background_jobs_started_total", "background_jobs_finished_total")


def job_counts(metrics: Metrics) -> dict:
    return {
        key: value
        for key, value in metrics.samples.items()
        if key[0] in JOB_FAMILIES or key[0].startswith("background_jobs_duration_seconds")
    }


def serve(store: Path, source: JobSource) -> ExporterProcess:
    return ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{store}",
        "--source",
        f"app={source.url}",
        "--scrape-interval",
        "0.1",
    )


def scraped(process: ExporterProcess) -> Metrics | None:
    metrics = process.metrics()
    found = metrics.value("job_exporter_source_last_success_timestamp_seconds", source="app")
    return metrics if found is not None else None


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_restart_changes_no_count_and_goes_on_counting(
    tmp_path: Path, job_source: JobSource, stop_signal: signal.Signals
):
    store = tmp_path / "store.db"
    running = [job(f"run-{n}", name=f"task-{n % 3}") for n in range(30)]
    done = [job(f"done-{n}", finished=True, status="failed") for n in range(5)]
    job_source.serve_jobs(running + done)

    first = serve(store, job_source)
    try:
        wait_until(lambda: (m := scraped(first)) and m.job("background_jobs_started_total") == 5)
        before = job_counts(first.metrics())
        exit_code = first.stop(stop_signal)
        assert exit_code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    finally:
        first.kill()

    second = serve(store, job_source)
    try:
        assert job_counts(second.metrics()) == before  # straight from the store
        wait_until(lambda: scraped(second))
        after_scrape = second.metrics()
        assert job_counts(after_scrape) == before  # the same list counts nothing again
        assert after_scrape.job("background_jobs_running", job="task-0") == 10

        finishing = [job(j["id"], name=j["name"], finished=True) for j in running[:10]]
        job_source.serve_jobs(finishing + running[10:] + done)
        finished_total = "background_jobs_finished_total"

        def finished_now() -> float:
            metrics = second.metrics()
            return sum(
                metrics.job(finished_total, job=f"task-{n}", outcome="completed") or 0
                for n in range(3)
            )

        wait_until(lambda: finished_now() == 10)
        metrics = second.metrics()
        assert metrics.job(finished_total, outcome="failed") == 5
        assert sum(metrics.job("background_jobs_running", job=f"task-{n}") for n in range(3)) == 20
    finally:
        assert second.stop() == 0
