"""What /metrics shows, decided once: the families, and every sample's value per series.

Both the prometheus_client collector (for registries) and the fast renderer (for /metrics)
draw from this view, so the rules of which samples exist (zero-filled outcomes, an oldest
start only while jobs run, queue wait only where there is one) live in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.health import SourceHealth
from exporter.model.counts import (
    Buckets,
    CountKind,
    Outcome,
    PushRefusal,
    RetryTrigger,
    ScrapeErrorReason,
)
from exporter.model.exemplars import Exemplar, SeriesExemplars, SeriesKey
from exporter.model.schedules import Schedule
from exporter.store import Snapshot

JOB_LABELS = ("source", "type", "name")
SCHEDULE_LABELS = ("schedule", "type", "name")
CountName = tuple[str, str]


@dataclass(frozen=True)
class Family:
    """A metric family; counters are named without `_total`, as OpenMetrics names them."""

    name: str
    kind: str  # counter, gauge or histogram
    help: str
    labels: tuple[str, ...] = ()


class Families:
    """Every family /metrics shows, each by one name: the package spells their names only here."""

    RUNNING = Family("background_jobs_running", "gauge", "Jobs running now.", JOB_LABELS)
    PENDING = Family(
        "background_jobs_pending",
        "gauge",
        "Jobs waiting to run, for a first run or a retry.",
        JOB_LABELS,
    )
    OLDEST_START = Family(
        "background_jobs_oldest_start_timestamp_seconds",
        "gauge",
        "Start time of the oldest running job, in seconds since the epoch.",
        JOB_LABELS,
    )
    STARTED = Family("background_jobs_started", "counter", "Runs started.", JOB_LABELS)
    FINISHED = Family(
        "background_jobs_finished",
        "counter",
        "Runs finished, by outcome.",
        (*JOB_LABELS, "outcome"),
    )
    RETRIES = Family(
        "background_jobs_retries",
        "counter",
        "Retries scheduled, by trigger.",
        (*JOB_LABELS, "trigger"),
    )
    CANCELLED = Family(
        "background_jobs_cancelled",
        "counter",
        "Job-API jobs cancelled while pending (they never ran again: no finished outcome).",
        JOB_LABELS,
    )
    DURATION = Family(
        "background_jobs_duration_seconds", "histogram", "Run time of finished jobs.", JOB_LABELS
    )
    QUEUE_WAIT = Family(
        "background_jobs_queue_wait_seconds",
        "histogram",
        "Time from a job's creation to its first start (job API).",
        JOB_LABELS,
    )
    SOURCE_UP = Family(
        "job_exporter_source_up",
        "gauge",
        "1 when the last scrape of the source succeeded.",
        ("source",),
    )
    SOURCE_OWNED = Family(
        "job_exporter_source_owned",
        "gauge",
        "1 on the replica that scrapes the source (holds its lease), 0 on those standing by.",
        ("source",),
    )
    SCRAPE_DURATION = Family(
        "job_exporter_source_scrape_duration_seconds",
        "gauge",
        "How long the last scrape of the source took.",
        ("source",),
    )
    LAST_SUCCESS = Family(
        "job_exporter_source_last_success_timestamp_seconds",
        "gauge",
        "When the source was last scraped successfully, in seconds since the epoch.",
        ("source",),
    )
    SCRAPE_ERRORS = Family(
        "job_exporter_source_scrape_errors",
        "counter",
        "Failed scrapes, by reason.",
        ("source", "reason"),
    )
    INVALID_JOBS = Family(
        "job_exporter_invalid_jobs",
        "counter",
        "Items skipped because a field was invalid.",
        ("source", "field"),
    )
    FOLDED_JOBS = Family(
        "job_exporter_folded_jobs",
        "counter",
        "Jobs whose name was folded into __other__ by a series cap (per source or in total).",
        ("source",),
    )
    PUSH_REFUSED = Family(
        "job_exporter_push_refused",
        "counter",
        "Pushes refused by this process, by reason: sources (a new source past the cap).",
        ("reason",),
    )
    TRACKED_JOBS = Family(
        "job_exporter_tracked_jobs", "gauge", "Jobs the store remembers, per source.", ("source",)
    )
    STORE_ERRORS = Family(
        "job_exporter_store_errors",
        "counter",
        "Store operations that failed (the exporter's log says why).",
    )
    STORE_UP = Family(
        "job_exporter_store_up",
        "gauge",
        "1 while the store answers; 0 while it fails, and the counts shown are the last read.",
    )
    CLOCK_STEP = Family(
        "job_exporter_clock_step_seconds",
        "gauge",
        "How far the wall clock stepped from the exporter's time line since start (0: none).",
    )
    BUILD_INFO = Family(
        "job_exporter_build_info",
        "gauge",
        "Always 1; its labels say which release, source revision and Python run.",
        ("version", "revision", "python_version"),
    )
    SCHEDULE_FIRES = Family(
        "job_exporter_schedule_fires",
        "counter",
        "Schedule fires, by result: on_time, late (missed, run once), skipped, manual (run now).",
        (*SCHEDULE_LABELS, "result"),
    )
    SCHEDULE_LAST_FIRE = Family(
        "job_exporter_schedule_last_fire_timestamp_seconds",
        "gauge",
        "Instant of the schedule's latest fire that created a job.",
        SCHEDULE_LABELS,
    )
    SCHEDULE_NEXT_FIRE = Family(
        "job_exporter_schedule_next_fire_timestamp_seconds",
        "gauge",
        "When the schedule fires next (absent while paused).",
        SCHEDULE_LABELS,
    )
    SCHEDULE_LAST_SUCCESS = Family(
        "job_exporter_schedule_last_success_timestamp_seconds",
        "gauge",
        "When a job the schedule created last completed.",
        SCHEDULE_LABELS,
    )
    SCHEDULE_UNANSWERED = Family(
        "job_exporter_schedule_unanswered_fire_timestamp_seconds",
        "gauge",
        "Instant of the oldest fire since the schedule's last success (absent when none).",
        SCHEDULE_LABELS,
    )
    SCHEDULE_PAUSED = Family(
        "job_exporter_schedule_paused",
        "gauge",
        "1 while the schedule is paused, else 0.",
        SCHEDULE_LABELS,
    )


@dataclass(frozen=True, slots=True)
class HistogramValues:
    cumulative: tuple[float, ...]  # one per bucket bound, +Inf last
    sum: float

    @property
    def count(self) -> float:
        return self.cumulative[-1]


@dataclass(frozen=True, slots=True)
class JobSeries:
    labels: tuple[str, str, str]  # source, type, name
    running: float
    pending: float
    oldest_start_s: float | None  # None: nothing runs, so no sample
    started: float
    finished: tuple[float, ...]  # in Outcome.ALL order
    retries: tuple[float, ...]  # in RetryTrigger.ALL order
    cancelled: float
    duration: HistogramValues
    queue_wait: HistogramValues | None  # None: never queued, so no samples


@dataclass(frozen=True, slots=True)
class SourceRow:
    source: str
    up: float | None
    owned: float | None  # None for pushed sources
    scrape_duration_s: float | None
    last_success_s: float | None
    errors: tuple[float, ...] | None  # in ScrapeErrorReason.ALL order; None for pushes
    invalid: tuple[tuple[str, float], ...]
    folded: float


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One schedule's samples; None means no sample (never fired, paused, never succeeded).

    The number of schedules is capped (--max-schedules), which bounds these series.
    """

    labels: tuple[str, str, str]  # schedule id, type, name
    fires: tuple[float, ...]  # in FireResult.ALL order
    last_fire_s: float | None
    next_fire_s: float | None
    last_success_s: float | None
    unanswered_s: float | None
    paused: float


