"""job-exporter's RQ source beside PyPI's rq-exporter, on one RQ workload.

    python -m bench.compare_rq --rq-exporter PATH/TO/rq-exporter [--jobs 100]

Starts a throwaway redis-server, job-exporter reading it (`--source rq=rq+redis://...`),
rq-exporter reading it, and forking `rq worker`s; enqueues a workload of tasks that succeed,
fail, and fail once then succeed under `Retry(max=2)`; waits until RQ has run every job and
both exporters show it; prints one Markdown table of what each exporter counts. rq-exporter
lives in its own virtual environment (it pins its own rq); it is not a dependency of this
project. The tasks are defined here, so the workers import this module: nothing runs on
import.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import free_port, stop, wait_for

if TYPE_CHECKING:
    from redis import Redis

QUEUE = "bench"
TASKS = "bench.compare_rq"  # by name: the workers import this module, never __main__
TASK_SECONDS = 0.3  # long enough for a scrape every 0.1 s to see each run running
SCRAPE_INTERVAL = "0.1"
WORKERS = 4
ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # one /metrics page


def succeed() -> str:
    time.sleep(TASK_SECONDS)  # the workload's own work, not a wait of the benchmark
    return "ok"


def fail() -> None:
    time.sleep(TASK_SECONDS)
    raise ValueError("declined")


def flaky(key: str) -> str:
    """Fails its first run, succeeds on the retry."""
    from rq import get_current_job

    time.sleep(TASK_SECONDS)
    job = get_current_job()
    assert job is not None
    if job.connection.incr(f"bench:flaky:{key}") == 1:
        raise RuntimeError("first run fails")
    return "ok"


def samples(url: str) -> Samples:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value for (metric, have), value in found.items() if metric == name and wanted <= have
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rq-exporter", required=True, help="the rq-exporter command")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the workload")
    args = parser.parse_args()
    failing = args.jobs // 5
    retried = args.jobs // 5
    succeeding = args.jobs - failing - retried

    from redis import Redis
    from rq import Queue, Retry

    folder = Path(tempfile.mkdtemp(prefix="compare-rq-"))
    redis_port, ours_port, theirs_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            _start(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(folder),
                ]
            )
        )
        connection = Redis.from_url(redis_url)
        _wait(lambda: _pings(connection))
        ours = f"http://127.0.0.1:{ours_port}"
        theirs = f"http://127.0.0.1:{theirs_port}"
        processes.append(
            _start(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{ours_port}",
                    "--store",
                    f"sqlite:///{folder / 'store.db'}",
                    "--source",
                    f"rq=rq+{redis_url}",
                    "--scrape-interval",
                    SCRAPE_INTERVAL,
                ]
            )
        )
        processes.append(
            _start(
                [
                    args.rq_exporter,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(theirs_port),
                    "--redis-url",
                    redis_url,
                ]
            )
        )
        wait_for(f"{ours}/metrics")
        wait_for(f"{theirs}/metrics")
        for _ in range(WORKERS):
            processes.append(
                _start([sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, QUEUE])
            )

        queue = Queue(QUEUE, connection=connection)
        started = time.monotonic()
        for number in range(args.jobs):
            if number % 5 == 0 and failing:
                queue.enqueue(f"{TASKS}.fail")
            elif number % 5 == 1 and retried:
                queue.enqueue(f"{TASKS}.flaky", str(number), retry=Retry(max=2))
            else:
                queue.enqueue(f"{TASKS}.succeed")
        runs = args.jobs + retried

        def counted() -> bool:
            found = samples(ours)
            return total(found, "background_jobs_finished_total") == runs

        _wait(counted, timeout=120)
        _wait(lambda: total(samples(theirs), "rq_jobs", status="finished") == succeeding + retried)
        elapsed = time.monotonic() - started
        print(_table(samples(ours), samples(theirs), args.jobs, succeeding, failing, retried))
        print(
            f"\n{args.jobs} jobs, {WORKERS} workers, {elapsed:.1f} s; "
            f"job-exporter scraping every {SCRAPE_INTERVAL} s"
        )
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _table(
    ours: Samples, theirs: Samples, jobs: int, succeeding: int, failing: int, retried: int
) -> str:
    finished = "background_jobs_finished_total"
    rows = [
        ("jobs enqueued", jobs, "-", "-"),
        (
            "runs started",
            succeeding + failing + 2 * retried,
            total(ours, "background_jobs_started_total"),
            "-",
        ),
        (
            "runs succeeded",
            succeeding + retried,
            total(ours, finished, outcome="completed"),
            total(theirs, "rq_workers_success_total"),
        ),
        (
            "runs failed (incl. retried ones)",
            failing + retried,
            total(ours, finished, outcome="failed"),
            total(theirs, "rq_workers_failed_total"),
        ),
        (
            "retries",
            retried,
            total(ours, "background_jobs_retries_total"),
            total(theirs, "rq_workers_failed_total") - total(theirs, "rq_jobs", status="failed"),
        ),
        (
            "jobs finished (registry now)",
            succeeding + retried,
            "-",
            total(theirs, "rq_jobs", status="finished"),
        ),
        ("jobs failed (registry now)", failing, "-", total(theirs, "rq_jobs", status="failed")),
        (
            "durations observed",
            succeeding + failing + 2 * retried,
            total(ours, "background_jobs_duration_seconds_count"),
            "-",
        ),
        (
            "queue waits observed",
            jobs,
            total(ours, "background_jobs_queue_wait_seconds_count"),
            "-",
        ),
    ]
    lines = ["| count | expected | job-exporter | rq-exporter |", "|---|---:|---:|---:|"]
    for label, expected, mine, other in rows:
        lines.append(f"| {label} | {expected} | {_number(mine)} | {_number(other)} |")
    return "\n".join(lines)


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _pings(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except Exception:
        return False


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done within {timeout} s")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
