"""The RQ source (docs/contract.md §6): `--source NAME=rq+redis://...` reads RQ's own queues
and registries, and the jobs it finds are counted like any scraped source's (§2, §3).

The first tests write RQ's data with the real `rq` library (enqueue, a worker's own calls,
an in-process `SimpleWorker` running the tasks) and read it back with the reader; the last
ones run the exporter and a forking `rq worker` as processes, as a user would.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from exporter.clock import ManualClock
from exporter.config import (
    DEFAULT_RQ_MAX_JOBS,
    ConfigError,
    RQOptions,
    make_source,
    rq_options,
    sources_from_yaml,
)
from exporter.model.jobinfo import MAX_ERROR_LENGTH
from exporter.sources import rq as rq_source
from exporter.sources.fetch import FetchError, FetchLimits
from exporter.sources.rq import RQReader
from tests.apps import rq_tasks
from tests.apps.workers import WorkerProcess
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess
from tests.helpers.redis import RedisServer
from tests.helpers.served import Exporter
from tests.helpers.waiting import wait_until

UNIT_DB = 12  # the process tests use PROCESS_DB; the other integrations their own numbers
PROCESS_DB = 11
LIMITS = FetchLimits.within(5.0, 16 * 1024 * 1024)
QUEUE = "rqtest"
TASKS = "tests.apps.rq_tasks"
# The lists the blocking tasks of the process tests wait on.
GATES = ("release:slow", "gate:retry", "gate:retry", "pids:doomed:never")


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[Redis]:
    connection = Redis.from_url(redis_server.url(UNIT_DB))
    connection.flushdb()
    yield connection
    connection.close()


@pytest.fixture
def queue(redis_db: Redis) -> Queue:
    return Queue(QUEUE, connection=redis_db)


@pytest.fixture
def reader(redis_server: RedisServer) -> Iterator[RQReader]:
    made = RQReader(f"rq+{redis_server.url(UNIT_DB)}", LIMITS)
    yield made
    made.close()


def read(reader: RQReader) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in json.loads(reader.read())}


def run_next(queue: Queue, jobs: int = 1) -> None:
    """RQ's own worker loop, in this process, for `jobs` jobs."""
    SimpleWorker([queue], connection=queue.connection).work(burst=True, max_jobs=jobs)


def start_next(queue: Queue, *, queues: int = 1) -> Job:
    """Take the next job and put it in RQ's started state through a worker's own calls, as a
    worker does before its task runs (the task itself never runs)."""
    worker = Worker([queue], connection=queue.connection)
    dequeued = Queue.dequeue_any([queue], None, connection=queue.connection)
    assert dequeued is not None
    job, _ = dequeued
    worker.prepare_execution(job)
    # A worker of one queue takes the job off the intermediate list; one of several leaves
    # it there for RQ's maintenance to clear.
    worker.prepare_job_execution(job, remove_from_intermediate_queue=queues == 1)
    return job


# --- the mapping, read back from RQ's own data ---------------------------------------------


def test_queued_jobs_are_pending_with_their_queue_and_function(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.succeed, 1)
    item = read(reader)[job.id]
    assert item["status"] == "pending"
    assert item["isFinished"] is False
    assert item["name"] == f"{TASKS}.succeed"  # the description up to its "("
    assert item["backgroundJobType"] == QUEUE
    assert item["enqueueTimestamp"] == item["startTimestamp"]
    assert abs(item["startTimestamp"] - time.time() * 1000) < 60_000
    assert "attempt" not in item or item["attempt"] == 1


def test_scheduled_and_deferred_jobs_are_pending(queue: Queue, reader: RQReader):
    first = queue.enqueue(rq_tasks.succeed, 1)
    later = queue.enqueue_in(timedelta(hours=1), rq_tasks.succeed, 2)
    after = queue.enqueue(rq_tasks.succeed, 3, depends_on=first)
    items = read(reader)
    assert {items[job.id]["status"] for job in (first, later, after)} == {"pending"}
    assert "enqueueTimestamp" not in items[later.id]  # RQ sets it only when it enqueues


