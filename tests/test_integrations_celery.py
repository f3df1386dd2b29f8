"""Celery's tasks counted per run through the integration (docs/contract.md §2, §6).

Everything is real: a Redis broker, a `job-exporter serve` process, `celery worker`
processes on the prefork pool (one for the module), and on `solo` and `threads`, with the
task module `tests/apps/celery_tasks.py` instrumented as a user's would be. The tests publish
from this process through an instrumented producer app, as a web app would.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from exporter.integrations.celery import Instrumentation, instrument
from tests.apps.workers import WorkerProcess
from tests.helpers.metrics import run_counts, tracked_runs
from tests.helpers.processes import ExporterProcess, free_port
from tests.helpers.redis import RedisServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

BROKER_DB = 1
TASKS = "tests.apps.celery_tasks"
READY = re.compile(r"ready\.")
LOST_WITHIN_S = 120  # the contract's minute, plus the exporter's sweep interval


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    store = tmp_path_factory.mktemp("celery-exporter") / "store.db"
    process = ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def broker_url(redis_server: RedisServer) -> str:
    return redis_server.url(BROKER_DB)


@pytest.fixture(scope="module")
def producer(broker_url: str, exporter: ExporterProcess) -> Iterator[Celery]:
    """The publishing side: an app that only sends tasks by name, instrumented."""
    app = Celery("producer", broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
    instrumentation: Instrumentation = instrument(
        app, exporter.url, flush_interval=0.05, heartbeat_interval=2
    )
    yield app
    instrumentation.close(timeout=2)
    app.close()


def start_worker(
    pool: str,
    queue: str,
    broker_url: str,
    exporter: ExporterProcess,
    *extra: str,
    flush_interval: float = 0.05,
    spool: bool = True,
) -> WorkerProcess:
    return WorkerProcess(
        "celery",
        "-A",
        TASKS,
        "worker",
        "--pool",
        pool,
        "--concurrency",
        "2",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@tests",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "info",
        *extra,
        env={
            "TEST_CELERY_BROKER": broker_url,
            "TEST_EXPORTER_URL": exporter.url,
            "TEST_FLUSH_INTERVAL": str(flush_interval),
            **({} if spool else {"TEST_NO_SPOOL": "1"}),
        },
        ready=READY,
    )


@pytest.fixture(scope="module")
def prefork(broker_url: str, exporter: ExporterProcess) -> Iterator[WorkerProcess]:
    """The module's worker: Celery's default prefork pool, two pool processes."""
    worker = start_worker("prefork", "prefork", broker_url, exporter)
    yield worker
    worker.stop()


def send(app: Celery, task: str, *args: Any, queue: str) -> str:
    return str(app.send_task(f"{TASKS}.{task}", args=args, queue=queue).id)


def counts(exporter: ExporterProcess, task: str, queue: str) -> dict[str, float | None]:
    """The families the tests check for one task on one queue, read from one page."""
    return run_counts(exporter.metrics(), "celery", queue, f"{TASKS}.{task}")


def runs_of(exporter: ExporterProcess, job_id: str) -> list[dict[str, Any]]:
    return tracked_runs(exporter.url, "celery", job_id)


def test_succeeding_tasks_count_one_run_each(prefork, producer, exporter):
    for n in range(5):
        send(producer, "add", n, n, queue="prefork")

    found = wait_until(
        lambda: (c := counts(exporter, "add", "prefork"))["completed"] == 5 and c, timeout=30
    )
    assert found["started"] == 5
    assert found["failed"] in (None, 0)
    assert found["durations"] == 5
    # The producer stamped the publish time on each message: every first run has a wait.
    assert found["queue_waits"] == 5
    assert found["running"] in (None, 0)
    assert found["pending"] in (None, 0)


def test_the_publish_time_travels_in_the_message(prefork, broker_url, exporter):
    """A producer whose own events never arrive (its exporter address is dead) still stamps
    the publish time on the message: the worker's running event carries it, so the queue
    wait is observed with no pending ever seen."""
    app = Celery("lonely-producer", broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
    dead = f"http://127.0.0.1:{free_port()}"
    instrumentation = instrument(app, dead, spool_dir=False, retry_base=60, retry_cap=60)
    try:
        for n in range(3):
            app.send_task(f"{TASKS}.stamped", args=(n,), queue="prefork")
        found = wait_until(
            lambda: (c := counts(exporter, "stamped", "prefork"))["completed"] == 3 and c,
            timeout=30,
        )
    finally:
        instrumentation.close(timeout=0.1)
        app.close()
    assert found["queue_waits"] == 3
    assert found["pending"] in (None, 0)


def test_a_failure_counts_failed_with_its_exception_as_error(prefork, producer, exporter):
    job_id = send(producer, "fail", "disk full on /var", queue="prefork")
    send(producer, "fail", "second", queue="prefork")

    found = wait_until(
        lambda: (c := counts(exporter, "fail", "prefork"))["failed"] == 2 and c, timeout=30
    )
    assert found["started"] == 2
    assert found["completed"] in (None, 0)
    assert found["retries"] in (None, 0)
    assert found["durations"] == 2
    runs = wait_until(lambda: runs_of(exporter, job_id), timeout=10)
    assert [run["status"] for run in runs] == ["failed"]
    assert runs[0]["error"] == "tests.apps.celery_tasks.Boom: disk full on /var"


def test_retries_count_a_failed_run_each_and_then_the_success(prefork, producer, exporter):
    job_id = send(producer, "flaky", 2, queue="prefork")

    found = wait_until(
        lambda: (
            (c := counts(exporter, "flaky", "prefork"))["completed"] == 1
            and c["retries"] == 2
            and c
        ),
        timeout=30,
    )
    # Three runs (attempts 1, 2, 3): two ended by a retry (failed), one completed.
    assert found["started"] == 3
    assert found["failed"] == 2
    assert found["durations"] == 3
    assert found["queue_waits"] == 1  # observed once, for the first run
    # The job as its latest run left it, with the error its last failed run gave.
    [entry] = runs_of(exporter, job_id)
    assert (entry["attempt"], entry["status"]) == (3, "completed")


def test_a_run_ended_by_a_retry_counts_at_once_while_the_job_waits(prefork, producer, exporter):
    """`retrying` ends the run and counts the retry straight away; the job then waits for
    its next run (due in ten minutes) as pending, with the error its run gave."""
    job_id = send(producer, "retry_later", "try again later", queue="prefork")

    found = wait_until(
        lambda: (c := counts(exporter, "retry_later", "prefork"))["retries"] == 1 and c, 30
    )
    assert (found["started"], found["failed"], found["running"]) == (1, 1, 0)
    [entry] = runs_of(exporter, job_id)
    assert (entry["attempt"], entry["status"]) == (1, "pending")
    assert entry["error"] == "tests.apps.celery_tasks.Boom: try again later"


def test_a_slow_task_is_running_until_it_ends(prefork, producer, exporter, tmp_path: Path):
    send(producer, "hold", str(tmp_path), "slow", queue="prefork")
    wait_until(lambda: (tmp_path / "slow.started").exists(), timeout=30)

    wait_until(lambda: counts(exporter, "hold", "prefork")["running"] == 1, timeout=10)
    assert counts(exporter, "hold", "prefork")["started"] == 1

    (tmp_path / "slow.release").touch()
    found = wait_until(
        lambda: (c := counts(exporter, "hold", "prefork"))["completed"] == 1 and c, timeout=30
    )
    assert found["running"] == 0
    assert found["durations"] == 1


def test_a_pending_task_waits_in_the_gauge_until_a_worker_starts_it(producer, exporter, broker_url):
    """Published while no worker consumes its queue, then run by a `solo` worker."""
    send(producer, "add", 1, 1, queue="parked")
    send(producer, "add", 2, 2, queue="parked")
    wait_until(lambda: counts(exporter, "add", "parked")["pending"] == 2, timeout=10)
    assert counts(exporter, "add", "parked")["started"] in (None, 0)

    worker = start_worker("solo", "parked", broker_url, exporter)
    try:
        found = wait_until(
            lambda: (c := counts(exporter, "add", "parked"))["completed"] == 2 and c, timeout=30
        )
    finally:
        worker.stop()
    assert found["pending"] == 0
    assert found["started"] == 2
    assert found["queue_waits"] == 2


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_other_pools_deliver_every_run_by_their_shutdown(producer, exporter, broker_url, pool):
    """The reporter is told to send only once an hour, without its spool, so what arrives
    was flushed when the worker shut down (`worker_shutdown`, and the reporter's own atexit
    close, which a solo or threads worker's main process also runs)."""
    queue = f"pool-{pool}"
    worker = start_worker(pool, queue, broker_url, exporter, flush_interval=3600, spool=False)
    try:
        for n in range(3):
            send(producer, "add", n, 1, queue=queue)
        send(producer, "fail", "boom", queue=queue)
        send(producer, "flaky", 1, queue=queue)
        worker.wait_for_log(re.compile(r"\] succeeded in"), times=4)
        worker.wait_for_log(re.compile(r"\] raised unexpected: Boom"))
    finally:
        assert worker.stop() == 0

    add = counts(exporter, "add", queue)
    assert (add["started"], add["completed"], add["durations"]) == (3, 3, 3)
    fail = counts(exporter, "fail", queue)
    assert (fail["started"], fail["failed"]) == (1, 1)
    flaky = counts(exporter, "flaky", queue)
    assert (flaky["started"], flaky["failed"], flaky["completed"], flaky["retries"]) == (
        2,
        1,
        1,
        1,
    )


def test_a_pool_process_exiting_after_each_task_has_delivered_its_events(
    producer, exporter, broker_url
):
    """Prefork children replaced after every task leave through `os._exit`, with no atexit,
    and the client's spool is off: the flush at `worker_process_shutdown` is what delivers."""
    queue = "recycled"
    worker = start_worker(
        "prefork",
        queue,
        broker_url,
        exporter,
        "--max-tasks-per-child",
        "1",
        flush_interval=3600,
        spool=False,
    )
    try:
        for n in range(4):
            send(producer, "add", n, 2, queue=queue)
        found = wait_until(
            lambda: (c := counts(exporter, "add", queue))["completed"] == 4 and c, timeout=30
        )
    finally:
        worker.stop()
    assert found["started"] == 4


def test_a_pool_process_killed_mid_task_counts_the_run_lost(
    prefork, producer, exporter, tmp_path: Path
):
    """SIGKILL of the pool process: Celery raises WorkerLostError in the parent, which never
    ran the task and reports nothing; the run's heartbeats stop and it is counted lost."""
    send(producer, "victim", str(tmp_path), "doomed", queue="prefork")
    wait_until(lambda: (tmp_path / "doomed.started").exists(), timeout=30)
    pid = int((tmp_path / "doomed.started").read_text())
    wait_until(lambda: counts(exporter, "victim", "prefork")["running"] == 1, timeout=10)

    os.kill(pid, signal.SIGKILL)
    prefork.wait_for_log(re.compile(r"WorkerLostError"), timeout=30)
    found = wait_until(
        lambda: (c := counts(exporter, "victim", "prefork"))["lost"] == 1 and c,
        timeout=LOST_WITHIN_S,
        step=0.5,
    )
    assert found["started"] == 1
    assert found["failed"] in (None, 0)
    assert found["completed"] in (None, 0)
    assert found["running"] == 0
