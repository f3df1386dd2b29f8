"""`GET /api/v1/stats/durations`: how long each job function usually runs, so the page can
mark a running job that has run longer than its function's p95.

The percentiles are read from the stored duration histogram (the counts behind
`background_jobs_duration_seconds`) with `exporter.stats.quantiles.quantile`, the one
implementation every percentile on the page uses, so they agree with `histogram_quantile`
over the same counts. The table is built once per snapshot version and kept until a write
changes the store, so a page polling every few seconds costs a dict lookup. Its size is
bounded by the series the store keeps (`--max-series`, `--max-series-per-source`); only
series with at least one finished run with a duration appear.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass

import msgspec
from flask import Blueprint, Response, current_app, request

from exporter.api.errors import ApiError
from exporter.api.responses import json_response
from exporter.model.counts import Buckets, CountKind
from exporter.runtime.process import current_runtime
from exporter.stats.quantiles import QUANTILES, quantile
from exporter.store.base import Snapshot

blueprint = Blueprint("durations", __name__, url_prefix="/api/v1/stats")
MAX_TEXT = 200  # sources, types and names are at most 200 characters


class Durations(msgspec.Struct):
    """One job function's run time, in seconds, over every run counted with a duration."""

    source: str
    type: str
    name: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class DurationTable(msgspec.Struct):
    """Every job function's usual run time; `quantiles` are the ones each entry gives."""

    quantiles: list[float]
    functions: list[Durations]


@dataclass(frozen=True)
class _Cached:
    version: Hashable
    table: list[Durations]


class DurationCache:
    """The table of the latest snapshot version seen; rebuilt when the version changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self.builds = 0  # how many tables were built (the tests check the cache)

    def table(self, snapshot: Snapshot, buckets: Buckets) -> list[Durations]:
        with self._lock:
            cached = self._cached
            if cached is None or cached.version != snapshot.version:
                cached = self._cached = _Cached(snapshot.version, build(snapshot, buckets))
                self.builds += 1
            return cached.table


def build(snapshot: Snapshot, buckets: Buckets) -> list[Durations]:
    """p50, p95 and p99 per (source, type, name) from the stored bucket counts."""
    keys = [(CountKind.DURATION_BUCKET, label) for label in buckets.labels]
    out = []
    for (source, job_type, name), counts in sorted(snapshot.series.items()):
        per_bucket = [counts.get(key, 0.0) for key in keys]
        total = sum(per_bucket)
        if total <= 0:
            continue
        p50, p95, p99 = (quantile(q, buckets.bounds, per_bucket) for q in QUANTILES)
        out.append(Durations(source, job_type, name, round(total), p50, p95, p99))
    return out


_CACHE_KEY = "job_exporter.durations"


@blueprint.get("/durations")
def durations() -> Response:
    filters = {field: _text(field) for field in ("source", "type", "name")}
    runtime = current_runtime()
    cache = current_app.extensions.setdefault(_CACHE_KEY, DurationCache())
    table = cache.table(runtime.store.snapshot(), runtime.ingestor.rules.buckets)
    if any(filters.values()):
        table = [
            row
            for row in table
            if all(
                value is None or getattr(row, field) == value for field, value in filters.items()
            )
        ]
    return json_response(DurationTable(list(QUANTILES), table))


def _text(field: str) -> str | None:
    value = request.args.get(field) or None
    if value is not None and len(value) > MAX_TEXT:
        message = f"at most {MAX_TEXT} characters"
        raise ApiError(400, f"{field} is too long", [{"field": field, "message": message}])
    return value
