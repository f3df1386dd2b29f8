"""The names of stored counts and the histogram buckets: shared by tracker, queue and collector.

Every count is stored as an additive row (source, type, name, family, label) -> value, so any
writer, in any process, changes them with `value = value + delta` and nothing is overwritten.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

# Job families: (type, name) are the folded label values of the job's series.
STARTED = "started"
FINISHED = "finished"  # label: outcome
RETRIES = "retries"  # label: trigger
DURATION_BUCKET = "duration_bucket"  # label: the bucket's upper bound; non-cumulative counts
DURATION_SUM = "duration_sum"
QUEUE_WAIT_BUCKET = "queue_wait_bucket"
QUEUE_WAIT_SUM = "queue_wait_sum"
PENDING = "pending"  # a gauge kept as a sum of +1/-1 deltas by the job queue

# Health families: stored with type = name = "".
SCRAPE_ERRORS = "scrape_errors"  # label: reason
INVALID_JOBS = "invalid_jobs"  # label: field
FOLDED_JOBS = "folded_jobs"

OUTCOMES = ("completed", "failed", "lost")
TRIGGERS = ("manual", "automatic")
SCRAPE_ERROR_REASONS = ("connection", "timeout", "http_status", "invalid_json", "too_large")

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
) -> None:
    """Add one observation of a histogram to `deltas`."""
    observe_all(deltas, buckets, series, bucket_family, sum_family, [seconds])


def observe_all(
    deltas: CountDeltas,
    buckets: Buckets,
    series: tuple[str, str],
    bucket_family: str,
    sum_family: str,
    observations: list[float],
) -> None:
    """Add several observations of one series at once: one sum change for all of them."""
    labels, bounds = buckets.labels, buckets.bounds
    total = 0.0
    for seconds in observations:
        seconds = max(0.0, seconds)
        deltas[(*series, bucket_family, labels[bisect_left(bounds, seconds)])] += 1
        total += seconds
    deltas[(*series, sum_family, "")] += total
