"""The job queue on each store, SQLite and a real PostgreSQL server, through JobQueue: the
life cycle, refused steps writing nothing, and concurrent leases across two store
instances (two replicas or processes) never handing one job out twice."""

from __future__ import annotations

import threading

import pytest

from exporter.clock import ManualClock
from exporter.jobs.queue import JobConflict, JobQueue, UnknownJob
from exporter.model.counts import CountKind
from exporter.model.queue import API_SOURCE, QueueQuery
from exporter.store import open_store
from tests.helpers.data import START_MS, FixedRandom

SERIES = (API_SOURCE, "TASK", "charge")


@pytest.fixture
def store(store_url: str):
    opened = open_store(store_url)
    yield opened
    opened.close()


def counts(store) -> dict:
    return store.snapshot().series.get(SERIES, {})


def test_the_life_cycle_on_each_store(store):
    clock = ManualClock(START_MS)
    queue = JobQueue(store, clock, rng=FixedRandom(0.5))
    job = queue.create("TASK", "charge", b'{"amount": 5}', max_attempts=2)
    assert queue.get(job.id).payload == b'{"amount": 5}'
    assert counts(store)[(CountKind.PENDING, "")] == 1

    leased = queue.lease("w1", ["TASK"], 30)
    assert (leased.id, leased.status, leased.attempts) == (job.id, "running", 1)
    running = store.snapshot().running[SERIES]
    assert (running.count, running.oldest_start_ms) == (1, START_MS)

    clock.advance(2)
    failed = queue.fail(job.id, "w1", "declined", retryable=True)
    assert failed.status == "pending" and failed.next_attempt_ms > clock.now_ms()
    assert queue.lease("w1") is None
    clock.advance(10)
    assert queue.lease("w2").attempts == 2
    clock.advance(31)
    assert queue.expire_leases() == 1
    final = queue.get(job.id)
    assert (final.status, final.last_error) == ("failed", "lease expired")

    retried = queue.retry(job.id)
    assert retried.status == "pending"
    done = queue.complete(queue.lease("w3").id, "w3", b'"ok"')
    assert (done.status, done.result) == ("completed", b'"ok"')

    got = counts(store)
    assert got[(CountKind.STARTED, "")] == 3
    assert got[(CountKind.FINISHED, "failed")] == 1
    assert got[(CountKind.FINISHED, "lost")] == 1
    assert got[(CountKind.FINISHED, "completed")] == 1
    assert got[(CountKind.RETRIES, "automatic")] == 1
    assert got[(CountKind.RETRIES, "manual")] == 1
    assert got.get((CountKind.PENDING, ""), 0) == 0
    assert SERIES not in store.snapshot().running
    assert store.snapshot().tracked[API_SOURCE] == 1


def test_a_refused_step_writes_nothing(store):
    queue = JobQueue(store, ManualClock(START_MS))
    job = queue.create("TASK", "charge")
    queue.lease("w1")
    before = store.snapshot().series
    with pytest.raises(JobConflict):
        queue.complete(job.id, "w2")
    with pytest.raises(JobConflict):
        queue.retry(job.id)
    with pytest.raises(UnknownJob):
        queue.fail("missing", "w1", "x", True)
    assert store.snapshot().series == before
    assert queue.get(job.id).worker == "w1"


def test_paging_filters_and_pruning(store):
    clock = ManualClock(START_MS)
    queue = JobQueue(store, clock)
    ids = [queue.create("TASK", f"n{i % 2}").id for i in range(5)]
    jobs, cursor = queue.list(QueueQuery(limit=2))
    assert [j.id for j in jobs] == ids[:2]
    jobs, cursor = queue.list(QueueQuery(limit=2, after_seq=cursor))
    assert [j.id for j in jobs] == ids[2:4]
    jobs, cursor = queue.list(QueueQuery(limit=2, after_seq=cursor))
    assert ([j.id for j in jobs], cursor) == (ids[4:], None)
    jobs, _ = queue.list(QueueQuery(name="n1"))
    assert [j.id for j in jobs] == [ids[1], ids[3]]

    queue.complete(queue.lease("w").id, "w")
    clock.advance(10)
    assert queue.prune(retention_ms=5_000) == 1
    assert len(queue.list(QueueQuery())[0]) == 4


def test_two_store_instances_never_lease_the_same_job(store_url: str):
    stores = [open_store(store_url), open_store(store_url)]
    try:
        queues = [JobQueue(s, ManualClock(START_MS)) for s in stores]
        for n in range(300):
            queues[n % 2].create("TASK", "charge")
        taken: list[str] = []
        lock = threading.Lock()

        def drain(queue: JobQueue, worker: str) -> None:
            while (job := queue.lease(worker)) is not None:
                queue.complete(job.id, worker)
                with lock:
                    taken.append(job.id)

        threads = [threading.Thread(target=drain, args=(queues[n % 2], f"w{n}")) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(taken) == 300 and len(set(taken)) == 300
        got = stores[0].snapshot().series[SERIES]
        assert (got[(CountKind.STARTED, "")], got[(CountKind.FINISHED, "completed")]) == (300, 300)
        assert got.get((CountKind.PENDING, ""), 0) == 0
    finally:
        for s in stores:
            s.close()
