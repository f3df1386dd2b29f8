"""Trivial Celery tasks per second through a real prefork worker (concurrency 2) on a real
Redis broker, three ways taking turns in one run: uninstrumented, instrumented (a real
exporter receiving), and uninstrumented with Celery's events on (`-E`, what celery-exporter
and Flower need). The instrumented worker must keep 95% of the plain one's rate."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import Result
from bench.servers import free_port, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent
MODES = ("plain", "instrumented", "events")
TASK = "bench.celery_app.tick"
RUN_LIMIT_S = 300


class RedisProcess:
    """Debian's redis-server on 127.0.0.1, with no persistence."""

    def __init__(self, folder: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (scripts/setup installs it)")
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                *(server, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(folder)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.process)


def start_exporter(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "exporter", "serve", "--listen", f"127.0.0.1:{port}"),
            *("--store", f"sqlite:///{folder / 'bench.db'}", "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/healthz")
    return process, url


def start_worker(
    broker: str, queue: str, log: Path, *, exporter: str | None = None, events: bool = False
) -> subprocess.Popen:
    """`celery worker` on the prefork pool, two processes, reading only `queue`."""
    env = {"BENCH_CELERY_BROKER": broker, **({"BENCH_EXPORTER_URL": exporter} if exporter else {})}
    command = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"]
    command += ["--pool", "prefork", "--concurrency", "2", "--queues", queue]
    command += ["--hostname", f"{queue}@bench", "--without-gossip", "--without-mingle"]
    command += ["--without-heartbeat", "--loglevel", "warning", *(["-E"] if events else [])]
    with log.open("a") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **env},
        )


def one_run(broker: str, mode: str, tasks: int, exporter: str, log: Path) -> float:
    """Queue `tasks` ticks, then start a worker on them: its rate, first run to last."""
    from celery import Celery

    queue = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    key = f"ticks:{queue}"
    producer = Celery("bench-producer", broker=broker, set_as_current=False)
    producer.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
    with producer.producer_or_acquire() as publisher:
        for _ in range(tasks):
            producer.send_task(TASK, args=(tasks, key), queue=queue, producer=publisher)
    producer.close()
    worker = start_worker(
        broker,
        queue,
        log,
        exporter=exporter if mode == "instrumented" else None,
        events=mode == "events",
    )
    client = redis.Redis.from_url(broker)
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        while (last := client.get(f"{key}:last")) is None:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{mode} worker did not finish:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        first = float(client.get(f"{key}:first") or 0)
        return (tasks - 1) / (float(last) - first)
    finally:
        stop(worker)
        client.close()


def counted(exporter: str, name: str, outcome: str = "completed") -> float:
    """The exporter's finished total for a bench task, summed over queues."""
    text = requests.get(f"{exporter}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "background_jobs_finished_total"
                and labels.get("name") == name
                and labels.get("outcome") == outcome
            ):
                total += sample.value
    return total


def run(quick: bool) -> list[Result]:
    tasks, rounds = (2000, 2) if quick else (10_000, 4)
    folder = Path(tempfile.mkdtemp(prefix="bench-celery-"))
    server = RedisProcess(folder)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    exporter = None
    try:
        exporter, exporter_url = start_exporter(folder)
        for turn in range(rounds):
            # Rotate the order, so no side always runs first (or last) in a round.
            for mode in MODES[turn % 3 :] + MODES[: turn % 3]:
                rate = one_run(server.url, mode, tasks, exporter_url, folder / "worker.log")
                rates[mode].append(rate)
                print(f"  {mode}: {rate:.0f} tasks/s", flush=True)
        expected = tasks * rounds
        deadline = time.monotonic() + 30
        while (seen := counted(exporter_url, TASK)) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the exporter counted {seen:g} of {expected} instrumented runs")
            time.sleep(0.2)
        if seen != expected:
            raise RuntimeError(f"the exporter counted {seen:g} runs, not {expected}")
    finally:
        if exporter is not None:
            stop(exporter)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    plain, instrumented, events = (statistics.median(rates[mode]) for mode in MODES)
    return [
        Result(
            "celery_instrumented",
            f"trivial tasks/s, prefork worker of 2 on Redis, instrumented ({tasks} per run)",
            instrumented,
            plain,
            "the same worker uninstrumented",
            "tasks/s",
            0.95,
            at_most=False,
            note=(
                f"uninstrumented with Celery events on (-E, what celery-exporter and Flower "
                f"need): {events:.0f} tasks/s, {events / plain:.2f}x; medians of {rounds} "
                f"turns each; the exporter counted all {expected} instrumented runs"
            ),
        )
    ]
