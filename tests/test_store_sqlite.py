"""SQLite specifics: the file, its journal mode and schema version, and store URLs."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from exporter.model.counts import CountKind
from exporter.store import StoreError, open_store
from exporter.store.sqlite import SCHEMA_VERSION, SqliteStore, sqlite_path


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


def test_commits_are_checkpointed_by_the_thread_not_the_writer(tmp_path: Path):
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    try:
        assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.checkpointed.clear()
        size_before = path.stat().st_size
        counts = Counter({("TASK", f"job-{n}", CountKind.STARTED, ""): 1 for n in range(5000)})
        store.add_counts("app", counts)
        assert checkpointer.checkpointed.wait(30), "no checkpoint after a write"
        # The rows reached the database file itself, not only the log.
        assert path.stat().st_size - size_before > 5000 * 20
    finally:
        store.close()
    assert not store._checkpointer._thread.is_alive()
