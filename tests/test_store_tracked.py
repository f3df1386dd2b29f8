"""Schema step 8: the indexes GET /api/v1/tracked pages through, on SQLite and PostgreSQL:
an old store gains them with its jobs kept, and the list's three busy orders (newest first,
running oldest first, failed newest first), with or without a cursor, read an index in
order and never sort the jobs."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from exporter.model.tracked import TrackedQuery
from exporter.store import open_store
from exporter.store.sqlite import sqlite_path
from exporter.store.tables import TRACKED_INDEXES

NOW = 1_700_000_000_000.0
STEP = 8  # the schema step that adds TRACKED_INDEXES
MIDDLE = (NOW - 10_000_000, "src-0", "j-10000")  # a cursor halfway down
BUSY = [
    TrackedQuery(),
    TrackedQuery(after=MIDDLE),
    TrackedQuery(status="running", newest_first=False),
    TrackedQuery(status="running", newest_first=False, after=MIDDLE),
    TrackedQuery(status="failed"),
    TrackedQuery(status="failed", after=MIDDLE),
]
OUTCOMES = (None, "completed", "completed", "failed", "lost")


def rows(count: int, sources: int = 3) -> list[tuple]:
    """Whole jobs rows (JOB_COLUMNS' order): running, completed, failed and lost ones."""
    out = []
    for n in range(count):
        outcome = OUTCOMES[n % len(OUTCOMES)]
        start = NOW - 1_000 * n
        finish = None if outcome is None else start + 500
        error = "boom" if outcome == "failed" else None
        out.append(
            (
                f"src-{n % sources}",
                f"j-{n}",
                "TASK",
                f"fn_{n % 7}",
                "TASK",
                f"fn_{n % 7}",
                start,
                finish,
                finish,
                outcome,
                0,
                1,
                0,
                None,
                error,
                None,
            )
        )
    return out


def _at_step_7(url: str, jobs: list[tuple]) -> None:
    """A store as the release before step 8 left it, holding `jobs`."""
    marks = ", ".join(["?"] * 16)
    if url.startswith("sqlite:///"):
        from exporter.store.sqlite import MIGRATIONS, _statements

        with sqlite3.connect(sqlite_path(url)) as db:
            for script in MIGRATIONS[: STEP - 1]:
                for statement in _statements(script):
                    db.execute(statement)
            db.executemany(f"INSERT INTO jobs VALUES ({marks})", jobs)
            db.execute(f"PRAGMA user_version = {STEP - 1}")
        return
    from exporter.store.postgres import MIGRATIONS

    with psycopg.connect(url, autocommit=False) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[: STEP - 1]:
            db.execute(script)
        with db.cursor() as cursor:
            cursor.executemany(f"INSERT INTO jobs VALUES ({marks.replace('?', '%s')})", jobs)
        db.execute(f"INSERT INTO schema_version VALUES ({STEP - 1})")


def _indexes(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(sqlite_path(url)) as db:
            found = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            return {name for (name,) in found}
    with psycopg.connect(url) as db:
        found = db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
        return {name for (name,) in found}


def test_a_store_at_step_7_gains_the_tracked_indexes_and_keeps_its_jobs(store_url: str):
    jobs = rows(50)
    _at_step_7(store_url, jobs)
    assert not set(TRACKED_INDEXES) & _indexes(store_url)
    store = open_store(store_url)
    try:
        assert set(TRACKED_INDEXES) <= _indexes(store_url)
        assert len(store.tracked_jobs()) == 50
        running = store.tracked_page(TrackedQuery(status="running", newest_first=False))
        expected = sorted((r for r in jobs if r[9] is None), key=lambda r: r[6])
        assert [row.id for row in running] == [r[1] for r in expected]
        [newest] = store.tracked_page(TrackedQuery(limit=1))
        assert newest.id == "j-0"
    finally:
        store.close()
    open_store(store_url).close()  # migrating again is a no-op


def _plan(store, url: str, query: TrackedQuery) -> str:
    sql, params = store.tracked_sql(query)
    if url.startswith("sqlite:///"):
        with sqlite3.connect(sqlite_path(url)) as db:
            return "\n".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    with psycopg.connect(url) as db:
        return "\n".join(row[0] for row in db.execute("EXPLAIN " + sql, params))


@pytest.mark.parametrize("query", BUSY, ids=lambda q: f"{q.status}-{q.newest_first}-{q.after}")
def test_the_busy_pages_read_an_index_in_order_without_sorting(store_url: str, query):
    _at_step_7(store_url, rows(20_000))
    store = open_store(store_url)
    try:
        if store_url.startswith("sqlite:///"):
            with sqlite3.connect(sqlite_path(store_url)) as db:
                db.execute("ANALYZE")
        else:
            with psycopg.connect(store_url, autocommit=True) as db:
                db.execute("ANALYZE jobs")
        plan = _plan(store, store_url, query)
        assert "jobs_started" in plan or "jobs_status" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
        assert len(store.tracked_page(query)) == query.limit
    finally:
        store.close()
