"""Observed jobs to transitions and count changes, per docs/contract.md §2. Pure: no I/O.

The tracker plans against a `SourceIndex` (what the store knows of one source, held in memory
so a 100,000-job scrape needs no per-job store round trip) and returns a `Plan`. The caller
writes the plan to the store in one transaction and only then applies it to the index, so a
failed write leaves both untouched.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count

from exporter.config import DEFAULT_MAX_SERIES, DEFAULT_MAX_SERIES_PER_SOURCE
from exporter.model.counts import Buckets, CountKind, Outcome, observe_all
from exporter.model.jobinfo import WAITING_STATUSES, JobInfo
from exporter.model.tracked import (
    RUNS,
    FinishRow,
    MissingRow,
    OpenJob,
    Plan,
    RunState,
    Series,
    SourceIndex,
    Touch,
)
from exporter.tracking.runs import Runs

OTHER = "__other__"
LOST_AFTER_MISSING_SCRAPES = 2
# A pushed job first reported this long after its start has its report time written, so
# the time after which it counts lost runs from its report, not from its start.
LATE_REPORT_MS = 60_000
TOUCH_EVERY_MS = 1_000  # a pushed open job's report time is rewritten at most this often
_passes = count(1)  # planning passes, numbered to mark the open jobs each one sees
SeriesKey = tuple[str, str, str]  # source, type, name


class SeriesBudget:
    """The exporter's job series in total, across sources: the per-source cap alone lets
    a hundred push sources hold a hundred times as many series as one.

    It holds every (source, type, name) admitted: those the store has (`seed`, read once,
    at the first series that would be new, so a restart starts full), those of each index
    it is shown, and each one admitted since. A series admitted for a plan whose write then
    failed stays counted; it is the same series when that job comes again. Thread-safe:
    sources plan at once under their own locks."""

    def __init__(
        self, limit: int = DEFAULT_MAX_SERIES, seed: Callable[[], Iterable[SeriesKey]] | None = None
    ) -> None:
        self.limit = limit
        self._seed = seed
        self._admitted: set[SeriesKey] = set()
        self._sources: set[str] = set()  # whose index series are in `_admitted`
        self._lock = threading.Lock()

    def admit(self, index: SourceIndex, series: Series) -> bool:
        """Whether `series` of the index's source may be a series of its own."""
        key = (index.source, *series)
        with self._lock:
            self._know(index)
            if key in self._admitted:
                return True
            if len(self._admitted) >= self.limit:
                return False
            self._admitted.add(key)
            return True

    def note(self, index: SourceIndex, series: Series) -> None:
        """A folded series: admitted whatever the count (`LabelGuard` bounds those)."""
        with self._lock:
            self._know(index)
            self._admitted.add((index.source, *series))

    def __len__(self) -> int:
        with self._lock:
            return len(self._admitted)

    def _know(self, index: SourceIndex) -> None:
        if self._seed is not None:
            seed, self._seed = self._seed, None
            try:
                self._admitted.update(seed())
            except BaseException:
                self._seed = seed  # the store failed: read it next time
                raise
        if index.source not in self._sources:
            self._sources.add(index.source)
            source = index.source
            self._admitted.update((source, *pair) for pair in index.series)


