"""Plain data shared by the job queue (which decides) and the store (which writes): no logic.

Kept apart from `jobs/queue.py` so the store can import it without importing the queue's logic,
and the queue can import the store without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.model.counts import CountDeltas
from exporter.model.exemplars import ExemplarDeltas

API_SOURCE = "api"  # the `source` label of every job-API series (docs/contract.md §3)


class JobStatus:
    """A job-API job's state (`status` in the API); a run's end is an `Outcome` instead."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a pending job taken off the queue before it ran again
    ALL = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
    FINISHED = (COMPLETED, FAILED, CANCELLED)  # what DELETE removes and the prune forgets


@dataclass(frozen=True, slots=True)
class QueueJob:
    """One job-API job as the store keeps it (column order of the store's queue_jobs table).

    `payload` and `result` are raw JSON text, stored and served as given. `label_type` and
    `label_name` are the metric labels after the cardinality guard, fixed at creation so
    every run of the job is counted under the same series.
    """

    id: str
    type: str
    name: str
    label_type: str
    label_name: str
    status: str
    payload: bytes | None
    result: bytes | None
    attempts: int
    max_attempts: int
    last_error: str | None
    worker: str | None
    created_ms: float
    started_ms: float | None  # start of the current or last run
    finished_ms: float | None
    next_attempt_ms: float | None  # when a pending job becomes due
    lease_expires_ms: float | None
    seq: int = 0  # insertion order, assigned by the store; the paging cursor

    @property
    def series(self) -> tuple[str, str]:
        return (self.label_type, self.label_name)


@dataclass(frozen=True, slots=True)
class QueueChange:
    """A job's new state and the count deltas (source `api`) to write with it, atomically.

    With `schedule_success_ms`, the schedule that fired the job (if one did) records a
    success at that instant in the same transaction (unless it has one as late already).
    `exemplars` are not written: the queue hands them to this process's board once the
    change is committed.
    """

    job: QueueJob
    counts: CountDeltas = field(default_factory=CountDeltas)
    schedule_success_ms: float | None = None
    exemplars: ExemplarDeltas = field(default_factory=dict)


# Decides a job's next state from its current one; raising aborts the whole transaction.
Transition = Callable[[QueueJob], QueueChange]


DEFAULT_PAGE = 100  # jobs a page holds unless `limit` asks otherwise


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """A page of jobs in insertion order (`newest` first: descending), past the cursor
    `after_seq` (0: from the start), optionally filtered."""

    status: str | None = None
    type: str | None = None
    name: str | None = None
    after_seq: int = 0
    limit: int = DEFAULT_PAGE
    newest: bool = False


@dataclass(frozen=True, slots=True)
class QueueBatch:
    """Up to `limit` jobs of `status` (optionally of one type and name) with `seq` above
    `after_seq`, in insertion order, each changed by `transition` in one transaction."""

    status: str
    type: str | None = None
    name: str | None = None
    after_seq: int = 0
    limit: int = 200


# How long a create's Idempotency-Key holds (docs/contract.md §4): a resend within it gets
# the job the key first created.
IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class CreateKey:
    """A create's Idempotency-Key and a digest of what it asked for; keys claimed before
    `expired_before_ms` no longer hold."""

    key: str
    request_digest: str
    expired_before_ms: float


class KeyReused(Exception):
    """The Idempotency-Key was first sent with another request (409)."""


class KeyOrphaned(Exception):
    """The Idempotency-Key still holds, but the job it made was deleted or pruned (409):
    a resend must not silently create a second job."""
