"""Observed jobs to transitions and count changes, per docs/contract.md §2. Pure: no I/O.

The tracker plans against a `SourceIndex` (what the store knows of one source, held in memory
so a 100,000-job scrape needs no per-job store round trip) and returns a `Plan`. The caller
writes the plan to the store in one transaction and only then applies it to the index, so a
failed write leaves both untouched.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count

from exporter.config import DEFAULT_MAX_SERIES_PER_SOURCE
from exporter.model.counts import Buckets, CountKind, Outcome, observe_all
from exporter.model.jobinfo import JobInfo
from exporter.model.tracked import (
    FinishRow,
    MissingRow,
    Plan,
    RunningJob,
    Series,
    SourceIndex,
)

OTHER = "__other__"
LOST_AFTER_MISSING_SCRAPES = 2
_passes = count(1)  # planning passes, numbered to mark the running jobs each one sees


@dataclass(frozen=True)
class LabelGuard:
    """Caps distinct (type, name) series per source; the rest fold into `__other__`.

    Admitted series stay admitted forever, so a job is always finished under the labels it
    started with. Once full, a job of a known type keeps its type and loses its name; a job
    of a new type loses both, so a source never holds more than `max_series` + types + 1.
    """

    max_series: int = DEFAULT_MAX_SERIES_PER_SOURCE

    def labels(self, index: SourceIndex, plan: Plan, job_type: str, name: str) -> Series:
        wanted = (job_type, name)
        if wanted in index.series or wanted in plan.new_series:
            return wanted
        if len(index.series) + len(plan.new_series) < self.max_series:
            plan.admit(wanted)
            return wanted
        plan.counts[("", "", CountKind.FOLDED_JOBS, "")] += 1
        known_type = job_type in index.types or job_type in plan.new_types
        folded = (job_type, OTHER) if known_type else (OTHER, OTHER)
        if folded not in index.series:
            plan.admit(folded)
        return folded


def plan_changes(
    index: SourceIndex,
    jobs: Sequence[JobInfo],
    now_ms: float,
    *,
    complete_list: bool,
    guard: LabelGuard,
    buckets: Buckets,
    unlisted: Collection[str] | None = None,
    finished: Container[str] = frozenset(),
) -> Plan:
    """Plan the transitions for `jobs`.

    `finished` holds, of the jobs named that are not running, those the store has counted
    finished already (Store.finished_among); they are never counted again.

    `complete_list` is true for a scrape, which lists every job the source has, so running
    jobs absent from it can be counted lost; a push lists only what it mentions. A scrape
    that passes only its changed items names in `unlisted` the only jobs that may be absent
    (see listing.py); the running ones among them not in `jobs` are.

    The same id twice counts once, the last occurrence winning at the first one's place.
    Duplicates are rare, so the plan is made in one pass that notices them, and made again
    from deduplicated jobs only when it does.
    """
    plan = _plan_pass(index, jobs, now_ms, complete_list, guard, buckets, unlisted, finished)
    if plan is None:
        latest = list({job.id: job for job in jobs}.values())
        plan = _plan_pass(index, latest, now_ms, complete_list, guard, buckets, unlisted, finished)
        assert plan is not None
        plan.deduplicated = True
    return plan


def _plan_pass(
    index: SourceIndex,
    jobs: Sequence[JobInfo],
    now_ms: float,
    complete_list: bool,
    guard: LabelGuard,
    buckets: Buckets,
    unlisted: Collection[str] | None,
    finished_ids: Container[str],
) -> Plan | None:
    """One dict lookup per job (a set lookup more for one not running) finds what changed;
    counts are summed per series as they go and added once at the end, so a first scrape
    of 100,000 jobs changes a few thousand count rows, not 300,000 times a counter.

    Each running job seen is marked with this pass's number, which finds both a running id
    listed twice and, afterwards, the running jobs not listed at all, with no set of every
    id listed. None means some id came twice."""
    plan = Plan()
    source = index.source
    running_get = index.running.get
    started: Counter[Series] = Counter()
    outcomes: Counter[tuple[Series, str]] = Counter()
    durations: dict[Series, list[float]] = defaultdict(list)
    # type -> name -> the tally of new jobs of a pair labelled as itself. Two lookups by
    # string find it with no (type, name) tuple built and hashed per job.
    tallies: dict[str, dict[str, _Tally]] = {}
    stamp = next(_passes)
    new_ids: set[str] = set()
    running_inserts = plan.running_inserts.append
    finished_inserts = plan.finished_inserts.append
    new_running = plan.new_running.append
    completed, failed = Outcome.COMPLETED, Outcome.FAILED  # bound once: read per new job
    seen_running = 0
    for job in jobs:
        job_id = job.id
        known = running_get(job_id)
        if known is not None:
            if known.seen == stamp:
                return None
            known.seen = stamp
            seen_running += 1
            if job.is_finished:
                _finish_known(plan, source, job_id, job, known, now_ms, outcomes, durations)
            elif known.missing:
                plan.missing.append(MissingRow(0, source, job_id))  # seen again
            continue
        if job_id in finished_ids:
            continue  # counted already; whatever it says now, never count it again
        if job_id in new_ids:
            return None
        new_ids.add(job_id)
        job_type = job.background_job_type
        name = job.name
        names = tallies.get(job_type)
        tally = None if names is None else names.get(name)
        if tally is None:
            series = index.canonical(guard.labels(index, plan, job_type, name))
            if series != (job_type, name):
                _insert_folded(plan, source, job, series, now_ms, outcomes, durations)
                started[series] += 1
                continue
            tally = tallies.setdefault(job_type, {})[name] = _Tally(series)
        tally.started += 1
        start_ms = job.start_timestamp
        if job.is_finished:
            if job.status == "failed":  # JobInfoBase's status
                outcome = failed
                tally.failed += 1
            else:
                outcome = completed
                tally.completed += 1
            finish_ms = job.finish_timestamp
            if finish_ms is not None:
                tally.durations.append((finish_ms - start_ms) / 1000)
            finished_inserts((source, job_id, job_type, name, start_ms, finish_ms, now_ms, outcome))
            plan.new_finished += 1
        else:
            running_inserts((source, job_id, job_type, name, start_ms))
            new_running((job_id, RunningJob(tally.series, start_ms)))
    for names in tallies.values():
        for tally in names.values():
            tally.add_to(started, outcomes, durations)
    _add_counts(plan, buckets, started, outcomes, durations)
    if complete_list and unlisted is not None:
        running = index.running
        candidates = ((i, running[i]) for i in unlisted if i in running)
        _plan_missing(plan, index.source, candidates, stamp, now_ms)
    elif complete_list and seen_running < len(index.running):  # only when some went missing
        _plan_missing(plan, index.source, index.running.items(), stamp, now_ms)
    return plan


@dataclass(slots=True)
class _Tally:
    """What one planning pass counts of the new jobs of one series labelled as itself."""

    series: Series
    started: int = 0
    completed: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)

    def add_to(
        self,
        started: Counter[Series],
        outcomes: Counter[tuple[Series, str]],
        durations: dict[Series, list[float]],
    ) -> None:
        series = self.series
        started[series] += self.started
        if self.completed:
            outcomes[(series, Outcome.COMPLETED)] += self.completed
        if self.failed:
            outcomes[(series, Outcome.FAILED)] += self.failed
        if self.durations:
            durations[series].extend(self.durations)


def _add_counts(
    plan: Plan,
    buckets: Buckets,
    started: Counter[Series],
    outcomes: Counter[tuple[Series, str]],
    durations: dict[Series, list[float]],
) -> None:
    counts = plan.counts
    for series, n in started.items():
        counts[(*series, CountKind.STARTED, "")] += n
    for (series, outcome), n in outcomes.items():
        counts[(*series, CountKind.FINISHED, outcome)] += n
    for series, seconds in durations.items():
        observe_all(
            counts, buckets, series, CountKind.DURATION_BUCKET, CountKind.DURATION_SUM, seconds
        )


def _insert_folded(
    plan: Plan,
    source: str,
    job: JobInfo,
    series: Series,
    now_ms: float,
    outcomes: Counter[tuple[Series, str]],
    durations: dict[Series, list[float]],
) -> None:
    """A new job the cardinality cap folded: a whole row, its labels apart from its type
    and name (rare, so kept out of the loop's common path)."""
    start_ms = job.start_timestamp
    row = (source, job.id, job.background_job_type, job.name, *series, start_ms)
    if job.is_finished:
        outcome = Outcome.FAILED if job.failed else Outcome.COMPLETED
        outcomes[(series, outcome)] += 1
        finish_ms = job.finish_timestamp
        if finish_ms is not None:
            durations[series].append((finish_ms - start_ms) / 1000)
        plan.inserts.append((*row, finish_ms, now_ms, outcome, 0))
        plan.new_finished += 1
    else:
        plan.inserts.append((*row, None, None, None, 0))
        plan.new_running.append((job.id, RunningJob(series, start_ms)))


def _finish_known(
    plan: Plan,
    source: str,
    job_id: str,
    job: JobInfo,
    known: RunningJob,
    now_ms: float,
    outcomes: Counter[tuple[Series, str]],
    durations: dict[Series, list[float]],
) -> None:
    outcome = Outcome.FAILED if job.failed else Outcome.COMPLETED
    end_ms = job.finish_timestamp if job.finish_timestamp is not None else now_ms
    outcomes[(known.series, outcome)] += 1
    durations[known.series].append((end_ms - job.start_timestamp) / 1000)
    plan.finishes.append(FinishRow(outcome, end_ms, now_ms, source, job_id))


def _plan_missing(
    plan: Plan,
    source: str,
    running: Iterable[tuple[str, RunningJob]],
    stamp: int,
    now_ms: float,
) -> None:
    """Running jobs absent from a complete list: lost after two consecutive absences."""
    for job_id, known in running:
        if known.seen == stamp:
            continue
        missing = known.missing + 1
        if missing >= LOST_AFTER_MISSING_SCRAPES:
            plan.counts[(*known.series, CountKind.FINISHED, Outcome.LOST)] += 1
            plan.finishes.append(FinishRow(Outcome.LOST, None, now_ms, source, job_id))
        else:
            plan.missing.append(MissingRow(missing, source, job_id))


def plan_timeouts(index: SourceIndex, started_before_ms: float, now_ms: float) -> Plan:
    """Pushed jobs have no full list to vanish from: one still running that started before
    `started_before_ms` counts as finished, outcome `lost` (docs/contract.md §2)."""
    plan = Plan()
    for job_id, known in index.running.items():
        if known.start_ms < started_before_ms:
            plan.counts[(*known.series, CountKind.FINISHED, Outcome.LOST)] += 1
            plan.finishes.append(FinishRow(Outcome.LOST, None, now_ms, index.source, job_id))
    return plan
