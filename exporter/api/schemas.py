"""Request and response bodies of the push and job API, declared once as msgspec Structs.

The same classes validate incoming JSON (with the field named when it is wrong) and
generate the OpenAPI document, so the document cannot drift from what the code accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from exporter.config import MAX_ATTEMPTS_LIMIT
from exporter.model.jobinfo import JobType, Name

Worker = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, description="Who holds the lease.")
]
LeaseSeconds = Annotated[
    float, msgspec.Meta(gt=0, le=24 * 3600, description="Lease length in seconds.")
]
EpochMs = Annotated[int, msgspec.Meta(description="Epoch milliseconds.")]
Status = Literal["pending", "running", "completed", "failed", "cancelled"]
Order = Literal["newest", "oldest"]
MAX_LEASE_TYPES = 100
JobTypes = Annotated[list[JobType], msgspec.Meta(min_length=1, max_length=MAX_LEASE_TYPES)]


class _Request(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Request bodies refuse unknown fields, so a misspelt option is a 400, not ignored."""


class CreateJob(_Request):
    """Create a job: pending and due now."""

    type: JobType
    name: Name
    payload: Annotated[Any, msgspec.Meta(description="Any JSON value, size-capped.")] = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)] | None = None


class LeaseRequest(_Request):
    """Lease the oldest due pending job (of one of `types`, if given)."""

    worker: Worker
    types: (
        Annotated[list[JobType], msgspec.Meta(min_length=1, max_length=MAX_LEASE_TYPES)] | None
    ) = None
    lease_seconds: LeaseSeconds | None = None


class HeartbeatRequest(_Request):
    """Extend a lease the worker holds, from now."""

    worker: Worker
    lease_seconds: LeaseSeconds | None = None


class CompleteRequest(_Request):
    """End the worker's run successfully."""

    worker: Worker
    result: Annotated[Any, msgspec.Meta(description="Any JSON value, size-capped.")] = None


class FailRequest(_Request):
    """End the worker's run as failed; retryable failures with attempts left are retried
    after an exponential backoff with jitter."""

    worker: Worker
    error: Annotated[str, msgspec.Meta(max_length=10_000)]
    retryable: bool


class BulkFilter(_Request):
    """Which jobs a bulk retry or cancel takes: those of `type` and `name`, each when
    given (an empty body, or none, takes every job of the status)."""

    type: JobType | None = None
    name: Name | None = None


class Retried(msgspec.Struct):
    retried: int


class Cancelled(msgspec.Struct):
    cancelled: int


Misfire = Literal["run_once", "skip"]
Cron = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="Five-field crontab (minute hour day month weekday), in `timezone`.",
    ),
]
IntervalSeconds = Annotated[
    float,
    msgspec.Meta(ge=1, le=366 * 24 * 3600, description="Seconds between fires, from creation."),
]
TimeZone = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, description="IANA time zone of `cron`.")
]


class CreateSchedule(_Request):
    """Create a schedule: exactly one of `cron` and `intervalSeconds`. `misfire` says what
    happens to fires missed while no exporter ran: `run_once` runs the latest of them once,
    late; `skip` runs none."""

    type: JobType
    name: Name
    payload: Annotated[Any, msgspec.Meta(description="Any JSON value, size-capped.")] = None
    cron: Cron | None = None
    interval_seconds: IntervalSeconds | None = None
    timezone: TimeZone = "UTC"
    misfire: Misfire = "run_once"
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)] | None = None


