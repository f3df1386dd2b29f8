"""Plain data shared by the scheduler (which decides) and the store (which writes): no logic.

Kept apart from `jobs/schedules.py` as `model/queue.py` is from `jobs/queue.py`:
the store imports these without importing the scheduler, and the scheduler imports the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class MisfirePolicy:
    """What a schedule does with fires missed while no exporter ran."""

    RUN_ONCE = "run_once"  # the latest missed fire runs, late; the older ones are skipped
    SKIP = "skip"  # none runs
    ALL = (RUN_ONCE, SKIP)


class FireResult:
    """How a fire went: the `result` label of the schedule fires metric."""

    ON_TIME = "on_time"  # fired within the misfire grace of its instant
    LATE = "late"  # missed while no exporter ran, run once on the next sweep (run_once)
    SKIPPED = "skipped"  # missed and not run (policy skip, or the older ones under run_once)
    MANUAL = "manual"  # run now, from the API
    ALL = (ON_TIME, LATE, SKIPPED, MANUAL)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule as the store keeps it (column order of the store's schedules table).

    Exactly one of `cron` and `interval_s` is set. `next_fire_ms` is the next instant the
    schedule is due (kept while paused, recomputed on resume); `last_fire_ms` the instant of
    the latest scheduled fire that created a job; `last_success_ms` when the latest job it
    created completed; `unanswered_ms` the instant of the oldest fire since that success (None
    when no fire came since), which is what the overdue alert measures. The fire counts are
    per result, in FireResult.ALL order.
    """

    id: str
    type: str
    name: str
    payload: bytes | None
    max_attempts: int | None
    cron: str | None
    interval_s: float | None
    timezone: str
    misfire: str
    paused: bool
    created_ms: float
    next_fire_ms: float
    last_fire_ms: float | None
    last_success_ms: float | None
    unanswered_ms: float | None
    last_job_id: str | None
    fires_on_time: int = 0
    fires_late: int = 0
    fires_skipped: int = 0
    fires_manual: int = 0

    @property
    def fires(self) -> tuple[int, int, int, int]:
        return (self.fires_on_time, self.fires_late, self.fires_skipped, self.fires_manual)


# Decides a schedule's new state from its current one; raising aborts the whole transaction.
ScheduleTransition = Callable[[Schedule], Schedule]


@dataclass(frozen=True, slots=True)
class ScheduleFire:
    """A fire to record with the job it creates, in the job's transaction.

    `key` is unique per schedule (`at:<instant ms>` for a scheduled fire, `manual:<uuid>` for
    run-now): the store inserts it if absent, and only the transaction that inserted it
    creates the job, so replicas firing the same instant create one job between them.
    `transition` then updates the schedule (counts, last fire, next fire) in that same
    transaction; it raises to refuse the fire (a schedule paused or deleted meanwhile).
    """

    schedule_id: str
    key: str
    transition: ScheduleTransition


class FireTaken(Exception):
    """Another replica (or an earlier sweep) already took this fire: nothing was written."""


class UnknownSchedule(LookupError):
    """No schedule has this id (404)."""


class ScheduleConflict(Exception):
    """The schedule's state does not allow this step (409): pausing a paused schedule,
    resuming an active one, creating one past the configured limit."""

    def __init__(self, message: str, field: str = "paused") -> None:
        super().__init__(message)
        self.field = field
