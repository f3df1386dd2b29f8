"""Several exporter replicas on one PostgreSQL database count exactly once between them."""

from __future__ import annotations

from tests.fixtures import Metrics, job, wait_until
from tests.processes import ExporterProcess

JOB_FAMILIES = ("background_jobs_started_total", "background_jobs_finished_total",
                "background_jobs_running")  # fmt: skip


def job_samples(metrics: Metrics) -> dict:
    return {key: value for key, value in metrics.samples.items() if key[0] in JOB_FAMILIES}


def totals(metrics: Metrics) -> dict[str, float]:
    result: dict[str, float] = {}
    for (name, labels), value in job_samples(metrics).items():
        key = name + "".join(f"/{v}" for k, v in sorted(labels) if k == "outcome")
        result[key] = result.get(key, 0) + value
    return result


def test_two_replicas_scraping_one_source_count_the_truth_once(postgres_cluster, job_source):
    url = postgres_cluster.new_database()
    running = [job(f"r{n}", name=f"task-{n % 4}") for n in range(50)]
    job_source.serve_jobs(running)
    replicas = [
        ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", url,
                        "--source", f"app={job_source.url}", "--scrape-interval", "0.1")
        for _ in range(2)
    ]  # fmt: skip
    try:

        def agreed(expected: dict[str, float]) -> bool:
            seen = [totals(replica.metrics()) for replica in replicas]
            return all(s == expected for s in seen)

        wait_until(lambda: agreed({
            "background_jobs_started_total": 50, "background_jobs_running": 50,
            "background_jobs_finished_total/completed": 0,
            "background_jobs_finished_total/failed": 0, "background_jobs_finished_total/lost": 0,
        }), timeout=30)  # fmt: skip

        # 20 finish (10 of them failed), 30 new ones start, 5 vanish while running.
        finished = [
            job(item["id"], name=item["name"], finished=True,
                status="failed" if n % 2 else "completed")
            for n, item in enumerate(running[:20])
        ]  # fmt: skip
        newcomers = [job(f"n{n}", name=f"task-{n % 4}") for n in range(30)]
        job_source.serve_jobs(finished + running[20:45] + newcomers)
        wait_until(lambda: agreed({
            "background_jobs_started_total": 80, "background_jobs_running": 55,
            "background_jobs_finished_total/completed": 10,
            "background_jobs_finished_total/failed": 10, "background_jobs_finished_total/lost": 5,
        }), timeout=30)  # fmt: skip
        first, second = (job_samples(replica.metrics()) for replica in replicas)
        assert first == second  # series by series, not only in total
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0]
