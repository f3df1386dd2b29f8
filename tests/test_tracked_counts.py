"""The kept tracked-jobs counts (issue 23): equal to COUNT(*) of the rows after scrapes,
pushes, prunes and job-API creates and prunes, on each store, and filled by the schema
step from the rows a step-7 store already has."""

from __future__ import annotations

import random
import sqlite3

import pytest

from exporter.clock import ManualClock
from exporter.jobs.queue import JobQueue
from exporter.model.counts import Buckets
from exporter.model.jobinfo import JobInfo
from exporter.model.queue import API_SOURCE
from exporter.store import Prune, open_store
from exporter.store.base import PruneCursor
from exporter.tracking.ingest import write_plan
from exporter.tracking.plan import LabelGuard, plan_changes
from tests.helpers.data import START_MS

NOW = START_MS


def _counted(store) -> dict[str, int]:
    """COUNT(*) of every source's rows, as the snapshot used to read them."""
    if hasattr(store, "_writer"):
        db = store._writer
        rows = db.execute("SELECT source, COUNT(*) FROM jobs GROUP BY source").fetchall()
        (queued,) = db.execute("SELECT COUNT(*) FROM queue_jobs").fetchone()
    else:
        with store._dialect.read() as db:
            rows = db.execute("SELECT source, COUNT(*) FROM jobs GROUP BY source").fetchall()
            (queued,) = db.execute("SELECT COUNT(*) FROM queue_jobs").fetchone()
    counted = dict(rows)
    if queued:
        counted[API_SOURCE] = queued
    return counted


def _job(rng: random.Random, job_id: int) -> JobInfo:
    state = rng.choice(["running", "pending", "completed", "failed"])
    return JobInfo(
        f"j{job_id}",
        rng.choice(["a", "b"]),
        NOW - rng.randint(0, 5_000),
        "TASK",
        state in ("completed", "failed"),
        status=state,
    )


def _write(store, source: str, jobs: list[JobInfo], complete: bool) -> None:
    index = store.load_index(source)
    finished = store.finished_among(source, {job.id for job in jobs}, index.finished)
    plan = plan_changes(
        index,
        jobs,
        NOW,
        complete_list=complete,
        guard=LabelGuard(),
        buckets=Buckets(),
        finished=finished,
    )
    write_plan(store, index, plan)


def _prune(store, source: str, prune: Prune, limit: int = 40) -> tuple[list[str], int]:
    """The whole retention prune of `source`, batch by batch: the ids gone, and how many
    batches it took. The counts must be exact after every batch."""
    index = store.load_index(source)
    after: PruneCursor | None = None
    pruned: list[str] = []
    for batches in range(1, 1000):
        done = store.prune_batch(index, prune, after, limit)
        index.forget(done.ids)
        index.generation = done.generation
        pruned += done.ids
        assert store.snapshot().tracked == _counted(store), batches
        if done.after is None:
            return pruned, batches
        after = done.after
    raise AssertionError("the prune never ended")


def test_kept_counts_equal_the_rows_after_a_mixed_workload(store_url: str):
    rng = random.Random(23)
    store = open_store(store_url)
    clock = ManualClock(START_MS)
    queue = JobQueue(store, clock)
    try:
        for step in range(40):
            listed = [_job(rng, rng.randint(0, 60)) for _ in range(rng.randint(0, 25))]
            _write(store, "scraped", listed, True)
            if step % 7 == 6:  # retention: finished before now, unless still listed
                listed_ids = {job.id for job in listed}
                _prune(store, "scraped", Prune(before_ms=NOW + 10**9, still_listed=listed_ids))
            pushed = [_job(rng, rng.randint(0, 60)) for _ in range(rng.randint(1, 10))]
            _write(store, "pushed", pushed, False)
            if step % 5 == 4:
                _prune(store, "pushed", Prune(before_ms=NOW + 10**9))
            for _ in range(rng.randint(0, 3)):
                queue.create("TASK", "charge", None)
            leased = queue.lease("w", ["TASK"], 30)
            if leased is not None and rng.random() < 0.7:
                queue.complete(leased.id, "w")
                if rng.random() < 0.5:  # a person deletes it from the Queue view
                    queue.delete(leased.id)
            if step % 6 == 5:
                clock.advance(10)
                queue.prune(retention_ms=5_000)
            assert store.snapshot().tracked == _counted(store), step
        assert _counted(store)  # the workload left rows to count
    finally:
        store.close()


def test_the_schema_step_fills_the_counts_of_a_step_7_store(tmp_path):
    from exporter.store.sqlite import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:7]:
            for statement in _statements(script):
                db.execute(statement)
        row = "TASK", "send_email", "TASK", "send_email", NOW
        db.executemany(
            "INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(source, str(i), *row) for source, n in (("a", 3), ("b", 5)) for i in range(n)],
        )
        db.execute(
            "INSERT INTO queue_jobs (id, type, name, label_type, label_name, status, attempts,"
            " max_attempts, created_ms) VALUES ('q', 'TASK', 'x', 'TASK', 'x', 'pending', 0, 1, 0)"
        )
        db.execute("PRAGMA user_version = 7")
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.snapshot().tracked == {"a": 3, "b": 5, API_SOURCE: 1}
    finally:
        store.close()


@pytest.mark.slow
def test_the_schema_step_fills_the_counts_on_postgres(postgres_cluster):
    import psycopg

    from exporter.store.postgres import MIGRATIONS

    url = postgres_cluster.new_database()
    with psycopg.connect(url, autocommit=False) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:7]:
            db.execute(script)
        for i in range(4):
            db.execute(
                "INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms)"
                " VALUES ('a', %s, 'T', 'n', 'T', 'n', 0)",
                (str(i),),
            )
        db.execute("INSERT INTO schema_version VALUES (7)")
    store = open_store(url)
    try:
        assert store.snapshot().tracked == {"a": 4}
    finally:
        store.close()


def test_a_batched_prune_keeps_listed_jobs_and_exact_counts(store_url: str):
    store = open_store(store_url)
    try:
        jobs = [
            JobInfo(f"j{i:03d}", "a", NOW - 1_000, "TASK", True, status="completed")
            for i in range(250)
        ]
        _write(store, "scraped", jobs, True)
        listed = {f"j{i:03d}" for i in range(0, 250, 7)}
        pruned, batches = _prune(store, "scraped", Prune(NOW + 10**9, still_listed=listed))
        assert batches >= 6  # 250 candidates, 40 a transaction
        assert not listed & set(pruned) and len(pruned) == 250 - len(listed)
        assert {row.id for row in store.tracked_jobs("scraped")} == listed
        assert store.snapshot().tracked == {"scraped": len(listed)}
    finally:
        store.close()
