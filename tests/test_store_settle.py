"""Schema step 11 (SQLite): new job rows are recent, in the small part of `jobs_key`, until
the settler moves all but the newest RECENT of them, oldest first, into the settled part; an
upgraded store's rows are all settled. Every other store test runs once more with every row
settled after each write (the `sqlite-settled` case of `store_url`)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import exporter.store.settler as settler_module
from exporter.model.jobinfo import JobInfo
from exporter.store.sqlite import MIGRATIONS, SqliteStore, _statements
from exporter.tracking.ingest import Ingestor, TrackingRules
from tests.helpers.data import START_MS

RULES = TrackingRules(retention_ms=24 * 3600 * 1000)


def _push(store: SqliteStore, prefix: str, count: int, finished: bool = True) -> None:
    jobs = [
        JobInfo(f"{prefix}-{n:05d}", "fn", START_MS + n, "TASK", finished) for n in range(count)
    ]
    Ingestor(store, RULES).ingest("pushed", jobs, START_MS + count, complete_list=False)


def _settled(path: Path) -> list[tuple[int, str]]:
    """(settled, id) of every job row, in arrival order."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT settled, id FROM jobs ORDER BY seq").fetchall()


def test_all_but_the_newest_rows_settle_oldest_first(tmp_path: Path):
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    try:
        _push(store, "a", 700)
        _push(store, "b", 300)
        assert {settled for settled, _ in _settled(path)} == {0}
        assert store.settle(recent=400) == 600
        rows = _settled(path)
        assert [settled for settled, _ in rows] == [1] * 600 + [0] * 400
        assert store.settle(recent=400) == 0  # nothing more is due
        _push(store, "c", 100)
        assert store.settle(recent=400) == 100
        # A settled job is still found as finished, so pushing it again counts nothing new.
        index = store.load_index("pushed")
        assert store.finished_among("pushed", {"a-00000", "c-00099", "x"}, index.finished) == {
            "a-00000": 1,
            "c-00099": 1,
        }
    finally:
        store.close()


def test_a_call_settles_at_most_its_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(settler_module, "BATCH", 10)
    monkeypatch.setattr(settler_module, "BATCHES", 3)
    store = SqliteStore(tmp_path / "store.db")
    try:
        _push(store, "a", 100)
        assert store.settle(recent=0) == 30
        assert store.settle(recent=0) == 30
    finally:
        store.close()


def test_the_checkpointers_thread_settles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(settler_module, "RECENT", 50)
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    try:
        _push(store, "a", 200)
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.checkpointed.clear()
        assert checkpointer.checkpointed.wait(10)  # its tick settles before checkpointing
        assert [settled for settled, _ in _settled(path)] == [1] * 150 + [0] * 50
    finally:
        store.close()


def test_a_failing_settle_is_logged_once_and_once_when_it_clears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    try:
        _push(store, "a", 20)
        with sqlite3.connect(path) as db:  # a settled twin of a recent row: a broken store
            db.execute(
                "INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms,"
                " settled) VALUES ('pushed', 'a-00005', 'fn', 'TASK', 'fn', 'TASK', 0, 1)"
            )
        caplog.set_level(logging.INFO, logger=settler_module.__name__)
        assert store.settle(recent=0) == 0
        assert store.settle(recent=0) == 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "UNIQUE" in errors[0].getMessage()
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM jobs WHERE settled = 1")
        assert store.settle(recent=0) == 20
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
            "settling new job rows works again"
        ]
    finally:
        store.close()


def test_an_upgraded_stores_rows_are_settled_in_start_order(tmp_path: Path):
    path = tmp_path / "store.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        for script in MIGRATIONS[:10]:
            for statement in _statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 10")
        db.executemany(
            "INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms,"
            " finish_ms, finished_at_ms, outcome) VALUES ('app', ?, 'fn', 'TASK', 'fn', 'TASK',"
            " ?, ?, ?, 'completed')",
            [(f"j{n}", START_MS - n, START_MS, START_MS) for n in range(5)],
        )
    store = SqliteStore(path)
    try:
        assert _settled(path) == [(1, f"j{n}") for n in reversed(range(5))]
        index = store.load_index("app")
        assert index.finished == 0  # tracked_counts was not filled by this hand-made store
        assert store.finished_among("app", {"j0", "j4"}, 5) == {"j0": 1, "j4": 1}
        _push(store, "new", 3)
        assert [settled for settled, _ in _settled(path)] == [1] * 5 + [0] * 3
    finally:
        store.close()