class EditSchedule(_Request):
    """Change a schedule: only the fields given change (JSON merge-patch style; `payload`
    and `maxAttempts` may be null to clear them). Giving `cron` switches an interval
    schedule to cron and `intervalSeconds` the other way; giving both is a 400. A change
    of `cron`, `intervalSeconds` or `timezone` moves the next fire to the first one after
    now (no missed fire runs because of an edit); a paused schedule stays paused."""

    type: JobType | msgspec.UnsetType = msgspec.UNSET
    name: Name | msgspec.UnsetType = msgspec.UNSET
    payload: Annotated[Any, msgspec.Meta(description="Any JSON value, size-capped.")] = (
        msgspec.UNSET
    )
    cron: Cron | msgspec.UnsetType = msgspec.UNSET
    interval_seconds: IntervalSeconds | msgspec.UnsetType = msgspec.UNSET
    timezone: TimeZone | msgspec.UnsetType = msgspec.UNSET
    misfire: Misfire | msgspec.UnsetType = msgspec.UNSET
    max_attempts: (
        Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


class ScheduleFires(msgspec.Struct, rename="camel"):
    """Fires so far, by result."""

    on_time: int
    late: int
    skipped: int
    manual: int


class Schedule(msgspec.Struct, rename="camel"):
    """A schedule. `nextFireAt` is null while paused; `lastFireAt` is the instant of the
    latest scheduled fire that created a job, `lastSuccessAt` when a job it created last
    completed, `lastJobId` the job of its latest fire (scheduled or manual)."""

    id: str
    type: str
    name: str
    payload: Any
    cron: str | None
    interval_seconds: float | None
    timezone: str
    misfire: Misfire
    max_attempts: int | None
    state: Literal["active", "paused"]
    created_at: EpochMs
    next_fire_at: EpochMs | None
    last_fire_at: EpochMs | None
    last_success_at: EpochMs | None
    last_job_id: str | None
    fires: ScheduleFires


class SchedulePage(msgspec.Struct):
    """Every schedule, oldest first (by id within one millisecond); --max-schedules caps
    their number."""

    schedules: list[Schedule]


class Job(msgspec.Struct, rename="camel"):
    """A job-API job. Timestamps are epoch milliseconds, null when not (yet) set."""

    id: str
    type: str
    name: str
    status: Status
    payload: Any
    result: Any
    attempts: int
    max_attempts: int
    last_error: str | None
    worker: str | None
    created_at: EpochMs
    started_at: EpochMs | None
    finished_at: EpochMs | None
    next_attempt_at: EpochMs | None
    lease_expires_at: EpochMs | None


class JobPage(msgspec.Struct, rename="camel"):
    """One page of jobs, oldest first; pass `nextCursor` as `cursor` for the next."""

    jobs: list[Job]
    next_cursor: str | None


class PushAccepted(msgspec.Struct):
    """How many items of the push were accepted (all of them, or the push is a 400)."""

    accepted: int


class TrackedJob(msgspec.Struct, rename="camel"):
    """A tracked job in JobInfoBase shape with the extension fields; `source` and `outcome`
    are ours (a lost job says status `failed`, outcome `lost`, so JobInfoBase readers stay
    valid)."""

    id: str
    name: str
    start_timestamp: float
    background_job_type: str
    is_finished: bool
    finish_timestamp: float | None
    status: Literal["pending", "running", "retrying", "completed", "failed"]
    source: str
    outcome: Literal["completed", "failed", "lost"] | None
    attempt: int = 1
    enqueue_timestamp: float | None = None
    error: str | None = None


class TrackedRun(msgspec.Struct, rename="camel"):
    """A scraped or pushed job as its latest run left it (docs/contract.md §4); null where
    nothing is known. A job waiting for a retry is `pending`, its last run's error kept."""

    source: str
    id: str
    type: str
    name: str
    status: Literal["pending", "running", "completed", "failed", "lost"]
    attempt: int
    enqueued_at: float | None
    started_at: float | None
    finished_at: float | None
    duration_seconds: float | None
    error: str | None


class TrackedPage(msgspec.Struct):
    """One page of tracked jobs; pass `next` as `cursor` for the next (null: the last)."""

    jobs: list[TrackedRun]
    next: str | None


class FieldError(msgspec.Struct, omit_defaults=True):
    """What is wrong with one field (of one item of a push, when `index` is present)."""

    field: str
    message: str
    index: int | None = None


class Error(msgspec.Struct, omit_defaults=True):
    """Every 4xx and 5xx answer. `errors` lists at most 100; a push's 400 says in
    `errorCount` how many there were in all."""

    error: str
    errors: list[FieldError]
    error_count: int | None = msgspec.field(default=None, name="errorCount")
