"""The job queue's SQL and row mapping, written once over the dialect's placeholder and locks.

Every method takes a connection already inside the caller's transaction, so the store
decides where transactions begin and end. Values are always bound parameters. Where rows
lock (PostgreSQL), a job is locked FOR UPDATE before it changes, and the lease and expiry
queries skip rows another transaction holds (SKIP LOCKED), so replicas leasing at once each
get a different job and never wait on one another; SQLite's one writer needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.model.queue import QueueBatch, QueueJob, QueueQuery
from exporter.store.dialect import Connection, Dialect

# Every column but `seq`, in QueueJob's field order; `seq` is selected last.
COLUMNS = (
    "id, type, name, label_type, label_name, status, payload, result, attempts, max_attempts,"
    " last_error, worker, created_ms, started_ms, finished_ms, next_attempt_ms,"
    " lease_expires_ms"
)
COLUMN_COUNT = 17
UPDATED = (
    "status",
    "payload",
    "result",
    "attempts",
    "max_attempts",
    "last_error",
    "worker",
    "started_ms",
    "finished_ms",
    "next_attempt_ms",
    "lease_expires_ms",
)
_FILTERS = ("status", "type", "name")
MAX_SEQ = 2**63 - 1  # above every seq: where a newest-first listing starts


def row_to_job(row: Sequence[Any]) -> QueueJob:
    values = list(row)
    for position in (6, 7):  # payload, result: BLOB or BYTEA back to bytes
        if values[position] is not None:
            values[position] = bytes(values[position])
    return QueueJob(*values)


def insert_values(job: QueueJob) -> tuple[Any, ...]:
    return (
        job.id,
        job.type,
        job.name,
        job.label_type,
        job.label_name,
        job.status,
        job.payload,
        job.result,
        job.attempts,
        job.max_attempts,
        job.last_error,
        job.worker,
        job.created_ms,
        job.started_ms,
        job.finished_ms,
        job.next_attempt_ms,
        job.lease_expires_ms,
    )


def update_values(job: QueueJob) -> tuple[Any, ...]:
    """The changeable columns (in UPDATED order), then `seq` for the WHERE clause."""
    return (*(getattr(job, column) for column in UPDATED), job.seq)


class QueueSql:
    """The queue's statements with one dialect's placeholder and locking clauses."""

    def __init__(self, dialect: Dialect[Any]) -> None:
        p = dialect.placeholder
        self._dialect = dialect
        select = f"SELECT {COLUMNS}, seq FROM queue_jobs"
        self._insert = f"INSERT INTO queue_jobs ({COLUMNS}) VALUES ({dialect.marks(COLUMN_COUNT)})"
        self._update = (
            f"UPDATE queue_jobs SET {', '.join(f'{column} = {p}' for column in UPDATED)}"
            f" WHERE seq = {p}"
        )
        self._get = f"{select} WHERE id = {p}"
        self._get_locked = self._get + dialect.for_update
        self._due = f"{select} WHERE status = 'pending' AND next_attempt_ms <= {p}"
        self._oldest_due = f" ORDER BY next_attempt_ms, seq LIMIT 1{dialect.skip_locked}"
        self._expired = (
            f"{select} WHERE status = 'running' AND lease_expires_ms < {p}"
            f" ORDER BY lease_expires_ms LIMIT {p}{dialect.skip_locked}"
        )
        self._page = f"{select} WHERE seq > {p}"
        self._page_newest = f"{select} WHERE seq < {p}"
        self._filters = {column: f" AND {column} = {p}" for column in _FILTERS}
        self._page_end = f" ORDER BY seq LIMIT {p}"
        self._page_newest_end = f" ORDER BY seq DESC LIMIT {p}"
        self._batch = f"{select} WHERE status = {p} AND seq > {p}"
        self._batch_end = f" ORDER BY seq LIMIT {p}{dialect.skip_locked}"
        self._delete = f"DELETE FROM queue_jobs WHERE seq = {p}"
        self._prune = (
            "DELETE FROM queue_jobs WHERE seq IN (SELECT seq FROM queue_jobs"
            " WHERE status IN ('completed', 'failed', 'cancelled')"
            f" AND finished_ms < {p} LIMIT {p})"
        )
        self._counted_series = (
            f"SELECT DISTINCT type, name FROM counts WHERE source = {p} AND type != ''"
        )

    def insert(self, db: Connection, job: QueueJob) -> QueueJob:
        values = insert_values(job)
        return row_to_job((*values, self._dialect.insert_id(db, self._insert, values, "seq")))

    def update(self, db: Connection, job: QueueJob) -> None:
        db.execute(self._update, update_values(job))

    def get(self, db: Connection, job_id: str, *, lock: bool = False) -> QueueJob | None:
        row = db.execute(self._get_locked if lock else self._get, (job_id,)).fetchone()
        return row_to_job(row) if row else None

    def next_due(
        self, db: Connection, types: Sequence[str] | None, now_ms: float
    ) -> QueueJob | None:
        """The oldest due pending job (where rows lock: that nobody else is taking, locked)."""
        sql = self._due
        params: list[Any] = [now_ms]
        if types:
            clause, values = self._dialect.in_clause("type", types)
            sql += f" AND {clause}"
            params.extend(values)
        row = db.execute(sql + self._oldest_due, params).fetchone()
        return row_to_job(row) if row else None

    def expired(self, db: Connection, now_ms: float, limit: int) -> list[QueueJob]:
        rows = db.execute(self._expired, (now_ms, limit)).fetchall()
        return [row_to_job(row) for row in rows]

    def page(self, db: Connection, query: QueueQuery) -> list[QueueJob]:
        """Oldest first past `after_seq`, or newest first before it (0: from the newest)."""
        if query.newest:
            sql, end = self._page_newest, self._page_newest_end
            params: list[Any] = [query.after_seq or MAX_SEQ]
        else:
            sql, end = self._page, self._page_end
            params = [query.after_seq]
        for column in _FILTERS:
            value = getattr(query, column)
            if value is not None:
                sql += self._filters[column]
                params.append(value)
        params.append(query.limit)
        return [row_to_job(row) for row in db.execute(sql + end, params)]

    def batch(self, db: Connection, batch: QueueBatch) -> list[QueueJob]:
        """The next `batch.limit` jobs of its status and filter, in `seq` order; where rows
        lock, locked, skipping those another transaction holds (a lease under way)."""
        sql = self._batch
        params: list[Any] = [batch.status, batch.after_seq]
        for column in ("type", "name"):
            value = getattr(batch, column)
            if value is not None:
                sql += self._filters[column]
                params.append(value)
        params.append(batch.limit)
        return [row_to_job(row) for row in db.execute(sql + self._batch_end, params)]

    def delete(self, db: Connection, job: QueueJob) -> None:
        db.execute(self._delete, (job.seq,))

    def prune(self, db: Connection, finished_before_ms: float, limit: int) -> int:
        """Up to `limit` of the jobs finished before the cutoff, through queue_jobs_finished."""
        return db.execute(self._prune, (finished_before_ms, limit)).rowcount

    def series(self, db: Connection, source: str) -> set[tuple[str, str]]:
        """Every (type, name) series the guard admitted. A create counts its job pending
        under its series, and count rows stay, so the counts name every series a job has:
        reading the jobs too scanned every retained one (issue 23)."""
        return {(job_type, name) for job_type, name in db.execute(self._counted_series, (source,))}