@dataclass(frozen=True)
class MetricsView:
    bucket_labels: tuple[str, ...]
    series: tuple[JobSeries, ...]
    sources: tuple[SourceRow, ...]
    tracked: tuple[tuple[str, int], ...]
    store_errors: float
    version: str
    schedules: tuple[ScheduleRow, ...] = ()
    store_up: float = 1
    clock_step_s: float = 0
    push_refused: tuple[float, ...] = (0.0,) * len(PushRefusal.ALL)  # in PushRefusal.ALL order
    revision: str = "unknown"  # build_info's other labels (exporter/metrics/build.py)
    python_version: str = ""
    # This process's exemplars per series (the board's, not to be changed): read per
    # series only by OpenMetrics, through `bucket_exemplars`, so the text format pays
    # nothing for them.
    exemplars: Mapping[SeriesKey, SeriesExemplars] = field(default_factory=dict)

    def bucket_exemplars(
        self, series: JobSeries, family: str
    ) -> tuple[Exemplar | None, ...] | None:
        """The exemplar of each bucket of one of `series`' histograms (`family` is its
        CountKind.*_BUCKET), in bucket order; None when it has none."""
        recorded = self.exemplars.get(series.labels)
        return None if recorded is None else recorded.get(family)


def build_view(
    snapshot: Snapshot | None,
    health: Mapping[str, SourceHealth],
    store_errors: float,
    buckets: Buckets,
    version: str,
    store_up: bool = True,
    clock_step_s: float = 0,
    push_refused: Mapping[str, float] | None = None,
    revision: str = "unknown",
    python_version: str = "",
    exemplars: Mapping[SeriesKey, SeriesExemplars] | None = None,
) -> MetricsView:
    """The view of a snapshot (None when the store was never read: health alone)."""
    series: tuple[JobSeries, ...] = ()
    stored_health: Mapping[str, Mapping[CountName, float]] = {}
    tracked: tuple[tuple[str, int], ...] = ()
    schedules: tuple[ScheduleRow, ...] = ()
    if snapshot is not None:
        series = tuple(_job_series(snapshot, buckets))
        stored_health = snapshot.health
        tracked = tuple(sorted(snapshot.tracked.items()))
        schedules = tuple(_schedule_row(one) for one in snapshot.schedules)
    sources = tuple(
        _source_row(source, health.get(source), stored_health.get(source, {}))
        for source in sorted(stored_health.keys() | health.keys())
    )
    return MetricsView(
        buckets.labels,
        series,
        sources,
        tracked,
        store_errors,
        version,
        schedules,
        store_up=1 if store_up else 0,
        clock_step_s=clock_step_s,
        push_refused=tuple(float((push_refused or {}).get(r, 0)) for r in PushRefusal.ALL),
        revision=revision,
        python_version=python_version,
        exemplars=exemplars or {},
    )


