"""The job queue's SQL for the PostgreSQL store: statements and row mapping, nothing else.

Every function takes a connection already inside the caller's transaction. A job is locked
with FOR UPDATE before it changes, and the lease and expiry queries skip rows another
transaction holds (SKIP LOCKED), so replicas leasing at once each get a different job and
never wait on one another.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from exporter.model.queue import QueueJob, QueueQuery
from exporter.store.queue_rows import (
    COLUMN_COUNT,
    COLUMNS,
    UPDATED,
    insert_values,
    row_to_job,
    update_values,
)

# Schema version 2: the job API's jobs (see MIGRATIONS in postgres.py).
SCHEMA = """
CREATE TABLE queue_jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    label_type TEXT NOT NULL,
    label_name TEXT NOT NULL,
    status TEXT NOT NULL,
    payload BYTEA,
    result BYTEA,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    worker TEXT,
    created_ms DOUBLE PRECISION NOT NULL,
    started_ms DOUBLE PRECISION,
    finished_ms DOUBLE PRECISION,
    next_attempt_ms DOUBLE PRECISION,
    lease_expires_ms DOUBLE PRECISION
);
CREATE INDEX queue_jobs_due ON queue_jobs (next_attempt_ms, seq) WHERE status = 'pending';
CREATE INDEX queue_jobs_leases ON queue_jobs (lease_expires_ms) WHERE status = 'running';
CREATE INDEX queue_jobs_status ON queue_jobs (status, seq);
CREATE INDEX queue_jobs_finished ON queue_jobs (finished_ms)
    WHERE status IN ('completed', 'failed');
"""

_SELECT = f"SELECT {COLUMNS}, seq FROM queue_jobs"
_INSERT = (
    f"INSERT INTO queue_jobs ({COLUMNS}) VALUES ({', '.join(['%s'] * COLUMN_COUNT)}) RETURNING seq"
)
_UPDATE = (
    f"UPDATE queue_jobs SET {', '.join(f'{column} = %s' for column in UPDATED)} WHERE seq = %s"
)


def insert(db: psycopg.Connection, job: QueueJob) -> QueueJob:
    values = insert_values(job)
    (seq,) = db.execute(_INSERT, values).fetchone()
    return row_to_job((*values, seq))


def update(db: psycopg.Connection, job: QueueJob) -> None:
    db.execute(_UPDATE, update_values(job))


def get(db: psycopg.Connection, job_id: str, *, lock: bool = False) -> QueueJob | None:
    sql = f"{_SELECT} WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = db.execute(sql, (job_id,)).fetchone()
    return row_to_job(row) if row else None


def next_due(db: psycopg.Connection, types: Sequence[str] | None, now_ms: float):
    """The oldest due pending job nobody else is taking right now, locked."""
    sql = f"{_SELECT} WHERE status = 'pending' AND next_attempt_ms <= %s"
    params: list = [now_ms]
    if types:
        sql += " AND type = ANY(%s)"
        params.append(list(types))
    sql += " ORDER BY next_attempt_ms, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    row = db.execute(sql, params).fetchone()
    return row_to_job(row) if row else None


def expired(db: psycopg.Connection, now_ms: float, limit: int) -> list[QueueJob]:
    rows = db.execute(
        f"{_SELECT} WHERE status = 'running' AND lease_expires_ms < %s"
        " ORDER BY lease_expires_ms LIMIT %s FOR UPDATE SKIP LOCKED",
        (now_ms, limit),
    ).fetchall()
    return [row_to_job(row) for row in rows]


def page(db: psycopg.Connection, query: QueueQuery) -> list[QueueJob]:
    sql = f"{_SELECT} WHERE seq > %s"
    params: list = [query.after_seq]
    for column in ("status", "type", "name"):
        value = getattr(query, column)
        if value is not None:
            sql += f" AND {column} = %s"
            params.append(value)
    params.append(query.limit)
    return [row_to_job(row) for row in db.execute(f"{sql} ORDER BY seq LIMIT %s", params)]


def prune(db: psycopg.Connection, finished_before_ms: float) -> int:
    cursor = db.execute(
        "DELETE FROM queue_jobs WHERE status IN ('completed', 'failed') AND finished_ms < %s",
        (finished_before_ms,),
    )
    return cursor.rowcount


def series(db: psycopg.Connection, source: str) -> set[tuple[str, str]]:
    pairs = {
        (t, n) for t, n in db.execute("SELECT DISTINCT label_type, label_name FROM queue_jobs")
    }
    pairs.update(
        (t, n)
        for t, n in db.execute(
            "SELECT DISTINCT type, name FROM counts WHERE source = %s AND type != ''", (source,)
        )
    )
    return pairs