def test_started_job_is_running_from_its_start(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.succeed, 1)
    start_next(queue)
    item = read(reader)[job.id]
    assert item["status"] == "running"
    assert item["attempt"] == 1
    assert item["enqueueTimestamp"] <= item["startTimestamp"]
    assert "finishTimestamp" not in item


def test_finished_and_failed_jobs_carry_their_times_and_the_error(queue: Queue, reader: RQReader):
    done = queue.enqueue(rq_tasks.succeed, 1)
    broken = queue.enqueue(rq_tasks.fail, "the disk is full")
    run_next(queue, 2)
    items = read(reader)
    assert items[done.id]["status"] == "completed"
    assert items[done.id]["isFinished"] is True
    assert items[done.id]["finishTimestamp"] >= items[done.id]["startTimestamp"]
    assert items[broken.id]["status"] == "failed"
    assert items[broken.id]["error"] == "ValueError: the disk is full"  # the last line only
    assert "error" not in items[done.id]


def test_error_is_bounded(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.fail, "x" * 10_000)
    run_next(queue)
    error = read(reader)[job.id]["error"]
    assert len(error) == MAX_ERROR_LENGTH
    assert error.startswith("ValueError: xxx")


def test_a_retried_job_counts_its_runs(queue: Queue, reader: RQReader):
    """Retry(max=2) and two failures: run 1 fails, RQ requeues it (retrying, attempt 1); run 2
    fails (retrying, attempt 2); run 3 succeeds."""
    job = queue.enqueue(rq_tasks.flaky, "twice", 2, retry=Retry(max=2))
    assert read(reader)[job.id]["status"] == "pending"
    seen = []
    for _ in range(3):
        run_next(queue)
        item = read(reader)[job.id]
        seen.append((item["status"], item["attempt"]))
        if item["status"] == "retrying":
            assert item["isFinished"] is False
            assert item["finishTimestamp"] >= item["startTimestamp"]  # the failed run's own
    assert seen == [("retrying", 1), ("retrying", 2), ("completed", 3)]


def test_running_again_after_a_retry_is_the_next_attempt(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.flaky, "once", 1, retry=Retry(max=2))
    read(reader)
    run_next(queue)
    start_next(queue)
    item = read(reader)[job.id]
    assert (item["status"], item["attempt"]) == ("running", 2)
    assert item["enqueueTimestamp"] <= item["startTimestamp"]


def test_out_of_retries_is_failed_with_every_run_counted(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.flaky, "always", 99, retry=Retry(max=2))
    read(reader)
    run_next(queue, 3)
    item = read(reader)[job.id]
    assert (item["status"], item["attempt"]) == ("failed", 3)
    assert item["error"] == "RuntimeError: flaky run 3 of always failed"


def test_a_job_first_seen_waiting_for_its_retry_is_taken_as_retried_once(
    queue: Queue, reader: RQReader
):
    job = queue.enqueue(rq_tasks.flaky, "unseen", 1, retry=Retry(max=3))
    run_next(queue)  # the reader never saw the job before this failed run
    assert (read(reader)[job.id]["status"], read(reader)[job.id]["attempt"]) == ("retrying", 1)
    run_next(queue)
    assert read(reader)[job.id]["attempt"] == 2


def test_a_retry_with_an_interval_waits_scheduled_as_retrying(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.flaky, "later", 1, retry=Retry(max=1, interval=3600))
    read(reader)
    run_next(queue)
    assert Job.fetch(job.id, connection=queue.connection).get_status() == "scheduled"
    assert read(reader)[job.id]["status"] == "retrying"


