"""Plain data shared by the tracker (which plans) and the store (which writes): no logic."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from exporter.model.counts import CountDeltas
from exporter.model.exemplars import ExemplarDeltas

Series = tuple[str, str]  # (type, name) label values after folding

# What an open job (not finished) waits for: the `waiting` column and OpenJob.waiting.
RUNS = 0  # nothing: a run is under way
PENDING = 1  # its first run (it has never started)
RETRY = 2  # its next run: the last one failed and a retry was counted


class JobRow(NamedTuple):
    """A tracked job as the store keeps it (column order of the store's jobs table)."""

    source: str
    id: str
    type: str
    name: str
    label_type: str
    label_name: str
    start_ms: float
    finish_ms: float | None
    finished_at_ms: float | None  # when the exporter counted it finished; drives retention
    outcome: str | None  # None while open (running or waiting)
    missing: int  # consecutive successful scrapes it was absent from
    attempt: int = 1  # the run its row describes
    waiting: int = RUNS  # RUNS, PENDING or RETRY while open
    enqueue_ms: float | None = None  # when it was queued (reported, or first seen pending)
    error: str | None = None  # why its last run failed, as the app said
    reported_ms: float | None = None  # a push's last report of it; None: at start_ms


TRACKED_STATUSES = ("pending", "running", "completed", "failed", "lost")
MAX_TRACKED_PAGE = 500
DEFAULT_TRACKED_PAGE = 100


@dataclass(frozen=True)
class TrackedQuery:
    """A page of tracked jobs (GET /api/v1/tracked): filters, order, and where the last page
    ended as (start_ms, source, id), the order's key."""

    source: str | None = None
    type: str | None = None
    name: str | None = None
    status: str | None = None  # one of TRACKED_STATUSES
    text: str | None = None  # part of an id or a name, any case
    newest_first: bool = True
    limit: int = DEFAULT_TRACKED_PAGE
    after: tuple[float, str, str] | None = None


class JobUpdate(NamedTuple):
    """Every changeable column of a known job, for a change the short rows cannot say
    (a new run, a retry, a wait, an error): rare next to plain starts and finishes."""

    start_ms: float
    finish_ms: float | None
    finished_at_ms: float | None
    outcome: str | None
    missing: int
    attempt: int
    waiting: int
    enqueue_ms: float | None
    error: str | None
    reported_ms: float | None
    source: str
    id: str


class Touch(NamedTuple):
    """A pushed open job reported again with nothing changed: it is alive."""

    reported_ms: float
    source: str
    id: str


class FinishRow(NamedTuple):
    outcome: str
    finish_ms: float | None
    finished_at_ms: float
    source: str
    id: str


class MissingRow(NamedTuple):
    missing: int
    source: str
    id: str


@dataclass
class Plan:
    """What one scrape or push changes: rows to write and counts to add."""

    # New rows are plain tuples: sqlite3 binds an exact tuple faster than a NamedTuple, and
    # 100,000 of them are built without a Python-level __new__. Every value bound costs
    # (about a fifth of a first scrape's insert), so a job labelled with its own (type,
    # name), as every job is until the cardinality cap folds some, comes in a short row whose
    # label columns the store fills from its type and name; `job_rows` expands them all.
    # (source, id, type, name, start_ms)
    running_inserts: list[tuple] = field(default_factory=list)
    # (source, id, type, name, start_ms, reported_ms): pushed running jobs first reported
    # long after their start, whose time to be lost runs from that report
    late_inserts: list[tuple] = field(default_factory=list)
    # (source, id, type, name, start_ms, finish_ms, finished_at_ms, outcome)
    finished_inserts: list[tuple] = field(default_factory=list)
    # Folded jobs and jobs with extension fields: whole rows in JobRow's column order.
    inserts: list[tuple] = field(default_factory=list)
    # What the index gains once the rows are committed: open jobs for one dict update
    # (new ones, and known ones whose state changed).
    new_open: list[tuple[str, OpenJob]] = field(default_factory=list)
    new_finished: int = 0  # new jobs already finished when first seen
    finishes: list[FinishRow] = field(default_factory=list)
    missing: list[MissingRow] = field(default_factory=list)
    updates: list[JobUpdate] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # open jobs an update finished
    reopened: list[str] = field(default_factory=list)  # finished jobs an update opened again
    deletes: list[str] = field(default_factory=list)  # pending jobs gone before they started
    touches: list[Touch] = field(default_factory=list)
    counts: CountDeltas = field(default_factory=CountDeltas)
    # The latest job observed per bucket, for this process's exemplars once committed.
    exemplars: ExemplarDeltas = field(default_factory=dict)
    new_series: set[Series] = field(default_factory=set)
    new_types: set[str] = field(default_factory=set)
    deduplicated: bool = False  # some id was listed more than once

    def admit(self, series: Series) -> None:
        self.new_series.add(series)
        self.new_types.add(series[0])

    @property
    def empty(self) -> bool:
        return not (
            self.running_inserts
            or self.late_inserts
            or self.finished_inserts
            or self.inserts
            or self.finishes
            or self.missing
            or self.updates
            or self.deletes
            or self.touches
            or self.counts
        )

    @property
    def insert_count(self) -> int:
        return (
            len(self.running_inserts)
            + len(self.late_inserts)
            + len(self.finished_inserts)
            + len(self.inserts)
        )

    def job_rows(self) -> Iterator[tuple]:
        """Every new row in JobRow's column order, for a store that takes whole rows."""
        rest = _SHORT_ROW_REST
        for source, job_id, job_type, name, start_ms in self.running_inserts:
            yield (
                source,
                job_id,
                job_type,
                name,
                job_type,
                name,
                start_ms,
                None,
                None,
                None,
                0,
                *rest,
            )
        for source, job_id, job_type, name, start_ms, reported_ms in self.late_inserts:
            head = (source, job_id, job_type, name, job_type, name, start_ms)
            yield (*head, None, None, None, 0, 1, RUNS, None, None, reported_ms)
        for source, job_id, job_type, name, *finish in self.finished_inserts:
            yield (source, job_id, job_type, name, job_type, name, *finish, 0, *rest)
        yield from self.inserts


_SHORT_ROW_REST = (1, RUNS, None, None, None)  # attempt, waiting, enqueue, error, reported


class RunState(msgspec.Struct, frozen=True, gc=False):
    """What an open job beyond a plain first run has: a later attempt, a wait, a push's
    last report (None: at its start). Kept apart, so the open jobs of a plain source (the
    100,000 of a large scrape) carry one empty field, not three."""

    attempt: int = 1
    waiting: int = RUNS
    reported_ms: float | None = None


def run_state(attempt: int, waiting: int, reported_ms: float | None) -> RunState | None:
    """None for a plain first run under way, which is what OpenJob assumes without one."""
    if attempt == 1 and waiting == RUNS and reported_ms is None:
        return None
    return RunState(attempt, waiting, reported_ms)


class OpenJob(msgspec.Struct, gc=False):
    """The little the tracker needs of an open job (running, or waiting for a run) to
    move it on later. Untracked by the garbage collector (it refers to no container that
    could form a cycle), so an index of 100,000 open jobs adds nothing to every
    collection's walk."""

    series: Series
    start_ms: float  # its run's start; for a job never started, when it was queued
    missing: int = 0
    seen: int = 0  # the planning pass that last saw it listed: scratch, never stored
    run: RunState | None = None  # None: a plain first run under way

    @property
    def attempt(self) -> int:
        return 1 if self.run is None else self.run.attempt

    @property
    def waiting(self) -> int:
        return RUNS if self.run is None else self.run.waiting

    @property
    def reported_ms(self) -> float | None:
        return None if self.run is None else self.run.reported_ms


@dataclass
class SourceIndex:
    """The store's knowledge of one source, as of `generation` (bumped by every write).

    Held in memory so that comparing a 100,000-job scrape with what is known costs no store
    round trip; the generation lets a writer notice that someone else changed the source.
    Finished jobs are only counted here: which ids they are stays in the store, asked for
    only about jobs a scrape or push names that are not running (see Store.finished_among),
    so memory does not grow with the finished jobs kept for the retention period.
    """

    source: str
    generation: int = 0
    open: dict[str, OpenJob] = field(default_factory=dict)
    finished: int = 0  # how many finished jobs the store keeps for the source
    series: set[Series] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    _canonical: dict[Series, Series] = field(default_factory=dict, repr=False)

    def admit(self, series: Iterable[Series]) -> None:
        for pair in series:
            self.series.add(pair)
            self.types.add(pair[0])

    def canonical(self, series: Series) -> Series:
        """One shared tuple per series: open jobs then hold no strings of their own, so
        the decoded response they came from can be freed whole."""
        return self._canonical.setdefault(series, series)

    def load(self, rows: Iterable[tuple]) -> None:
        """Fill the index from stored (id, label_type, label_name, start_ms, missing,
        outcome, attempt, waiting, enqueue_ms, reported_ms) rows."""
        for row in rows:
            job_id, label_type, label_name, start_ms, missing, outcome, *rest = row
            if outcome is None:
                attempt, waiting, enqueue_ms, reported_ms = rest
                if waiting == PENDING and enqueue_ms is not None:
                    start_ms = enqueue_ms  # what its queue wait is measured from
                series = self.canonical((label_type, label_name))
                run = run_state(attempt, waiting, reported_ms)
                self.open[job_id] = OpenJob(series, start_ms, missing, 0, run)
            else:
                self.finished += 1

    def apply(self, plan: Plan, generation: int) -> None:
        """Bring the index up to date after the store committed `plan`."""
        open_jobs = self.open
        open_jobs.update(plan.new_open)
        for finish in plan.finishes:
            open_jobs.pop(finish.id, None)
        for job_id in plan.closed:
            open_jobs.pop(job_id, None)
        for job_id in plan.deletes:
            open_jobs.pop(job_id, None)
        self.finished += (
            plan.new_finished + len(plan.finishes) + len(plan.closed) - len(plan.reopened)
        )
        for missing in plan.missing:
            job = open_jobs.get(missing.id)
            if job is not None:
                job.missing = missing.missing
        for touch in plan.touches:
            job = open_jobs.get(touch.id)
            if job is not None:
                job.run = RunState(job.attempt, job.waiting, touch.reported_ms)
        self.admit(plan.new_series)
        self.generation = generation

    def forget(self, job_ids: Collection[str]) -> None:
        """Count pruned finished jobs out."""
        self.finished -= len(job_ids)
