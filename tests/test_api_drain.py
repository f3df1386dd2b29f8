"""Eight workers drain 1,000 jobs concurrently over real HTTP: every job is completed
exactly once and none is lost, because a lease picks and marks a job in one transaction."""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests

from exporter.clock import SystemClock
from exporter.jobs.queue import JobQueue
from exporter.store.sqlite import SqliteStore
from tests.helpers.served import live_server

JOBS = "/api/v1/jobs"
WORKERS = 8
JOB_COUNT = 1000


def test_eight_workers_drain_a_thousand_jobs_each_exactly_once(
    tmp_path, store_url, record_property
):
    """On SQLite and on PostgreSQL (store_url runs this test on each)."""
    with live_server(tmp_path, clock=SystemClock(), store=store_url) as server:
        created = [
            server.create("TASK", f"job{n % 5}", payload={"n": n})["id"] for n in range(JOB_COUNT)
        ]
        completed: dict[str, list[str]] = {f"w{n}": [] for n in range(WORKERS)}
        errors: list[str] = []
        start = threading.Barrier(WORKERS)

        def work(worker: str) -> None:
            with requests.Session() as session:
                start.wait()
                while True:
                    leased = session.post(
                        server.url(f"{JOBS}/lease"), json={"worker": worker}, timeout=30
                    )
                    if leased.status_code == 204:
                        return
                    if leased.status_code != 200:
                        errors.append(f"lease: {leased.status_code} {leased.text}")
                        return
                    job_id = leased.json()["id"]
                    done = session.post(
                        server.url(f"{JOBS}/{job_id}/complete"),
                        json={"worker": worker, "result": {"by": worker}},
                        timeout=30,
                    )
                    if done.status_code != 200:
                        errors.append(f"complete {job_id}: {done.status_code} {done.text}")
                    completed[worker].append(job_id)

        threads = [threading.Thread(target=work, args=(w,)) for w in completed]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        seconds = time.perf_counter() - began
        record_property("drain_seconds", round(seconds, 3))
        backend = store_url.partition(":")[0]
        print(f"\n{WORKERS} workers drained {JOB_COUNT} jobs in {seconds:.2f} s on {backend}")

        assert not errors
        assert not any(thread.is_alive() for thread in threads)
        times = Counter(job_id for ids in completed.values() for job_id in ids)
        assert len(times) == JOB_COUNT
        assert set(times) == set(created)
        assert max(times.values()) == 1
        assert sum(1 for ids in completed.values() if ids) > 1  # really concurrent

        # The store agrees: every job completed once, by the worker that leased it.
        jobs, cursor = [], None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = server.get(JOBS, params=params).json()
            jobs += page["jobs"]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert len(jobs) == JOB_COUNT
        assert all(job["status"] == "completed" and job["attempts"] == 1 for job in jobs)
        by_worker = {job_id: worker for worker, ids in completed.items() for job_id in ids}
        assert all(job["worker"] == by_worker[job["id"]] for job in jobs)
        assert all(job["result"] == {"by": job["worker"]} for job in jobs)

        metrics = server.metrics()
        for outcome, expected in (("completed", JOB_COUNT), ("failed", 0), ("lost", 0)):
            total = sum(
                metrics.job("background_jobs_finished_total", "TASK", f"job{n}", outcome=outcome)
                for n in range(5)
            )
            assert total == expected, outcome
        for family, expected in (
            ("background_jobs_started_total", JOB_COUNT),
            ("background_jobs_pending", 0),
            ("background_jobs_running", 0),
            ("background_jobs_queue_wait_seconds_count", JOB_COUNT),
            ("background_jobs_duration_seconds_count", JOB_COUNT),
        ):
            assert sum(metrics.job(family, "TASK", f"job{n}") for n in range(5)) == expected


def test_two_stores_on_one_file_never_lease_the_same_job(tmp_path):
    """Two processes' stores (here: two connections' worth each) compete for one file."""
    path = tmp_path / "shared.db"
    stores = [SqliteStore(path), SqliteStore(path)]
    try:
        queues = [JobQueue(store, SystemClock()) for store in stores]
        for n in range(200):
            queues[n % 2].create("TASK", "shared")
        leased: list[str] = []
        lock = threading.Lock()

        def drain(queue: JobQueue, worker: str) -> None:
            while (job := queue.lease(worker)) is not None:
                queue.complete(job.id, worker)
                with lock:
                    leased.append(job.id)

        threads = [threading.Thread(target=drain, args=(queues[n % 2], f"w{n}")) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(leased) == 200
        assert len(set(leased)) == 200
    finally:
        for store in stores:
            store.close()