def test_canceled_jobs_and_jobs_of_dead_workers_are_not_listed(queue: Queue, reader: RQReader):
    """A canceled job is not listed (so a job seen only pending never counts as started); a
    started job whose worker stopped sending heartbeats (its entry in RQ's started registry
    is past its deadline) is not listed either, so it is counted lost after two scrapes."""
    canceled = queue.enqueue(rq_tasks.succeed, 1)
    canceled.cancel()
    abandoned = queue.enqueue(rq_tasks.succeed, 2)
    start_next(queue)
    registry = StartedJobRegistry(QUEUE, connection=queue.connection)
    with queue.connection.pipeline() as pipe:
        for execution in abandoned.get_executions():
            registry.add_execution(execution, pipe, ttl=0, xx=True)  # no time left
        pipe.execute()
    wait_until(lambda: abandoned.id not in read(reader), timeout=5)
    assert canceled.id not in read(reader)


def test_a_started_job_left_on_the_intermediate_list_needs_a_live_heartbeat(
    queue: Queue, reader: RQReader
):
    """A worker of several queues leaves the started job on `rq:queue:Q:intermediate`; once
    its heartbeat lapses it is not listed from there either."""
    job = queue.enqueue(rq_tasks.succeed, 1)
    start_next(queue, queues=2)
    assert queue.connection.lrange(f"rq:queue:{QUEUE}:intermediate", 0, -1) == [job.id.encode()]
    assert read(reader)[job.id]["status"] == "running"
    registry = StartedJobRegistry(QUEUE, connection=queue.connection)
    with queue.connection.pipeline() as pipe:
        for execution in job.get_executions():
            registry.add_execution(execution, pipe, ttl=0, xx=True)
        pipe.execute()
    wait_until(lambda: job.id not in read(reader), timeout=5)


def test_a_job_whose_hash_expired_is_skipped(queue: Queue, reader: RQReader):
    job = queue.enqueue(rq_tasks.succeed, 1)
    queue.connection.delete(job.key)  # expired with its result_ttl; its entry lingers
    assert read(reader) == {}


def test_only_the_queues_asked_for(redis_server: RedisServer, redis_db: Redis):
    mine = Queue("mine", connection=redis_db).enqueue(rq_tasks.succeed, 1)
    Queue("theirs", connection=redis_db).enqueue(rq_tasks.succeed, 2)
    every = RQReader(f"rq+{redis_server.url(UNIT_DB)}", LIMITS)
    only = RQReader(f"rq+{redis_server.url(UNIT_DB)}?queues=mine", LIMITS)
    try:
        assert {item["backgroundJobType"] for item in read(every).values()} == {"mine", "theirs"}
        assert list(read(only)) == [mine.id]
    finally:
        every.close()
        only.close()


def test_max_jobs_bounds_a_scrape_keeping_running_jobs_first(
    redis_server: RedisServer, queue: Queue, caplog: pytest.LogCaptureFixture
):
    jobs = [queue.enqueue(rq_tasks.succeed, n) for n in range(5)]
    start_next(queue)
    capped = RQReader(f"rq+{redis_server.url(UNIT_DB)}?max_jobs=3", LIMITS)
    try:
        with caplog.at_level("WARNING", logger=rq_source.__name__):
            items = read(capped)
            read(capped)
        assert len(items) == 3
        assert items[jobs[0].id]["status"] == "running"
        assert capped.left_out == 2
        warnings = [r for r in caplog.records if "left out" in r.getMessage()]
        assert len(warnings) == 1  # once per change of state, not on every scrape
    finally:
        capped.close()