def _schedule_row(schedule: Schedule) -> ScheduleRow:
    def seconds(ms: float | None) -> float | None:
        return None if ms is None or math.isinf(ms) else ms / 1000

    return ScheduleRow(
        labels=(schedule.id, schedule.type, schedule.name),
        fires=tuple(float(count) for count in schedule.fires),
        last_fire_s=seconds(schedule.last_fire_ms),
        next_fire_s=None if schedule.paused else seconds(schedule.next_fire_ms),
        last_success_s=seconds(schedule.last_success_ms),
        unanswered_s=seconds(schedule.unanswered_ms),
        paused=float(schedule.paused),
    )


# The stored counts samples read, as (kind, label) keys; zero-filled labels in sample order.
_PENDING_KEY = (CountKind.PENDING, "")
_STARTED_KEY = (CountKind.STARTED, "")
_CANCELLED_KEY = (CountKind.CANCELLED, "")
_FINISHED_KEYS = tuple((CountKind.FINISHED, outcome) for outcome in Outcome.ALL)
_RETRY_KEYS = tuple((CountKind.RETRIES, trigger) for trigger in RetryTrigger.ALL)
_SCRAPE_ERROR_KEYS = tuple((CountKind.SCRAPE_ERRORS, reason) for reason in ScrapeErrorReason.ALL)


