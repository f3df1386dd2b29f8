"""The store interface: everything a restart must not lose, behind one protocol.

Implementations own SQL and transactions and nothing else: they never decide what a job's
state means (the tracker and the job queue do), never keep the tracker's in-memory index
(they return what changed and the caller updates it), and never speak HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from exporter.model.counts import CountDeltas
from exporter.model.queue import (
    CreateKey,
    QueueBatch,
    QueueChange,
    QueueJob,
    QueueQuery,
    Transition,
)
from exporter.model.schedules import Schedule, ScheduleFire, ScheduleTransition
from exporter.model.tracked import JobRow, Plan, SourceIndex, TrackedQuery

if TYPE_CHECKING:
    from exporter.store.health import StoreHealth

SeriesKey = tuple[str, str, str]  # (source, type, name)
CountName = tuple[str, str]  # (family, label)


class StoreError(RuntimeError):
    """The store could not do what was asked (unreachable, locked too long, corrupt);
    `fault` says which, as a StoreFault word."""

    def __init__(self, message: str, fault: str = "error") -> None:
        super().__init__(message)
        self.fault = fault


class StoreDown(StoreError):
    """Not tried: the store is known to be down (StoreHealth lets a probe through)."""


class StaleIndex(StoreError):
    """Someone else wrote this source since the index was loaded: reload and plan again."""


@dataclass(frozen=True)
class Prune:
    """Delete finished jobs counted before `before_ms`, except those the source still lists."""

    before_ms: float
    still_listed: Container[str] = frozenset()


# Where a prune goes on: the position in Outcome.ALL, then the last (start_ms, id) read.
PruneCursor = tuple[int, float, str]


@dataclass(frozen=True)
class Pruned:
    """What one batch of the prune wrote, for its caller to bring its index up to date."""

    generation: int  # the source's generation now
    ids: list[str]  # the finished jobs deleted
    after: PruneCursor | None  # where the next batch starts; None when this one ended it


@dataclass(frozen=True)
class RunningStats:
    count: int
    oldest_start_ms: float


@dataclass(frozen=True)
class Snapshot:
    """Every stored count, grouped for the collector; `version` changes with any write."""

    version: Hashable
    series: dict[SeriesKey, dict[CountName, float]] = field(default_factory=dict)
    health: dict[str, dict[CountName, float]] = field(default_factory=dict)
    running: dict[SeriesKey, RunningStats] = field(default_factory=dict)
    tracked: dict[str, int] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()


class Store(Protocol):
    health: StoreHealth  # what every operation found, said once per change

    def load_index(self, source: str) -> SourceIndex:
        """What the store knows of one source's jobs, for the tracker to plan against."""
        ...

    def finished_among(self, source: str, job_ids: Collection[str], kept: int) -> dict[str, int]:
        """Which of `job_ids` the store keeps as finished jobs of `source`, with the attempt
        each one's last run had (a higher one starts a new run). `kept` is how many finished
        jobs the source has (the index's count): the cost follows the smaller of the two.
        Read before a plan is written, so a writer that changed the source since shows as
        StaleIndex."""
        ...

    def apply(self, index: SourceIndex, plan: Plan) -> int:
        """Write `plan` in one transaction if the source is still at `index.generation`;
        returns the source's new generation.

        Reads only the index's source and generation, and leaves the index as it was: the
        caller brings it up to date. Raises StaleIndex (nothing written) when another
        writer got there first.
        """
        ...

    def prune_batch(
        self, index: SourceIndex, prune: Prune, after: PruneCursor | None, limit: int
    ) -> Pruned:
        """Delete up to `limit` of the source's finished jobs counted before
        `prune.before_ms` and not still listed, from the cursor `after` on, in one short
        transaction, if the source is still at `index.generation` (else StaleIndex)."""
        ...

    def add_counts(self, source: str, deltas: CountDeltas) -> None:
        """Add to stored counts outside any job change (health counters)."""
        ...

    def claim_source(self, source: str, owner: str, now_ms: float, until_ms: float) -> bool:
        """Take or renew the lease on scraping `source` until `until_ms`: True when `owner`
        holds it now (it was free, expired at `now_ms`, or already `owner`'s)."""
        ...

    def release_sources(self, owner: str, sources: Collection[str]) -> None:
        """Give up `owner`'s leases on `sources`, so that another replica takes them over at
        its next scrape rather than when they expire."""
        ...

    def snapshot(self) -> Snapshot:
        """All counts as of now; cheap when nothing changed since the last call."""
        ...

    def tracked_page(self, query: TrackedQuery) -> list[JobRow]:
        """One page of tracked jobs, filtered and ordered as `query` asks."""
        ...

    def tracked_jobs(self, source: str | None = None) -> list[JobRow]:
        """Every tracked job of scraped and pushed sources (of one source, if given)."""
        ...

    # The job queue (job API). Each call is one transaction; a Transition decides the new
    # state, counts and any schedule success from the current row, and anything it raises
    # rolls everything back.

    def queue_insert(
        self,
        change: QueueChange,
        fire: ScheduleFire | None = None,
        key: CreateKey | None = None,
    ) -> QueueJob:
        """Insert a new job and add its counts; returns it with its `seq`.

        With an Idempotency-Key that holds already, nothing is written and the job it made
        is returned (KeyReused when the key came with another request).

        With a schedule `fire`, its key is inserted first, if absent (FireTaken, nothing
        written, when present), and `fire.transition` updates the schedule, all in the job's
        transaction: one job per fire, however many replicas try.
        """
        ...

    def queue_get(self, job_id: str) -> QueueJob | None: ...

    def queue_pending(self) -> int:
        """Job-API jobs pending now (waiting to run or for a retry), from the counts."""
        ...

    def queue_list(self, query: QueueQuery) -> list[QueueJob]:
        """Up to `query.limit` jobs after `query.after_seq`, in insertion order."""
        ...

    def queue_series(self) -> set[tuple[str, str]]:
        """Every (type, name) label pair ever admitted for job-API jobs."""
        ...

    def queue_update(self, job_id: str, transition: Transition) -> QueueJob | None:
        """Apply `transition` to one job under a row lock; None when no job has that id."""
        ...

    def queue_lease(
        self, types: list[str] | None, now_ms: float, transition: Transition
    ) -> QueueJob | None:
        """Atomically pick the oldest due pending job (of `types`) and apply `transition`.

        No job may be handed to two callers: SQLite picks inside BEGIN IMMEDIATE, PostgreSQL
        with SELECT ... FOR UPDATE SKIP LOCKED.
        """
        ...

    def queue_expire(self, now_ms: float, transition: Transition, limit: int) -> list[QueueJob]:
        """Apply `transition` to up to `limit` running jobs whose lease ended before now."""
        ...

    def queue_batch(self, batch: QueueBatch, transition: Transition) -> list[QueueJob]:
        """Apply `transition` to each job `batch` selects, all in one transaction (rows
        another transaction holds are passed over); the jobs as changed, in `seq` order."""
        ...

    def queue_delete(self, job_id: str, check: Transition) -> QueueJob | None:
        """Remove one job under a row lock once `check` (which raises to refuse) accepts
        it; its counts stay. None when no job has that id."""
        ...

    def queue_prune(self, finished_before_ms: float, keys_before_ms: float | None = None) -> int:
        """Delete completed, failed and cancelled jobs that finished before the cutoff; their counts
        stay. Schedule fire keys older than the cutoff go too (the schedule's next fire is
        long past them), and Idempotency-Keys claimed before `keys_before_ms`. Returns how
        many jobs were deleted."""
        ...

    # Schedules (recurring jobs). A change that names a schedule success (a completed job,
    # as the job queue decides) records it on the job's schedule in the change's transaction.

    def schedule_insert(self, schedule: Schedule, limit: int) -> bool:
        """Insert a schedule unless `limit` schedules exist already (then False)."""
        ...

    def schedule_get(self, schedule_id: str) -> Schedule | None: ...

    def schedule_list(self, due_before_ms: float | None = None) -> list[Schedule]:
        """Every schedule, oldest first; or only active ones due at `due_before_ms`."""
        ...

    def schedule_update(self, schedule_id: str, transition: ScheduleTransition) -> Schedule | None:
        """Apply `transition` under a row lock; None when no schedule has that id."""
        ...

    def schedule_delete(self, schedule_id: str) -> bool:
        """Delete a schedule and its fire keys (its jobs stay); False when absent."""
        ...

    def probe(self) -> None:
        """Raise StoreError unless a write transaction (that writes nothing) works."""
        ...

    def ping(self) -> None:
        """Raise StoreError unless the store answers a trivial query."""
        ...

    def close(self) -> None: ...
