"""Dramatiq's messages counted per run through the middleware (docs/contract.md §2, §6).

Everything is real: a Redis broker, a `job-exporter serve` process, and `dramatiq` worker
processes (two forked processes of two threads for the module) running
`tests/apps/dramatiq_actors.py`, whose broker has the middleware as a user's would. The tests
send from this process through a broker that has the middleware too, as a web app would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from exporter.integrations.dramatiq import JobExporterMiddleware
from tests.apps.workers import WorkerProcess
from tests.helpers.metrics import run_counts, tracked_runs
from tests.helpers.processes import ExporterProcess
from tests.helpers.redis import RedisServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

BROKER_DB = 2
ACTORS = "tests.apps.dramatiq_actors"
READY = re.compile(r"Worker process is ready for action")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    store = tmp_path_factory.mktemp("dramatiq-exporter") / "store.db"
    process = ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def broker_url(redis_server: RedisServer) -> str:
    return redis_server.url(BROKER_DB)


@pytest.fixture(scope="module")
def producer(broker_url: str, exporter: ExporterProcess) -> Iterator[RedisBroker]:
    """The sending side: a broker with the middleware and no actors of its own."""
    broker = RedisBroker(url=broker_url)
    middleware = JobExporterMiddleware(exporter.url, source="dramatiq", flush_interval=0.05)
    broker.add_middleware(middleware)
    yield broker
    middleware.reporter.close(2)
    broker.close()


def start_worker(
    queue: str, broker_url: str, exporter: ExporterProcess, *, flush_interval: float = 0.05
) -> WorkerProcess:
    return WorkerProcess(
        "dramatiq",
        ACTORS,
        "--processes",
        "2",
        "--threads",
        "2",
        "--queues",
        queue,
        env={
            "TEST_DRAMATIQ_BROKER": broker_url,
            "TEST_EXPORTER_URL": exporter.url,
            "TEST_FLUSH_INTERVAL": str(flush_interval),
        },
        ready=READY,
    )


@pytest.fixture(scope="module")
def worker(broker_url: str, exporter: ExporterProcess) -> Iterator[WorkerProcess]:
    process = start_worker("work", broker_url, exporter)
    yield process
    process.stop()


def send(broker: RedisBroker, actor: str, *args: Any, queue: str = "work") -> str:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=args, kwargs={}, options={}
    )
    return broker.enqueue(message).message_id


def counts(exporter: ExporterProcess, actor: str, queue: str = "work") -> dict[str, float | None]:
    return run_counts(exporter.metrics(), "dramatiq", queue, actor)


def runs_of(exporter: ExporterProcess, job_id: str) -> list[dict[str, Any]]:
    return tracked_runs(exporter.url, "dramatiq", job_id)


def test_succeeding_messages_count_one_run_each(worker, producer, exporter):
    for n in range(4):
        send(producer, "add", n, n)

    found = wait_until(lambda: (c := counts(exporter, "add"))["completed"] == 4 and c, timeout=30)
    assert found["started"] == 4
    assert found["failed"] in (None, 0)
    assert found["durations"] == 4
    assert found["queue_waits"] == 4  # from each message's own timestamp
    assert found["running"] in (None, 0)
    assert found["pending"] in (None, 0)


def test_a_failure_without_retries_counts_failed_with_its_error(worker, producer, exporter):
    job_id = send(producer, "fail", "quota exceeded")

    found = wait_until(lambda: (c := counts(exporter, "fail"))["failed"] == 1 and c, timeout=30)
    assert found["started"] == 1
    assert found["completed"] in (None, 0)
    assert found["retries"] in (None, 0)
    runs = wait_until(lambda: runs_of(exporter, job_id), timeout=10)
    assert [run["status"] for run in runs] == ["failed"]
    assert runs[0]["error"] == "tests.apps.dramatiq_actors.Boom: quota exceeded"


def test_retries_then_success_count_each_run(worker, producer, exporter, tmp_path: Path):
    job_id = send(producer, "flaky", str(tmp_path), "flaky", 2)

    found = wait_until(
        lambda: (c := counts(exporter, "flaky"))["completed"] == 1 and c["retries"] == 2 and c,
        timeout=30,
    )
    assert found["started"] == 3
    assert found["failed"] == 2
    assert found["durations"] == 3
    assert found["queue_waits"] == 1
    [entry] = runs_of(exporter, job_id)  # the job as its latest run left it
    assert (entry["attempt"], entry["status"]) == (3, "completed")


def test_a_run_ended_by_a_retry_counts_at_once_while_the_job_waits(worker, producer, exporter):
    """`retrying` ends the run and counts the retry straight away; the job then waits for
    its next run as pending, with the error its run gave."""
    job_id = send(producer, "retry_later", "try again later")

    found = wait_until(lambda: (c := counts(exporter, "retry_later"))["retries"] == 1 and c, 30)
    assert (found["started"], found["failed"], found["running"]) == (1, 1, 0)
    [entry] = runs_of(exporter, job_id)
    assert (entry["attempt"], entry["status"]) == (1, "pending")
    assert entry["error"] == "tests.apps.dramatiq_actors.Boom: try again later"


def test_retries_exhausted_end_in_a_failed_run(worker, producer, exporter):
    """max_retries=2: two runs end retrying, the third fails for good (Retries fails it)."""
    job_id = send(producer, "always_fails", "no luck")

    found = wait_until(lambda: (c := counts(exporter, "always_fails"))["failed"] == 3 and c, 30)
    assert found["started"] == 3
    assert found["retries"] == 2
    assert found["completed"] in (None, 0)
    [entry] = runs_of(exporter, job_id)
    assert (entry["attempt"], entry["status"]) == (3, "failed")
    assert entry["error"] == "tests.apps.dramatiq_actors.Boom: no luck"


def test_a_slow_message_is_running_until_it_ends(worker, producer, exporter, tmp_path: Path):
    send(producer, "hold", str(tmp_path), "slow")
    wait_until(lambda: (tmp_path / "slow.started").exists(), timeout=30)

    wait_until(lambda: counts(exporter, "hold")["running"] == 1, timeout=10)
    assert counts(exporter, "hold")["started"] == 1

    (tmp_path / "slow.release").touch()
    found = wait_until(lambda: (c := counts(exporter, "hold"))["completed"] == 1 and c, 30)
    assert found["running"] == 0
    assert found["durations"] == 1


def test_pending_until_a_worker_takes_it_and_delivered_by_the_shutdown_flush(
    producer, exporter, broker_url
):
    """Sent to a queue no worker reads: pending. Then a worker whose reporter sends only
    once an hour runs them, so what arrives was flushed by `after_worker_shutdown`."""
    for n in range(2):
        send(producer, "later", n, queue="parked")
    wait_until(lambda: counts(exporter, "later", "parked")["pending"] == 2, timeout=10)
    assert counts(exporter, "later", "parked")["started"] in (None, 0)

    worker = start_worker("parked", broker_url, exporter, flush_interval=3600)
    try:
        # Acked messages leave the queue's hash: then both have run.
        wait_until(lambda: queued(broker_url, "parked") == 0, timeout=30)
    finally:
        assert worker.stop() == 0
    found = counts(exporter, "later", "parked")
    assert (found["started"], found["completed"], found["pending"]) == (2, 2, 0)
    assert found["queue_waits"] == 2


def queued(broker_url: str, queue: str) -> int:
    """Messages of `queue` still in the broker: enqueued and not yet acked."""
    with redis.Redis.from_url(broker_url) as client:
        return int(client.hlen(f"dramatiq:{queue}.msgs"))