def _job_series(snapshot: Snapshot, buckets: Buckets):
    wait_bucket = CountKind.QUEUE_WAIT_BUCKET  # read for every count of every series
    for key in sorted(snapshot.series.keys() | snapshot.running.keys()):
        counts = snapshot.series.get(key, {})
        stats = snapshot.running.get(key)
        queue_wait = None
        # Keyed on the buckets: a sum of zero (every wait under a millisecond) is never
        # stored, as no zero delta is, yet the observations are there.
        if any(family == wait_bucket for family, _ in counts):
            queue_wait = _histogram(counts, wait_bucket, CountKind.QUEUE_WAIT_SUM, buckets)
        yield JobSeries(
            labels=key,
            running=stats.count if stats else 0.0,
            pending=max(0.0, counts.get(_PENDING_KEY, 0.0)),
            oldest_start_s=stats.oldest_start_ms / 1000 if stats else None,
            started=counts.get(_STARTED_KEY, 0.0),
            finished=tuple(counts.get(kind, 0.0) for kind in _FINISHED_KEYS),
            retries=tuple(counts.get(kind, 0.0) for kind in _RETRY_KEYS),
            cancelled=counts.get(_CANCELLED_KEY, 0.0),
            duration=_histogram(counts, CountKind.DURATION_BUCKET, CountKind.DURATION_SUM, buckets),
            queue_wait=queue_wait,
        )


def _histogram(
    counts: Mapping[CountName, float], bucket_family: str, sum_family: str, buckets: Buckets
) -> HistogramValues:
    """Stored per-bucket counts to cumulative counts over the configured bounds.

    A bound stored under an older bucket layout goes to the first configured bound that
    holds it, so changing buckets never loses an observation.
    """
    per_bound = [0.0] * len(buckets.bounds)
    for (family, label), value in counts.items():
        if family == bucket_family:
            bound = math.inf if label == "+Inf" else float(label)
            per_bound[_first_at_least(buckets.bounds, bound)] += value
    cumulative = []
    total = 0.0
    for value in per_bound:
        total += value
        cumulative.append(total)
    return HistogramValues(tuple(cumulative), counts.get((sum_family, ""), 0.0))


def _first_at_least(bounds: tuple[float, ...], value: float) -> int:
    for position, bound in enumerate(bounds):
        if value <= bound:
            return position
    return len(bounds) - 1


def _source_row(
    source: str, state: SourceHealth | None, counts: Mapping[CountName, float]
) -> SourceRow:
    """Scraped sources (those with a health state, or stored scrape errors) get every error
    reason zero-filled; pushed sources show only what they have."""
    errors = None
    if state is not None or any(family == CountKind.SCRAPE_ERRORS for family, _ in counts):
        errors = tuple(counts.get(kind, 0.0) for kind in _SCRAPE_ERROR_KEYS)
    invalid = [
        (label, value)
        for (family, label), value in counts.items()
        if family == CountKind.INVALID_JOBS
    ]
    # A replica standing by has no scrape of its own to describe (the board forgot it).
    standing_by = state is not None and state.owned is False
    return SourceRow(
        source=source,
        up=None if state is None or standing_by else float(bool(state.up)),
        owned=None if state is None or state.owned is None else float(state.owned),
        scrape_duration_s=state.last_duration_s if state else None,
        last_success_s=state.last_success_ms / 1000 if state and state.last_success_ms else None,
        errors=errors,
        invalid=tuple(sorted(invalid)),
        folded=counts.get((CountKind.FOLDED_JOBS, ""), 0.0),
    )
