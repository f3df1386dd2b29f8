"""Stored count kinds, their labels and the histogram buckets: shared by tracking, jobs, metrics.

Every count is stored as an additive row (source, type, name, family, label) -> value, so any
writer, in any process, changes them with `value = value + delta` and nothing is overwritten.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from exporter.model.exemplars import ExemplarDeltas, exemplar_of, fits


class CountKind:
    """The `family` of a stored count row. The values are what the store's rows hold, so they
    never change; metric names and job statuses have names of their own elsewhere."""

    # Job counts: (type, name) are the folded label values of the job's series.
    STARTED = "started"
    FINISHED = "finished"  # label: an Outcome
    RETRIES = "retries"  # label: a RetryTrigger
    DURATION_BUCKET = "duration_bucket"  # label: the bucket's upper bound; non-cumulative
    DURATION_SUM = "duration_sum"
    QUEUE_WAIT_BUCKET = "queue_wait_bucket"
    QUEUE_WAIT_SUM = "queue_wait_sum"
    PENDING = "pending"  # a gauge kept as a sum of +1/-1 deltas by the job queue
    CANCELLED = "cancelled"  # job-API jobs cancelled while pending (never a run's outcome)
    # Health counts: stored with type = name = "".
    SCRAPE_ERRORS = "scrape_errors"  # label: a ScrapeErrorReason
    INVALID_JOBS = "invalid_jobs"  # label: the JobInfo field at fault
    FOLDED_JOBS = "folded_jobs"


class Outcome:
    """How a run finished: the label of `CountKind.FINISHED` and the metrics' `outcome`."""

    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"
    ALL = (COMPLETED, FAILED, LOST)


class RetryTrigger:
    """Who scheduled a retry: the label of `CountKind.RETRIES` and the metrics' `trigger`."""

    MANUAL = "manual"
    AUTOMATIC = "automatic"
    ALL = (MANUAL, AUTOMATIC)


class ScrapeErrorReason:
    """Why a scrape failed (docs/contract.md §3): the label of `CountKind.SCRAPE_ERRORS`."""

    CONNECTION = "connection"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    INVALID_JSON = "invalid_json"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"  # anything else: counted, and its cause logged once per change
    ALL = (CONNECTION, TIMEOUT, HTTP_STATUS, INVALID_JSON, TOO_LARGE, INTERNAL)


class PushRefusal:
    """Why a push was refused before anything of it was read into the store: the label
    of `job_exporter_push_refused_total` (no source label: refused names are unbounded)."""

    SOURCES = "sources"  # it named a new push source once the cap on them was reached
    ALL = (SOURCES,)


DEFAULT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)

CountKey = tuple[str, str, str, str]  # (type, name, family, label)
CountDeltas = Counter[CountKey]


def bucket_label(bound: float) -> str:
    """The `le` text of a bound, as Prometheus clients write it (1 -> "1.0", inf -> "+Inf")."""
    return floatToGoString(bound)


@dataclass(frozen=True)
class Buckets:
    """Histogram upper bounds; an observation is stored under the first bound that holds it."""

    bounds: tuple[float, ...] = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        finite = tuple(sorted(float(b) for b in self.bounds if not math.isinf(float(b))))
        if not finite or finite[0] < 0 or len(set(finite)) != len(finite):
            raise ValueError("histogram buckets must be distinct, non-negative and not empty")
        object.__setattr__(self, "bounds", (*finite, math.inf))
        object.__setattr__(self, "_labels", tuple(bucket_label(b) for b in self.bounds))

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels  # type: ignore[attr-defined]


def observe(
    deltas: CountDeltas,
    buckets: Buckets,
    series: tuple[str, str],
    bucket_family: str,
    sum_family: str,
    seconds: float,
    *,
    job_id: str | None = None,
    at_ms: float = 0.0,
    exemplars: ExemplarDeltas | None = None,
) -> None:
    """Add one observation of a histogram to `deltas`; with `exemplars`, the job it was
    (`job_id`, observed at `at_ms`) becomes its bucket's exemplar."""
    observe_all(
        deltas,
        buckets,
        series,
        bucket_family,
        sum_family,
        [seconds],
        job_ids=None if job_id is None else [job_id],
        at_ms=at_ms,
        exemplars=exemplars,
    )


def observe_all(
    deltas: CountDeltas,
    buckets: Buckets,
    series: tuple[str, str],
    bucket_family: str,
    sum_family: str,
    observations: list[float],
    *,
    job_ids: list[str] | None = None,
    at_ms: float = 0.0,
    exemplars: ExemplarDeltas | None = None,
) -> None:
    """Add several observations of one series at once: one sum change for all of them.

    With `exemplars` and `job_ids` (one per observation, in the order observed), each
    bucket's last observation whose id fits an exemplar becomes its exemplar. Only the
    place of each bucket's last observation is kept on the way, so a 100,000-job scrape
    builds one exemplar per bucket, not one per job."""
    labels, bounds = buckets.labels, buckets.bounds
    total = 0.0
    if exemplars is None or job_ids is None:
        for seconds in observations:
            seconds = max(0.0, seconds)
            deltas[(*series, bucket_family, labels[bisect_left(bounds, seconds)])] += 1
            total += seconds
    else:
        last = [-1] * len(bounds)  # per bucket, the place of its last observation
        for place, seconds in enumerate(observations):
            seconds = max(0.0, seconds)
            position = bisect_left(bounds, seconds)
            deltas[(*series, bucket_family, labels[position])] += 1
            total += seconds
            last[position] = place
        for position, place in enumerate(last):
            # The last id that fits; one that does not is rare, and only then are the
            # bucket's earlier observations looked through.
            while place >= 0 and not (
                fits(job_ids[place])
                and bisect_left(bounds, max(0.0, observations[place])) == position
            ):
                place -= 1
            if place >= 0:
                key = (*series, bucket_family, labels[position])
                exemplars[key] = exemplar_of(job_ids[place], max(0.0, observations[place]), at_ms)
    deltas[(*series, sum_family, "")] += total  # type: ignore[assignment]  # sums are floats
