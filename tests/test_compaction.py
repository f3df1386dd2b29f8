"""Compacting an index after a large decode keeps every value and the memo's sharing."""

from __future__ import annotations

import msgspec
import pytest

import exporter.tracking.ingest as ingest_module
from exporter.store import open_store
from exporter.tracking.compaction import compact
from exporter.tracking.ingest import Ingestor
from exporter.tracking.listing import Listing

NOW = 1_700_000_000_000.0


def listing(states: dict[str, str]) -> Listing:
    items = [
        {
            "id": job_id,
            "name": "send",
            "startTimestamp": NOW - n,
            "backgroundJobType": "TASK",
            "isFinished": state != "running",
        }
        | ({"status": state} if state != "running" else {})
        for n, (job_id, state) in enumerate(states.items())
    ]
    return Listing.split(msgspec.json.encode(items))


@pytest.fixture
def ingestor(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "COMPACT_FROM_JOBS", 3)
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    yield Ingestor(store)
    store.close()


def test_compaction_copies_ids_and_running_jobs_keeping_their_values(ingestor: Ingestor):
    states = {"a": "running", "b": "completed", "c": "running", "d": "failed"}
    ingestor.ingest_listing("app", listing(states), NOW)
    index, memo = ingestor._sources["app"].index, ingestor._sources["app"].memo
    running, ids = dict(index.open), list(memo.ids)
    starts = {job_id: job.start_ms for job_id, job in running.items()}

    compact(index, memo)

    assert index.open == running and memo.ids == ids
    for job_id, job in index.open.items():
        assert job_id is not next(k for k in running if k == job_id)  # a copy
        assert job is not running[job_id] and job.start_ms is not starts[job_id]
    assert all(job_id is not original for job_id, original in zip(memo.ids, ids, strict=True))
    by_value = {job_id: job_id for job_id in memo.ids}
    assert all(job_id is by_value[job_id] for job_id in index.open)  # one string per id


def test_a_large_scrape_leaves_a_compaction_due_and_the_memo_still_fits(ingestor: Ingestor):
    states = {f"j{n}": "running" for n in range(5)}
    ingestor.ingest_listing("app", listing(states), NOW)
    assert ingestor.compact_due() == ["app"]
    assert ingestor.compact_due() == []  # done once

    states["j2"] = "completed"
    decoded = ingestor.ingest_listing("app", listing(states), NOW + 1000)
    assert [job.id for job in decoded.jobs] == ["j2"]  # the compacted memo still matched
    assert ingestor.store.snapshot().series[("app", "TASK", "send")][("finished", "completed")] == 1


def test_a_scrape_before_the_compaction_leaves_none_due(ingestor: Ingestor):
    states = {f"j{n}": "running" for n in range(5)}
    ingestor.ingest_listing("app", listing(states), NOW)
    ingestor.ingest_listing("app", listing(states), NOW + 1000)  # decodes nothing: small
    assert ingestor.compact_due() == []