def test_reads_nothing_pickled_and_never_imports_rq():
    """The exporter depends on redis-py only, and never unpickles a job's data."""
    assert not {"data", "result", "meta"} & set(rq_source.JOB_FIELDS)
    tree = ast.parse(Path(rq_source.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"rq", "pickle", "dill", "cloudpickle"}


# --- faults, by the reasons of §3 ----------------------------------------------------------


def test_redis_down_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it closes
    down = RQReader(f"rq+redis://127.0.0.1:{port}/0", LIMITS)
    with pytest.raises(FetchError) as raised:
        down.read()
    assert raised.value.reason == "connection"


def test_a_redis_that_never_answers_is_a_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts, reads nothing, answers nothing
        port = listener.getsockname()[1]
        silent = RQReader(f"rq+redis://127.0.0.1:{port}/0", FetchLimits.within(0.5, 1 << 20))
        started = time.monotonic()
        with pytest.raises(FetchError) as raised:
            silent.read()
        assert raised.value.reason == "timeout"
        assert time.monotonic() - started < 5


def test_anything_else_is_internal(redis_db: Redis, reader: RQReader):
    redis_db.sadd("rq:queues", f"rq:queue:{QUEUE}")
    redis_db.set(f"rq:queue:{QUEUE}", "not a list")  # WRONGTYPE
    with pytest.raises(FetchError) as raised:
        reader.read()
    assert raised.value.reason == "internal"


# --- through the same path as an HTTP scrape -----------------------------------------------


@pytest.fixture
def rq_exporter(tmp_path: Path, redis_server: RedisServer) -> Iterator[Exporter]:
    """An in-process exporter scraping the RQ source `rq` when told to, on a clock at the
    real time (RQ's timestamps are the machine's)."""
    clock = ManualClock(time.time() * 1000)
    exporter = Exporter(tmp_path / "store.db", {"rq": f"rq+{redis_server.url(UNIT_DB)}"}, clock)
    yield exporter
    exporter.close()


def count(metrics: Metrics, family: str, function: str, **labels: str) -> float:
    found = metrics.job(family, type=QUEUE, job=f"{TASKS}.{function}", source="rq", **labels)
    return found or 0.0


def test_scrapes_count_started_finished_and_lost(queue: Queue, rq_exporter: Exporter):
    done = queue.enqueue(rq_tasks.succeed, 1)
    queue.enqueue(rq_tasks.fail, "no")
    doomed = queue.enqueue(rq_tasks.doomed, "pids")
    run_next(queue, 2)
    start_next(queue)
    assert rq_exporter.scrape("rq").ok
    metrics = rq_exporter.metrics()
    assert count(metrics, "background_jobs_started_total", "succeed") == 1
    assert count(metrics, "background_jobs_finished_total", "fail", outcome="failed") == 1
    assert count(metrics, "background_jobs_running", "doomed") == 1
    assert metrics.value("job_exporter_source_up", source="rq") == 1
    # A started job deleted from RQ vanishes from every registry: lost after two scrapes.
    doomed.delete()
    rq_exporter.scrape("rq")
    assert count(rq_exporter.metrics(), "background_jobs_running", "doomed") == 1
    rq_exporter.scrape("rq")
    metrics = rq_exporter.metrics()
    assert count(metrics, "background_jobs_finished_total", "doomed", outcome="lost") == 1
    assert count(metrics, "background_jobs_running", "doomed") == 0
    assert count(metrics, "background_jobs_started_total", "succeed") == 1  # once only
    assert done.id


def test_a_failed_scrape_is_counted_by_reason(queue: Queue, rq_exporter: Exporter):
    queue.connection.sadd("rq:queues", "rq:queue:broken")
    queue.connection.set("rq:queue:broken", "not a list")
    result = rq_exporter.scrape("rq")
    assert (result.ok, result.reason) == (False, "internal")
    metrics = rq_exporter.metrics()
    assert metrics.value("job_exporter_source_up", source="rq") == 0


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "rq+redis://127.0.0.1:6379/0",
        "rq+rediss://user:secret@redis.internal:6380/2",
        "rq+redis://127.0.0.1:6379/0?queues=high,low",
        "rq+redis://127.0.0.1:6379/0?queues=high&max_jobs=500",
    ],
)
def test_rq_urls_are_sources(url: str):
    assert make_source("jobs", url).url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rq+http://127.0.0.1:6379/0", "URL must be"),
        ("rq+redis:///0", "URL must be"),
        ("redis://127.0.0.1:6379/0", "URL must be"),
        ("rq+redis://127.0.0.1:6379/0?socket_timeout=1", "unknown URL parameter"),
        ("rq+redis://127.0.0.1:6379/0?queues=", "names no queue"),
        ("rq+redis://127.0.0.1:6379/0?max_jobs=0", "max_jobs"),
        ("rq+redis://127.0.0.1:6379/0?max_jobs=many", "max_jobs"),
    ],
)
def test_bad_rq_urls_are_refused(url: str, message: str):
    with pytest.raises(ConfigError, match=message):
        make_source("jobs", url)


