"""The job queue's row shape, shared by the SQLite and PostgreSQL stores: column order and
the mapping between rows and QueueJob. No SQL dialect here."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.model.queue import QueueJob

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


def row_to_job(row: Sequence) -> QueueJob:
    values = list(row)
    for position in (6, 7):  # payload, result: BLOB or BYTEA back to bytes
        if values[position] is not None:
            values[position] = bytes(values[position])
    return QueueJob(*values)


def insert_values(job: QueueJob) -> tuple:
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


def update_values(job: QueueJob) -> tuple:
    """The changeable columns (in UPDATED order), then `seq` for the WHERE clause."""
    return (*(getattr(job, column) for column in UPDATED), job.seq)