@dataclass(frozen=True)
class LabelGuard:
    """Caps distinct (type, name) series per source, and in total through `budget`; the
    rest fold into `__other__`.

    Admitted series stay admitted forever, so a job is always finished under the labels it
    started with. Once full, a job of a known type keeps its type and loses its name; a job
    of a new type loses both, so a source never holds more than `max_series` + types + 1,
    and the exporter never more than the budget's limit + each source's types + 1.
    """

    max_series: int = DEFAULT_MAX_SERIES_PER_SOURCE
    budget: SeriesBudget = field(default_factory=SeriesBudget, compare=False)

    def labels(self, index: SourceIndex, plan: Plan, job_type: str, name: str) -> Series:
        wanted = (job_type, name)
        if wanted in index.series or wanted in plan.new_series:
            return wanted
        if len(index.series) + len(plan.new_series) < self.max_series and self.budget.admit(
            index, wanted
        ):
            plan.admit(wanted)
            return wanted
        plan.counts[("", "", CountKind.FOLDED_JOBS, "")] += 1
        known_type = job_type in index.types or job_type in plan.new_types
        folded = (job_type, OTHER) if known_type else (OTHER, OTHER)
        if folded not in index.series:
            plan.admit(folded)
            self.budget.note(index, folded)
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
    finished: Mapping[str, int] | None = None,
) -> Plan:
    """Plan the transitions for `jobs`.

    `finished` maps, of the jobs named that are not open, those the store has counted
    finished already (Store.finished_among) to the attempt of their last run; they are
    never counted again unless a later attempt of theirs is reported (a new run).

    `complete_list` is true for a scrape, which lists every job the source has, so open
    jobs absent from it can be counted lost; a push lists only what it mentions. A scrape
    that passes only its changed items names in `unlisted` the only jobs that may be absent
    (see listing.py); the open ones among them not in `jobs` are.

    The same id twice counts once, the last occurrence winning at the first one's place.
    Duplicates are rare, so the plan is made in one pass that notices them, and made again
    from deduplicated jobs only when it does.
    """
    done = finished or {}
    plan = _plan_pass(index, jobs, now_ms, complete_list, guard, buckets, unlisted, done)
    if plan is None:
        latest = list({job.id: job for job in jobs}.values())
        plan = _plan_pass(index, latest, now_ms, complete_list, guard, buckets, unlisted, done)
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
    finished_runs: Mapping[str, int],
) -> Plan | None:
    """One dict lookup per job (another for one not open) finds what changed; counts are
    summed per series as they go and added once at the end, so a first scrape of 100,000
    jobs changes a few thousand count rows, not 300,000 times a counter.

    Jobs that only start or finish a first run take the short path here; anything the
    extension fields say (a wait, a retry, a later attempt, an error) goes to `Runs`,
    which writes whole rows and is rare next to them.

    Each open job seen is marked with this pass's number, which finds both an open id
    listed twice and, afterwards, the open jobs not listed at all, with no set of every
    id listed. None means some id came twice."""
    plan = Plan()
    source = index.source
    open_get = index.open.get
    finished_get = finished_runs.get
    pushed = not complete_list
    runs = Runs(plan, index, guard.labels, buckets, now_ms, pushed)
    started: Counter[Series] = Counter()
    outcomes: Counter[tuple[Series, str]] = Counter()
    durations: dict[Series, list[float]] = defaultdict(list)
    duration_ids: dict[Series, list[str]] = defaultdict(list)  # whose, in the same order
    # type -> name -> the tally of new jobs of a pair labelled as itself. Two lookups by
    # string find it with no (type, name) tuple built and hashed per job.
    tallies: dict[str, dict[str, _Tally]] = {}
    stamp = next(_passes)
    new_ids: set[str] = set()
    running_inserts = plan.running_inserts.append
    finished_inserts = plan.finished_inserts.append
    new_open = plan.new_open.append
    completed, failed = Outcome.COMPLETED, Outcome.FAILED  # bound once: read per new job
    waiting_statuses = WAITING_STATUSES
    late_ms = now_ms - LATE_REPORT_MS if pushed else -1.0
    seen_open = 0
    for job in jobs:
        job_id = job.id
        known = open_get(job_id)
        if known is not None:
            if known.seen == stamp:
                return None
            known.seen = stamp
            seen_open += 1
            if known.run is not None or job.attempt != 1 or job.status in waiting_statuses:
                runs.known(job_id, job, known)
            elif job.is_finished:
                if job.error is None:
                    _finish_known(
                        plan, source, job_id, job, known, now_ms, outcomes, durations, duration_ids
                    )
                else:  # an error to keep, or one of an earlier run to clear
                    runs.known(job_id, job, known)
            else:
                if known.missing:
                    plan.missing.append(MissingRow(0, source, job_id))  # seen again
                if pushed:
                    _touch(plan, source, job_id, known, now_ms)
            continue
        last_attempt = finished_get(job_id)
        if last_attempt is not None:
            if job.attempt > last_attempt:
                if job_id in new_ids:
                    return None
                new_ids.add(job_id)
                runs.revive(job_id, job)  # a later run of a finished job
            continue  # else counted already: whatever it says now, never count it again
        if job_id in new_ids:
            return None
        new_ids.add(job_id)
        start_ms = job.start_timestamp
        if (
            job.attempt != 1
            or job.status in waiting_statuses
            or job.enqueue_timestamp is not None
            or job.error is not None
        ):
            runs.new(job_id, job)
            continue
        job_type = job.background_job_type
        name = job.name
        names = tallies.get(job_type)
        tally = None if names is None else names.get(name)
        if tally is None:
            series = index.canonical(guard.labels(index, plan, job_type, name))
            if series != (job_type, name):
                runs.new(job_id, job, series)  # folded: a whole row, its labels apart
                continue
            tally = tallies.setdefault(job_type, {})[name] = _Tally(series)
        tally.started += 1
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
                tally.ids.append(job_id)
            finished_inserts((source, job_id, job_type, name, start_ms, finish_ms, now_ms, outcome))
            plan.new_finished += 1
        elif start_ms < late_ms:  # pushed long after it started: lost-after runs from now
            plan.late_inserts.append((source, job_id, job_type, name, start_ms, now_ms))
            new_open((job_id, OpenJob(tally.series, start_ms, 0, 0, RunState(1, RUNS, now_ms))))
        else:
            running_inserts((source, job_id, job_type, name, start_ms))
            new_open((job_id, OpenJob(tally.series, start_ms)))
    for names in tallies.values():
        for tally in names.values():
            tally.add_to(started, outcomes, durations, duration_ids)
    _add_counts(plan, buckets, started, outcomes, durations, duration_ids, now_ms)
    if complete_list and unlisted is not None:
        open_jobs = index.open
        candidates = ((i, open_jobs[i]) for i in unlisted if i in open_jobs)
        _plan_missing(plan, runs, candidates, stamp)
    elif complete_list and seen_open < len(index.open):  # only when some went missing
        _plan_missing(plan, runs, index.open.items(), stamp)
    return plan