def test_rq_sources_come_from_yaml_too():
    found = sources_from_yaml({"jobs": {"url": "rq+redis://h:1/0?queues=a", "interval": 2}})
    assert [(source.name, source.url, source.interval) for source in found] == [
        ("jobs", "rq+redis://h:1/0?queues=a", 2.0)
    ]


def test_rq_options_default():
    assert rq_options("rq+redis://h:1/0") == RQOptions((), DEFAULT_RQ_MAX_JOBS)
    assert rq_options("rq+redis://h:1/0?queues=a,b,a") == RQOptions(("a", "b"), 100_000)


def test_without_redis_py_the_start_up_error_says_what_to_install():
    """Run the real command line with redis-py made unimportable."""
    code = (
        "import sys; sys.modules['redis'] = None; sys.argv[0] = 'job-exporter'; "
        "from exporter.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--source", "jobs=rq+redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'job-exporter[rq]'" in done.stderr


# --- the whole thing: an exporter process and a forking `rq worker` -------------------------


class RQStack:
    """A Redis database, an exporter scraping it every 0.2 s, one forking `rq worker`."""

    def __init__(self, redis_server: RedisServer, folder: Path) -> None:
        self.url = redis_server.url(PROCESS_DB)
        self.redis = Redis.from_url(self.url)
        self.redis.flushdb()
        self.queue = Queue(QUEUE, connection=self.redis)
        self.exporter = ExporterProcess(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            f"sqlite:///{folder / 'store.db'}",
            "--source",
            f"rq=rq+{self.url}?queues={QUEUE}",
            "--scrape-interval",
            "0.2",
        )
        try:
            self.worker = WorkerProcess(
                "rq.cli",
                "worker",
                "--url",
                self.url,
                QUEUE,
                env={},
                ready=re.compile(r"Listening on"),
            )
        except BaseException:
            self.exporter.stop()
            raise

    def count(self, family: str, function: str, **labels: str) -> float:
        return count(self.exporter.metrics(), family, function, **labels)

    def wait_count(self, family: str, function: str, value: float, **labels: str) -> None:
        wait_until(lambda: self.count(family, function, **labels) == value, timeout=20)

    def tracked(self) -> list[dict[str, Any]]:
        """This source's jobs as the API lists them (§4: /tracked, or /jobinfo before it)."""
        base = self.exporter.url
        response = requests.get(f"{base}/api/v1/tracked?source=rq&limit=500", timeout=5)
        if response.status_code == 404:
            response = requests.get(f"{base}/api/v1/jobinfo?source=rq", timeout=5)
            response.raise_for_status()
            return response.json()
        response.raise_for_status()
        return response.json()["jobs"]

    def close(self) -> None:
        try:
            for gate in GATES:  # a task a failed test left waiting ends, so the worker can
                self.redis.rpush(gate, "end")  # stop warm
            self.worker.stop()
        finally:
            self.exporter.stop()
            self.redis.close()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RQStack]:
    made = RQStack(redis_server, tmp_path_factory.mktemp("rq"))
    yield made
    made.close()


def wait_running(stack: RQStack, function: str, value: float = 1) -> None:
    stack.wait_count("background_jobs_running", function, value)


@pytest.mark.slow
def test_tasks_that_succeed_are_started_and_completed(stack: RQStack):
    for n in range(3):
        stack.queue.enqueue(rq_tasks.succeed, n)
    stack.wait_count("background_jobs_finished_total", "succeed", 3, outcome="completed")
    assert stack.count("background_jobs_started_total", "succeed") == 3
    assert stack.count("background_jobs_finished_total", "succeed", outcome="failed") == 0
    assert stack.count("background_jobs_duration_seconds_count", "succeed") == 3
    assert stack.count("background_jobs_retries_total", "succeed", trigger="automatic") == 0


