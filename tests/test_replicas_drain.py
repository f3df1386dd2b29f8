"""Two replicas on one PostgreSQL, eight workers each, draining 5,000 jobs: each job is
completed exactly once, and killing one replica mid-drain loses no job."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from exporter.client import Worker
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

JOBS = 5000
WORKERS_PER_REPLICA = 8


def serve(url: str) -> ExporterProcess:
    return ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
        "--backoff-base",
        "0.1",
        "--backoff-cap",
        "0.5",
        "--threads",
        "16",
    )


def api_totals(metrics: Metrics) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (name, labels), value in metrics.samples.items():
        label_map = dict(labels)
        if label_map.get("source") != "api":
            continue
        key = name + (f"/{label_map['outcome']}" if "outcome" in label_map else "")
        totals[key] = totals.get(key, 0) + value
    return totals


def create_jobs(urls: list[str]) -> None:
    sessions = [requests.Session() for _ in urls]

    def create(n: int) -> None:
        response = sessions[n % len(urls)].post(
            f"{urls[n % len(urls)]}/api/v1/jobs",
            json={"type": "WORK", "name": f"step-{n % 5}", "payload": {"n": n}},
            timeout=30,
        )
        response.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(JOBS)))


def test_two_replicas_drain_5000_jobs_exactly_once_even_when_one_dies(postgres_cluster):
    url = postgres_cluster.new_database()
    replicas = [serve(url), serve(url)]
    handled: list[int] = []
    lock = threading.Lock()

    pause = threading.Event()  # never set: each run takes 20 ms, so leases are held at the kill

    def work(payload: dict) -> None:
        pause.wait(0.02)
        with lock:
            handled.append(payload["n"])

    workers = [
        Worker(
            replica.url,
            {"WORK": work},
            name=f"r{r}-w{n}",
            lease_seconds=2,
            poll_interval=0.05,
            max_poll_interval=0.2,
            timeout=5,
        )
        for r, replica in enumerate(replicas)
        for n in range(WORKERS_PER_REPLICA)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    try:
        create_jobs([replica.url for replica in replicas])
        for thread in threads:
            thread.start()
        wait_until(lambda: len(handled) >= JOBS // 3, timeout=60)
        replicas[0].process.send_signal(signal.SIGKILL)  # mid-drain, leases in hand
        replicas[0].process.wait(10)
        survivor = replicas[1]

        def drained() -> dict[str, float] | None:
            totals = api_totals(survivor.metrics())
            done = totals.get("background_jobs_finished_total/completed", 0) == JOBS
            idle = totals.get("background_jobs_pending", 0) == 0
            idle = idle and totals.get("background_jobs_running", 0) == 0
            return totals if done and idle else None

        totals = wait_until(drained, timeout=120, step=0.2)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(10)
        codes = [replica.stop() for replica in replicas]
    assert codes[1] == 0
    # Completing a job twice is refused (409), so 5,000 completions of 5,000 jobs means each
    # exactly once; every job's handler ran, and runs cut short by the kill were counted.
    assert totals["background_jobs_finished_total/completed"] == JOBS
    assert set(handled) == set(range(JOBS))
    assert totals["background_jobs_finished_total/lost"] >= 1  # the kill did cut runs short
    assert totals["background_jobs_started_total"] == JOBS + totals.get(
        "background_jobs_finished_total/lost", 0
    ) + totals.get("background_jobs_finished_total/failed", 0)