def _touch(plan: Plan, source: str, job_id: str, known: OpenJob, now_ms: float) -> None:
    """A push reported an open job again with nothing new: it is alive (a heartbeat)."""
    reported = known.reported_ms if known.reported_ms is not None else known.start_ms
    if now_ms - reported >= TOUCH_EVERY_MS:
        plan.touches.append(Touch(now_ms, source, job_id))


@dataclass(slots=True)
class _Tally:
    """What one planning pass counts of the new jobs of one series labelled as itself."""

    series: Series
    started: int = 0
    completed: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # whose durations, in the same order

    def add_to(
        self,
        started: Counter[Series],
        outcomes: Counter[tuple[Series, str]],
        durations: dict[Series, list[float]],
        duration_ids: dict[Series, list[str]],
    ) -> None:
        series = self.series
        started[series] += self.started
        if self.completed:
            outcomes[(series, Outcome.COMPLETED)] += self.completed
        if self.failed:
            outcomes[(series, Outcome.FAILED)] += self.failed
        if self.durations:
            durations[series].extend(self.durations)
            duration_ids[series].extend(self.ids)


def _add_counts(
    plan: Plan,
    buckets: Buckets,
    started: Counter[Series],
    outcomes: Counter[tuple[Series, str]],
    durations: dict[Series, list[float]],
    duration_ids: dict[Series, list[str]],
    now_ms: float,
) -> None:
    counts = plan.counts
    for series, n in started.items():
        counts[(*series, CountKind.STARTED, "")] += n
    for (series, outcome), n in outcomes.items():
        counts[(*series, CountKind.FINISHED, outcome)] += n
    for series, seconds in durations.items():
        observe_all(
            counts,
            buckets,
            series,
            CountKind.DURATION_BUCKET,
            CountKind.DURATION_SUM,
            seconds,
            job_ids=duration_ids[series],
            at_ms=now_ms,
            exemplars=plan.exemplars,
        )


def _finish_known(
    plan: Plan,
    source: str,
    job_id: str,
    job: JobInfo,
    known: OpenJob,
    now_ms: float,
    outcomes: Counter[tuple[Series, str]],
    durations: dict[Series, list[float]],
    duration_ids: dict[Series, list[str]],
) -> None:
    outcome = Outcome.FAILED if job.failed else Outcome.COMPLETED
    end_ms = job.finish_timestamp if job.finish_timestamp is not None else now_ms
    outcomes[(known.series, outcome)] += 1
    durations[known.series].append((end_ms - job.start_timestamp) / 1000)
    duration_ids[known.series].append(job_id)
    plan.finishes.append(FinishRow(outcome, end_ms, now_ms, source, job_id))


def _plan_missing(
    plan: Plan, runs: Runs, open_jobs: Iterable[tuple[str, OpenJob]], stamp: int
) -> None:
    """Open jobs absent from a complete list: gone after two consecutive absences. A
    running one is lost; one waiting for a run is forgotten (`Runs.vanish`)."""
    source = runs.source
    for job_id, known in open_jobs:
        if known.seen == stamp:
            continue
        missing = known.missing + 1
        if missing < LOST_AFTER_MISSING_SCRAPES:
            plan.missing.append(MissingRow(missing, source, job_id))
        elif known.waiting:
            runs.vanish(job_id, known)
        else:
            plan.counts[(*known.series, CountKind.FINISHED, Outcome.LOST)] += 1
            plan.finishes.append(FinishRow(Outcome.LOST, None, runs.now_ms, source, job_id))


def plan_timeouts(index: SourceIndex, lost_after_ms: float, now_ms: float) -> Plan:
    """Pushed jobs have no full list to vanish from: one still open and not reported for
    `lost_after_ms` is gone (docs/contract.md §2): a running one counts as finished,
    outcome `lost`; one waiting for a run is forgotten (`Runs.vanish`)."""
    plan = Plan()
    runs = Runs(plan, index, LabelGuard().labels, Buckets(), now_ms, pushed=True)
    cutoff_ms = now_ms - lost_after_ms
    for job_id, known in index.open.items():
        reported = known.reported_ms if known.reported_ms is not None else known.start_ms
        if reported >= cutoff_ms:
            continue
        if known.waiting:
            runs.vanish(job_id, known)
        else:
            plan.counts[(*known.series, CountKind.FINISHED, Outcome.LOST)] += 1
            plan.finishes.append(FinishRow(Outcome.LOST, None, now_ms, index.source, job_id))
    return plan