@pytest.mark.slow
def test_tasks_that_fail_are_failed_with_their_error(stack: RQStack):
    for n in range(2):
        stack.queue.enqueue(rq_tasks.fail, f"card {n} declined")
    stack.wait_count("background_jobs_finished_total", "fail", 2, outcome="failed")
    assert stack.count("background_jobs_started_total", "fail") == 2
    assert stack.count("background_jobs_finished_total", "fail", outcome="completed") == 0
    errors = {job.get("error") for job in stack.tracked() if job["name"] == f"{TASKS}.fail"}
    assert errors == {"ValueError: card 0 declined", "ValueError: card 1 declined"}


@pytest.mark.slow
def test_a_slow_task_is_running_while_jobs_behind_it_are_pending(stack: RQStack):
    stack.queue.enqueue(rq_tasks.slow, "release:slow")
    wait_running(stack, "slow")
    behind = [stack.queue.enqueue(rq_tasks.behind, n) for n in range(2)]
    stack.wait_count("background_jobs_pending", "behind", 2)
    assert stack.count("background_jobs_started_total", "slow") == 1
    stack.redis.rpush("release:slow", "go")
    stack.wait_count("background_jobs_finished_total", "slow", 1, outcome="completed")
    wait_running(stack, "slow", 0)
    stack.wait_count("background_jobs_pending", "behind", 0)
    stack.wait_count("background_jobs_finished_total", "behind", 2, outcome="completed")
    assert stack.count("background_jobs_duration_seconds_count", "slow") == 1
    assert all(job.get_status(refresh=True) == "finished" for job in behind)


@pytest.mark.slow
def test_a_task_retried_then_succeeding_counts_each_run(stack: RQStack):
    """Retry(max=2), failing once: two runs, the first failed and retried once."""
    job = stack.queue.enqueue(rq_tasks.gated_flaky, "gate:retry", 1, retry=Retry(max=2))
    for run in (1, 2):  # each run waits at the gate until the exporter has seen it running
        stack.wait_count("background_jobs_started_total", "gated_flaky", run)
        wait_running(stack, "gated_flaky")
        stack.redis.rpush("gate:retry", "go")
    stack.wait_count("background_jobs_finished_total", "gated_flaky", 1, outcome="completed")
    assert stack.count("background_jobs_started_total", "gated_flaky") == 2
    assert stack.count("background_jobs_finished_total", "gated_flaky", outcome="failed") == 1
    assert stack.count("background_jobs_retries_total", "gated_flaky", trigger="automatic") == 1
    assert stack.count("background_jobs_duration_seconds_count", "gated_flaky") == 2
    assert job.get_status(refresh=True) == "finished"


@pytest.mark.slow
def test_a_work_horse_killed_mid_run_is_failed(stack: RQStack):
    """SIGKILL the forked work-horse: RQ's worker fails the job ("Work-horse terminated
    unexpectedly"), and so do we; the worker goes on with the next job."""
    stack.queue.enqueue(rq_tasks.doomed, "pids:doomed")
    _, pid = stack.redis.blpop(["pids:doomed"], timeout=20) or (None, None)
    assert pid is not None, stack.worker.log
    wait_running(stack, "doomed")
    os.kill(int(pid), signal.SIGKILL)
    stack.wait_count("background_jobs_finished_total", "doomed", 1, outcome="failed")
    assert stack.count("background_jobs_started_total", "doomed") == 1
    assert stack.count("background_jobs_running", "doomed") == 0
    errors = [job.get("error") for job in stack.tracked() if job["name"] == f"{TASKS}.doomed"]
    assert len(errors) == 1 and "Work-horse terminated unexpectedly" in (errors[0] or "")
    stack.queue.enqueue(rq_tasks.noop)  # the worker lived on, and takes the next job
    stack.wait_count("background_jobs_finished_total", "noop", 1, outcome="completed")
    assert stack.worker.process.poll() is None
