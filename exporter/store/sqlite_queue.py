"""The job queue's SQL for the SQLite store: statements and row mapping, nothing else.

Every function takes a connection already inside the caller's transaction, so the store
decides where transactions begin and end. Values are always bound parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from exporter.model.queue import QueueJob, QueueQuery
from exporter.store.queue_rows import (
    COLUMN_COUNT,
    COLUMNS,
    UPDATED,
    insert_values,
    row_to_job,
    update_values,
)

# Schema version 2: the job API's jobs (see MIGRATIONS in sqlite.py).
SCHEMA = """
CREATE TABLE queue_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    label_type TEXT NOT NULL,
    label_name TEXT NOT NULL,
    status TEXT NOT NULL,
    payload BLOB,
    result BLOB,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    worker TEXT,
    created_ms REAL NOT NULL,
    started_ms REAL,
    finished_ms REAL,
    next_attempt_ms REAL,
    lease_expires_ms REAL
);
CREATE INDEX queue_jobs_due ON queue_jobs (next_attempt_ms, seq) WHERE status = 'pending';
CREATE INDEX queue_jobs_leases ON queue_jobs (lease_expires_ms) WHERE status = 'running';
CREATE INDEX queue_jobs_status ON queue_jobs (status, seq);
CREATE INDEX queue_jobs_finished ON queue_jobs (finished_ms)
    WHERE status IN ('completed', 'failed');
"""

_SELECT = f"SELECT {COLUMNS}, seq FROM queue_jobs"
_INSERT = f"INSERT INTO queue_jobs ({COLUMNS}) VALUES ({', '.join('?' * COLUMN_COUNT)})"
_UPDATE = f"UPDATE queue_jobs SET {', '.join(f'{column} = ?' for column in UPDATED)} WHERE seq = ?"


def insert(db: sqlite3.Connection, job: QueueJob) -> QueueJob:
    values = insert_values(job)
    cursor = db.execute(_INSERT, values)
    return row_to_job((*values, cursor.lastrowid))


def update(db: sqlite3.Connection, job: QueueJob) -> None:
    db.execute(_UPDATE, update_values(job))


def get(db: sqlite3.Connection, job_id: str) -> QueueJob | None:
    row = db.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
    return row_to_job(row) if row else None


def next_due(db: sqlite3.Connection, types: Sequence[str] | None, now_ms: float):
    """The oldest due pending job (PostgreSQL: the same query `FOR UPDATE SKIP LOCKED`)."""
    sql = f"{_SELECT} WHERE status = 'pending' AND next_attempt_ms <= ?"
    params: list = [now_ms]
    if types:
        sql += f" AND type IN ({', '.join('?' * len(types))})"
        params.extend(types)
    row = db.execute(f"{sql} ORDER BY next_attempt_ms, seq LIMIT 1", params).fetchone()
    return row_to_job(row) if row else None


def expired(db: sqlite3.Connection, now_ms: float, limit: int) -> list[QueueJob]:
    rows = db.execute(
        f"{_SELECT} WHERE status = 'running' AND lease_expires_ms < ?"
        " ORDER BY lease_expires_ms LIMIT ?",
        (now_ms, limit),
    ).fetchall()
    return [row_to_job(row) for row in rows]


def page(db: sqlite3.Connection, query: QueueQuery) -> list[QueueJob]:
    sql = f"{_SELECT} WHERE seq > ?"
    params: list = [query.after_seq]
    for column in ("status", "type", "name"):
        value = getattr(query, column)
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    params.append(query.limit)
    return [row_to_job(row) for row in db.execute(f"{sql} ORDER BY seq LIMIT ?", params)]


def prune(db: sqlite3.Connection, finished_before_ms: float) -> int:
    cursor = db.execute(
        "DELETE FROM queue_jobs WHERE status IN ('completed', 'failed') AND finished_ms < ?",
        (finished_before_ms,),
    )
    return cursor.rowcount


def series(db: sqlite3.Connection, source: str) -> set[tuple[str, str]]:
    """Every (type, name) series the guard admitted: from jobs, and from counts that outlive
    them."""
    pairs = set(db.execute("SELECT DISTINCT label_type, label_name FROM queue_jobs").fetchall())
    pairs.update(
        db.execute(
            "SELECT DISTINCT type, name FROM counts WHERE source = ? AND type != ''", (source,)
        ).fetchall()
    )
    return pairs
