"""Several exporter replicas on one PostgreSQL database count exactly once between them."""

from __future__ import annotations

import pytest

from tests.helpers.data import job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

JOB_FAMILIES = (
    "background_jobs_started_total",
    "background_jobs_finished_total",
    "background_jobs_running",
)


def job_samples(metrics: Metrics) -> dict:
    return {key: value for key, value in metrics.samples.items() if key[0] in JOB_FAMILIES}


def totals(metrics: Metrics) -> dict[str, float]:
    result: dict[str, float] = {}
    for (name, labels), value in job_samples(metrics).items():
        key = name + "".join(f"/{v}" for k, v in sorted(labels) if k == "outcome")
        result[key] = result.get(key, 0) + value
    return result


def serve(url: str, source: JobSource, interval_s: float = 0.1) -> ExporterProcess:
    """A replica of `serve` on store `url`, scraping `source` as `app`."""
    return ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
        "--source",
        f"app={source.url}",
        "--scrape-interval",
        str(interval_s),
    )


def expected(started: int, running: int, completed: int, failed: int, lost: int) -> dict:
    return {
        "background_jobs_started_total": started,
        "background_jobs_running": running,
        "background_jobs_finished_total/completed": completed,
        "background_jobs_finished_total/failed": failed,
        "background_jobs_finished_total/lost": lost,
    }


def test_two_replicas_scraping_one_source_count_the_truth_once(postgres_cluster, job_source):
    url = postgres_cluster.new_database()
    running = [job(f"r{n}", name=f"task-{n % 4}") for n in range(50)]
    job_source.serve_jobs(running)
    replicas = [serve(url, job_source)]
    try:

        def agreed(wanted: dict) -> bool:
            return all(totals(replica.metrics()) == wanted for replica in replicas)

        wait_until(lambda: agreed(expected(50, 50, 0, 0, 0)), timeout=30)
        # The second replica starts from an up-to-date store, so its index is right until
        # the first replica applies the next change: then the second must notice it is stale.
        replicas.append(serve(url, job_source))
        wait_until(lambda: agreed(expected(50, 50, 0, 0, 0)), timeout=30)

        # 20 finish (10 of them failed), and nothing else changes.
        finished = [
            job(
                item["id"],
                name=item["name"],
                finished=True,
                status="failed" if n % 2 else "completed",
            )
            for n, item in enumerate(running[:20])
        ]
        job_source.serve_jobs(finished + running[20:])
        wait_until(lambda: agreed(expected(50, 30, 10, 10, 0)), timeout=30)

        # 30 new ones start and 5 vanish while running.
        newcomers = [job(f"n{n}", name=f"task-{n % 4}") for n in range(30)]
        job_source.serve_jobs(finished + running[20:45] + newcomers)
        wait_until(lambda: agreed(expected(80, 55, 10, 10, 5)), timeout=30)
        first, second = (job_samples(replica.metrics()) for replica in replicas)
        assert first == second  # series by series, not only in total
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0]
