"""The SQLite store on a real file: schema versions, atomic writes, concurrent writers."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from exporter.counts import FINISHED, STARTED, Buckets
from exporter.models import JobInfo
from exporter.store import Prune, StaleIndex, StoreError, open_store
from exporter.store.sqlite import SCHEMA_VERSION, SqliteStore, sqlite_path
from exporter.tracker import LabelGuard, plan_changes

NOW = 1_700_000_000_000.0


def info(job_id: str, finished: bool = False) -> JobInfo:
    return JobInfo(job_id, "send_email", NOW, "TASK", finished)


def plan_for(index, *jobs: JobInfo, complete: bool = True):
    observed = {j.id: j for j in jobs}
    return plan_changes(
        index, observed, NOW, complete_list=complete, guard=LabelGuard(), buckets=Buckets()
    )


def test_a_new_file_gets_the_current_schema_and_reopens(tmp_path: Path):
    path = tmp_path / "deep" / "folder" / "store.db"
    store = SqliteStore(path)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    SqliteStore(path).close()  # migrating again is a no-op


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path):
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_counts_and_jobs_survive_reopening(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    index = store.load_index("app")
    store.apply(index, plan_for(index, info("a"), info("b", finished=True)))
    store.close()

    reopened = SqliteStore(tmp_path / "store.db")
    index = reopened.load_index("app")
    assert set(index.running) == {"a"} and index.finished == {"b"}
    assert index.series == {("TASK", "send_email")}
    counts = reopened.snapshot().series[("app", "TASK", "send_email")]
    assert counts[(STARTED, "")] == 2 and counts[(FINISHED, "completed")] == 1
    reopened.close()


def test_a_stale_index_writes_nothing(tmp_path: Path):
    """Two writers planned against the same state: the second must replan, not double count."""
    first = SqliteStore(tmp_path / "store.db")
    second = SqliteStore(tmp_path / "store.db")
    index_one = first.load_index("app")
    index_two = second.load_index("app")
    first.apply(index_one, plan_for(index_one, info("a")))
    with pytest.raises(StaleIndex):
        second.apply(index_two, plan_for(index_two, info("a")))
    assert index_two.running == {}  # untouched, since nothing was written
    snapshot = second.snapshot()  # sees the first writer's commit
    assert snapshot.series[("app", "TASK", "send_email")][(STARTED, "")] == 1
    first.close()
    second.close()


def test_a_failed_write_leaves_store_and_index_unchanged(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    index = store.load_index("app")
    plan = plan_for(index, info("a"), info("b"))
    plan.inserts.append(plan.inserts[0])  # a duplicate key fails the transaction midway
    with pytest.raises(StoreError):
        store.apply(index, plan)
    assert index.running == {} and index.generation == 0
    assert store.snapshot().series == {}
    assert store.load_index("app").running == {}
    store.close()


def test_prune_spares_listed_and_recent_jobs(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    index = store.load_index("app")
    store.apply(index, plan_for(index, info("old"), info("listed"), info("running")))
    index = store.load_index("app")
    store.apply(index, plan_for(index, info("old", True), info("listed", True), info("running")))
    pruned = store.apply(
        index, plan_for(index, info("listed", True), info("running")),
        Prune(before_ms=NOW + 1, still_listed={"listed", "running"}),
    )  # fmt: skip
    assert pruned == ["old"]
    assert store.snapshot().tracked == {"app": 2}
    assert index.finished == {"listed"}
    store.close()


def test_health_counts_add_up(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 1}))
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 2}))
    assert store.snapshot().health["app"][("scrape_errors", "timeout")] == 3
    store.close()


def test_snapshot_is_cached_until_something_changes(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    first = store.snapshot()
    assert store.snapshot() is first
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 1}))
    assert store.snapshot() is not first
    store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////absolute/file.db", "/absolute/file.db"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_urls(url: str, path: str):
    assert sqlite_path(url) == path


def test_unknown_store_urls_are_refused():
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("mysql://localhost/db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:relative.db"])
def test_malformed_sqlite_urls_are_refused(url: str):
    with pytest.raises(ValueError, match=r"sqlite:///path/file\.db"):
        sqlite_path(url)
