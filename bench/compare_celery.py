"""Flower's `/metrics` beside job-exporter's on one Celery workload, for docs/integrations.md.

`python -m bench.compare_celery [--jobs 100]`: a real Redis, a real prefork worker (two
processes) with events on (`-E`, which Flower needs) and the integration, an instrumented
producer, Flower (installed by scripts/setup-bench in a virtual environment of its own;
`FLOWER_VENV` says where) and a job-exporter. The workload: 60% of the jobs succeed, 20%
fail, 20% fail twice, each time asking for a retry, then succeed. Both sides are read once
the work is done, and again after both Flower and the exporter are restarted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from bench.celery import RedisProcess, start_worker
from bench.servers import free_port, stop, wait_for

TASKS = "bench.celery_app"
SETTLE_S = 60


def flower_command() -> str:
    venv = Path(
        os.environ.get("FLOWER_VENV", Path(tempfile.gettempdir(), "job-exporter-bench-flower"))
    )
    celery = venv / "bin" / "celery"
    if not celery.exists():
        raise SystemExit(f"no Flower in {venv}: run scripts/setup-bench")
    return str(celery)


def start_flower(broker: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [flower_command(), "--broker", broker, "flower", "--address=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),  # not the repository: Flower must not import our modules
    )
    wait_for(f"http://127.0.0.1:{port}/healthcheck")
    return process


def start_exporter(store: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{store}",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return process


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(url, timeout=10).text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample, have, value in found
        if sample == name
        and all(have.get(k) == v for k, v in labels.items())
        and have.get("name", have.get("task", TASKS)).startswith(TASKS)
    )


def read_flower(port: int) -> dict[str, float]:
    found = samples(f"http://127.0.0.1:{port}/metrics")
    events = "flower_events_total"
    return {
        kind: total(found, events, type=f"task-{kind}")
        for kind in ("received", "started", "succeeded", "failed", "retried")
    }


def read_ours(port: int) -> dict[str, float]:
    found = samples(f"http://127.0.0.1:{port}/metrics")
    finished = "background_jobs_finished_total"
    return {
        "started": total(found, "background_jobs_started_total"),
        "completed": total(found, finished, outcome="completed"),
        "failed": total(found, finished, outcome="failed"),
        "lost": total(found, finished, outcome="lost"),
        "retries": total(found, "background_jobs_retries_total", trigger="automatic"),
        "pending": total(found, "background_jobs_pending"),
        "running": total(found, "background_jobs_running"),
        "queue_waits": total(found, "background_jobs_queue_wait_seconds_count"),
        "durations": total(found, "background_jobs_duration_seconds_count"),
    }


def settle(read: Callable[[], dict[str, float]], done: Callable[[dict[str, float]], bool]):
    deadline = time.monotonic() + SETTLE_S
    while not done(figures := read()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"did not settle: {figures}")
        time.sleep(0.2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_celery", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    jobs = parser.parse_args().jobs
    succeed, fail = jobs * 6 // 10, jobs * 2 // 10
    retried = jobs - succeed - fail
    folder = Path(tempfile.mkdtemp(prefix="bench-compare-celery-"))
    server = RedisProcess(folder)
    flower_port, exporter_port = free_port(), free_port()
    exporter_url = f"http://127.0.0.1:{exporter_port}"
    flower = exporter = worker = None
    try:
        flower = start_flower(server.url, flower_port)
        exporter = start_exporter(folder / "store.db", exporter_port)
        worker = start_worker(
            server.url, "work", folder / "worker.log", exporter=exporter_url, events=True
        )
        from exporter.integrations.celery import instrument

        producer = Celery("producer", broker=server.url, set_as_current=False)
        producer.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
        instrumentation = instrument(producer, exporter_url, source="bench")
        for name, count in (("succeed", succeed), ("fail", fail), ("retry_twice", retried)):
            for _ in range(count):
                producer.send_task(f"{TASKS}.{name}", queue="work")
        instrumentation.close()
        ours = settle(
            lambda: read_ours(exporter_port),
            lambda f: f["completed"] == succeed + retried and f["failed"] == fail + 2 * retried,
        )
        theirs = settle(
            lambda: read_flower(flower_port),
            lambda f: f["succeeded"] == succeed + retried and f["failed"] == fail,
        )
        stop(flower)
        stop(exporter)
        flower = start_flower(server.url, flower_port)
        exporter = start_exporter(folder / "store.db", exporter_port)
        ours_after, theirs_after = read_ours(exporter_port), read_flower(flower_port)
    finally:
        for process in (worker, flower, exporter):
            if process is not None:
                stop(process)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"workload: {jobs} jobs: {succeed} succeed, {fail} fail, "
        f"{retried} fail twice (retried) then succeed"
    )
    rows = [
        (
            "runs started",
            f"task-started {theirs['started']:g}",
            f"started_total {ours['started']:g}",
        ),
        (
            "succeeded",
            f"task-succeeded {theirs['succeeded']:g}",
            f"finished_total{{outcome=completed}} {ours['completed']:g}",
        ),
        (
            "failed for good",
            f"task-failed {theirs['failed']:g}",
            f"finished_total{{outcome=failed}} - retries_total = {ours['failed']:g}"
            f" - {ours['retries']:g} = {ours['failed'] - ours['retries']:g}",
        ),
        (
            "retried",
            f"task-retried {theirs['retried']:g}",
            f"retries_total{{trigger=automatic}} {ours['retries']:g}",
        ),
        (
            "runs that failed (retried or not)",
            "-",
            f"finished_total{{outcome=failed}} {ours['failed']:g}",
        ),
        ("lost runs", "-", f"finished_total{{outcome=lost}} {ours['lost']:g}"),
        ("pending now", "-", f"background_jobs_pending {ours['pending']:g}"),
        ("queue waits observed", "-", f"queue_wait_seconds_count {ours['queue_waits']:g}"),
        ("durations observed", "-", f"duration_seconds_count {ours['durations']:g}"),
        (
            "after restarting both: succeeded",
            f"task-succeeded {theirs_after['succeeded']:g}",
            f"finished_total{{outcome=completed}} {ours_after['completed']:g}",
        ),
        (
            "after restarting both: retried",
            f"task-retried {theirs_after['retried']:g}",
            f"retries_total {ours_after['retries']:g}",
        ),
    ]
    print("| | Flower `/metrics` (`flower_events_total`) | job-exporter |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    agree = (
        theirs["succeeded"] == ours["completed"]
        and theirs["failed"] == ours["failed"] - ours["retries"]
        and theirs["retried"] == ours["retries"]
        and theirs["started"] == ours["started"]
    )
    print("counts agree" if agree else "COUNTS DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
