"""Plain data shared by the tracker (which plans) and the store (which writes): no logic."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from exporter.model.counts import CountDeltas

Series = tuple[str, str]  # (type, name) label values after folding


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
    outcome: str | None  # None while running
    missing: int  # consecutive successful scrapes it was absent from


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
    # (source, id, type, name, start_ms, finish_ms, finished_at_ms, outcome)
    finished_inserts: list[tuple] = field(default_factory=list)
    inserts: list[tuple] = field(default_factory=list)  # folded jobs: JobRow's column order
    # What the index gains once the rows are committed: running jobs for one dict update.
    new_running: list[tuple[str, RunningJob]] = field(default_factory=list)
    new_finished: int = 0  # new jobs already finished when first seen
    finishes: list[FinishRow] = field(default_factory=list)
    missing: list[MissingRow] = field(default_factory=list)
    counts: CountDeltas = field(default_factory=CountDeltas)
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
            or self.finished_inserts
            or self.inserts
            or self.finishes
            or self.missing
            or self.counts
        )

    @property
    def insert_count(self) -> int:
        return len(self.running_inserts) + len(self.finished_inserts) + len(self.inserts)

    def job_rows(self) -> Iterator[tuple]:
        """Every new row in JobRow's column order, for a store that takes whole rows."""
        for source, job_id, job_type, name, start_ms in self.running_inserts:
            yield (source, job_id, job_type, name, job_type, name, start_ms, None, None, None, 0)
        for source, job_id, job_type, name, *finish in self.finished_inserts:
            yield (source, job_id, job_type, name, job_type, name, *finish, 0)
        yield from self.inserts


class RunningJob(msgspec.Struct, gc=False):
    """The little the tracker needs of a running job to finish it later. Untracked by the
    garbage collector (it refers to no container that could form a cycle), so an index of
    100,000 running jobs adds nothing to every collection's walk."""

    series: Series
    start_ms: float
    missing: int = 0
    seen: int = 0  # the planning pass that last saw it listed: scratch, never stored


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
    running: dict[str, RunningJob] = field(default_factory=dict)
    finished: int = 0  # how many finished jobs the store keeps for the source
    series: set[Series] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    _canonical: dict[Series, Series] = field(default_factory=dict, repr=False)

    def admit(self, series: Iterable[Series]) -> None:
        for pair in series:
            self.series.add(pair)
            self.types.add(pair[0])

    def canonical(self, series: Series) -> Series:
        """One shared tuple per series: running jobs then hold no strings of their own, so
        the decoded response they came from can be freed whole."""
        return self._canonical.setdefault(series, series)

    def load(self, rows: Iterable[tuple[str, str, str, float, int, str | None]]) -> None:
        """Fill the index from stored (id, label_type, label_name, start_ms, missing,
        outcome) rows."""
        for job_id, label_type, label_name, start_ms, missing, outcome in rows:
            if outcome is None:
                series = self.canonical((label_type, label_name))
                self.running[job_id] = RunningJob(series, start_ms, missing)
            else:
                self.finished += 1

    def apply(self, plan: Plan, generation: int) -> None:
        """Bring the index up to date after the store committed `plan`."""
        running = self.running
        running.update(plan.new_running)
        for finish in plan.finishes:
            running.pop(finish.id, None)
        self.finished += plan.new_finished + len(plan.finishes)
        for missing in plan.missing:
            job = running.get(missing.id)
            if job is not None:
                job.missing = missing.missing
        self.admit(plan.new_series)
        self.generation = generation

    def forget(self, job_ids: Collection[str]) -> None:
        """Count pruned finished jobs out."""
        self.finished -= len(job_ids)
