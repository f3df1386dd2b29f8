"""Percentiles from histogram buckets, the way Prometheus' `histogram_quantile` reads them.

One implementation for every place the page shows a p50 / p95 / p99 (the charts from the
history rings, the "usual" run time that marks a slow running job), so the page's numbers
agree with what a user's own PromQL over `background_jobs_duration_seconds` gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

QUANTILES = (0.5, 0.95, 0.99)


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The `q` quantile (0 to 1) of observations counted per bucket (not cumulative).

    `bounds` are the buckets' upper bounds in order, the last one +Inf; `counts[i]` is how
    many observations fell in bucket i (above bounds[i-1], at most bounds[i]). As in
    Prometheus, the value is interpolated linearly inside its bucket (the first bucket
    starts at 0), and a rank in the +Inf bucket answers the highest finite bound. None when
    there are no observations (a chart draws a gap, not a zero).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    total = math.fsum(max(0.0, count) for count in counts)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    below = 0.0
    for index, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        count = max(0.0, count)
        if count > 0 and below + count >= rank:
            if math.isinf(bound):
                return bounds[index - 1] if index > 0 else None
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bound - lower) * ((rank - below) / count)
        below += count
    finite = [bound for bound in bounds if not math.isinf(bound)]
    return finite[-1] if finite else None
