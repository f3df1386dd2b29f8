"""Issue 23: what a write, a load and the retention prune read follows the jobs they touch,
not the jobs a store retains. On SQLite and on a real PostgreSQL: the prune walks
jobs_status batch by batch in short transactions, around other writers; a source's index
loads its open jobs without reading its finished ones; the job API's prune goes in batches.
`bench/scale.py` measures the same at 10,000 to 10,000,000 retained jobs."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import psycopg

import exporter.store.sql as sql_module
from exporter.clock import ManualClock
from exporter.jobs.queue import JobQueue
from exporter.model.jobinfo import JobInfo
from exporter.model.queue import API_SOURCE, QueueQuery
from exporter.store import StaleIndex, open_store
from exporter.store.sqlite import sqlite_path
from exporter.tracking.ingest import Ingestor, TrackingRules
from exporter.tracking.listing import Listing
from tests.helpers.data import START_MS

DAY_MS = 24 * 3600 * 1000
RULES = TrackingRules(retention_ms=DAY_MS)


def _jobs(prefix: str, count: int, *, finished: bool, start_ms: float = START_MS) -> list:
    return [
        JobInfo(f"{prefix}-{n:05d}", f"fn_{n % 5}", start_ms + n, "TASK", finished)
        for n in range(count)
    ]


def _rows(store, source: str) -> set[str]:
    return {row.id for row in store.tracked_jobs(source)}


def _analyze_and_explain(url: str, sql: str, params: tuple) -> str:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(sqlite_path(url)) as db:
            db.execute("ANALYZE")
            return "\n".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ANALYZE jobs")
        return "\n".join(row[0] for row in db.execute("EXPLAIN " + sql, params))


def test_a_prune_batch_and_an_index_load_read_jobs_status_not_the_source(store_url: str):
    store = open_store(store_url)
    try:
        ingestor = Ingestor(store, RULES)
        ingestor.ingest(
            "pushed", _jobs("done", 20_000, finished=True), START_MS, complete_list=False
        )
        ingestor.ingest("pushed", _jobs("busy", 100, finished=False), START_MS, complete_list=False)
        cutoff = START_MS + DAY_MS
        prune = store._prunable, ("completed", cutoff, -math.inf, "pushed", "", "pushed")
        plans = {
            "prune": _analyze_and_explain(store_url, prune[0], (*prune[1], cutoff, 1000)),
            "load": _analyze_and_explain(store_url, store._open_rows, ("pushed",)),
        }
        for what, plan in plans.items():
            # Along an index of the time order (PostgreSQL's statistics may prefer
            # jobs_started when every job has one outcome), not the source's 20,100 rows
            # along its primary key, and no sort.
            assert "jobs_status" in plan or "jobs_started" in plan, (what, plan)
            assert "PRIMARY KEY" not in plan and "jobs_pkey" not in plan, (what, plan)
            assert "TEMP B-TREE" not in plan and "Sort" not in plan, (what, plan)
        assert len(store.load_index("pushed").open) == 100
    finally:
        store.close()


class _Replicas:
    """The store seen by one ingestor, whose other replica pushes to the same source right
    before the prune's second batch: that batch meets a source that moved on."""

    def __init__(self, store, other: Ingestor) -> None:
        self._store, self._other = store, other
        self.batches = 0
        self.stale = 0

    def prune_batch(self, *args: Any):
        self.batches += 1
        if self.batches == 2:
            late = _jobs("late", 3, finished=True, start_ms=START_MS + 2 * DAY_MS)
            self._other.ingest("pushed", late, START_MS + 2 * DAY_MS, complete_list=False)
        try:
            return self._store.prune_batch(*args)
        except StaleIndex:
            self.stale += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_the_prune_goes_batch_by_batch_and_past_another_replicas_write(store_url: str):
    store = open_store(store_url)
    try:
        first = Ingestor(store, RULES)
        old = _jobs("old", 95, finished=True)
        first.ingest("pushed", old, START_MS, complete_list=False)
        recent = _jobs("new", 5, finished=True, start_ms=START_MS + DAY_MS + 1)
        first.ingest("pushed", recent, START_MS + DAY_MS + 1, complete_list=False)
        replicas = _Replicas(store, Ingestor(store, RULES))
        pruning = Ingestor(replicas, RULES)  # type: ignore[arg-type]
        assert pruning.prune("pushed", START_MS + 2 * DAY_MS, listed=False, batch=10) == 95
        assert replicas.stale == 1 and replicas.batches >= 11  # ten batches, one replayed
        kept = {job.id for job in recent} | {f"late-{n:05d}" for n in range(3)}
        assert _rows(store, "pushed") == kept
        assert store.snapshot().tracked == {"pushed": len(kept)}
        assert store.load_index("pushed").finished == len(kept)
        # The prune's index stays in step: its next write is not refused as stale.
        pruning.ingest("pushed", _jobs("after", 1, finished=True), START_MS, complete_list=False)
        assert store.snapshot().tracked == {"pushed": len(kept) + 1}
    finally:
        store.close()


def test_a_scraped_source_is_pruned_only_against_a_listing_of_this_process(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/store.db")

    def listing(*job_ids: str) -> Listing:
        return Listing.split(msgspec.json.encode([_finished_item(one) for one in job_ids]))

    try:
        before = Ingestor(store, RULES)
        before.ingest_listing("app", listing("gone", "kept"), START_MS)
        # A restart: the new process has listed nothing yet, so it cannot tell which
        # finished jobs the app still lists, and prunes none.
        after = Ingestor(store, RULES)
        later = START_MS + 2 * DAY_MS
        assert after.prune("app", later, listed=True) == 0
        assert _rows(store, "app") == {"gone", "kept"}
        after.ingest_listing("app", listing("kept"), later)
        assert after.prune("app", later, listed=True) == 1
        assert _rows(store, "app") == {"kept"}
    finally:
        store.close()


def _finished_item(job_id: str) -> dict:
    return {
        "id": job_id,
        "name": "send",
        "startTimestamp": START_MS - 60_000,
        "backgroundJobType": "TASK",
        "isFinished": True,
        "status": "completed",
    }


def test_the_job_apis_prune_goes_in_batches(store_url: str, monkeypatch):
    monkeypatch.setattr(sql_module, "PRUNE_BATCH", 3)
    store = open_store(store_url)
    writes: list[str] = []
    original = store._write

    def counted(what: str):
        writes.append(what)
        return original(what)

    clock = ManualClock(START_MS)
    queue = JobQueue(store, clock)
    try:
        for n in range(10):
            queue.create_once("TASK", "charge", None, key=(f"key-{n}", "digest"))
            leased = queue.lease("w", ["TASK"], 30)
            assert leased is not None
            queue.complete(leased.id, "w")
        queue.create("TASK", "charge", None)  # pending: it stays
        clock.advance(3 * 24 * 3600)
        monkeypatch.setattr(store, "_write", counted)
        assert queue.prune(retention_ms=DAY_MS) == 10
        # 10 jobs and 10 keys, 3 a transaction: four each, the last deleting fewer.
        assert writes.count("pruning finished jobs") == 4
        assert writes.count("pruning Idempotency-Keys") == 4
        assert store.snapshot().tracked == {API_SOURCE: 1}
        assert len(store.queue_list(QueueQuery(limit=100))) == 1
    finally:
        store.close()
