"""The history sampler: every few seconds, the store's totals per view go into fixed rings.

The dashboard needs an hour of history the moment it opens, without replaying raw jobs in
the browser, so the server keeps compact aggregates: one `store.snapshot()` per tick (cheap
when nothing changed) summed per view and appended to the rings of `exporter.stats.ring`.

Each view has two tiers: a fine one for the last hour and a coarse one for the last 24 h;
a query takes the finest tier that reaches back over its window, or that is not full yet
(`HistorySampler.tier`).
Every tier keeps, per slot, the duration histogram's bucket growth beside the other totals,
so the charts' percentiles are exact for each point's interval.

Memory budget, fixed by the settings below: a slot takes 2 bytes per count and bucket plus 4
(`ring.slot_bytes`), 44 bytes with the 13 default buckets, 80 with the most (31). Per key
and tier, with the defaults (and at most 31 buckets):

| tier | step | slots | per key | keys at most | at most |
|---|---|---|---|---|---|
| summary, types, 1 h | 5 s | 722 | 32 KB (58 KB) | 1 + 50 | 1.6 MB (3.0 MB) |
| names, 1 h | 30 s | 122 | 5.6 KB (10 KB) | 2,000 | 11 MB (21 MB) |
| summary, types, 24 h | 1 min | 1,442 | 64 KB (116 KB) | 1 + 50 | 3.3 MB (5.9 MB) |
| names, 24 h | 10 min | 146 | 6.8 KB (12 KB) | 2,000 | 14 MB (25 MB) |

so 30 MB at most with the default buckets (54 MB with 31), the key arrays alone (`Tier.
key_bytes`; tests/test_history.py checks the rings' real sizes against it). When more series
exist than a tier holds, the one idle longest (unchanged over the tier's whole span) gives up
its ring to the newcomer; otherwise the newcomer has no history there and `untracked` says
how many were turned away.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import cast

from exporter.clock import Clock
from exporter.model.counts import Buckets, CountKind, Outcome
from exporter.stats.ring import FIELDS, Field, Tier, Window
from exporter.store import Snapshot, Store, StoreError

log = logging.getLogger(__name__)

SUMMARY = "summary"
HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
OUTCOME_FIELDS = {
    Outcome.COMPLETED: Field.COMPLETED,
    Outcome.FAILED: Field.FAILED,
    Outcome.LOST: Field.LOST,
}
NameKey = tuple[str, str, str]  # (source, type, name)
Totals = tuple[list[float], dict[str, list[float]], dict[NameKey, list[float]]]


@dataclass(frozen=True)
class HistoryLimits:
    step_s: float = 5.0  # summary and types: one sample per step
    name_step_s: float = 30.0  # one job function's series
    span_s: float = HOUR_S  # how far back the fine tiers reach
    long_step_s: float = 60.0  # summary and types, coarse tier
    long_name_step_s: float = 600.0  # one job function, coarse tier
    long_span_s: float = DAY_S  # how far back the coarse tiers reach
    max_types: int = 50
    max_names: int = 2000

    def capacity(self, step_s: float, span_s: float | None = None) -> int:
        """Samples to cover the span, plus one to give the oldest point its rate."""
        return int((self.span_s if span_s is None else span_s) // step_s) + 2


class HistorySampler:
    """Samples the store into rings; queried by the stats endpoints. Thread-safe."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        limits: HistoryLimits | None = None,
        buckets: Buckets | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits = limits or HistoryLimits()
        self.buckets = buckets = buckets or Buckets()
        bounds = buckets.bounds
        self._bucket_at = {label: n for n, label in enumerate(buckets.labels)}

        def tier(step_s: float, span_s: float, max_keys: int) -> Tier:
            return Tier(step_s, limits.capacity(step_s, span_s), max_keys, bounds)

        fine, long = limits.span_s, limits.long_span_s
        self.summary = tier(limits.step_s, fine, 1)
        self.types = tier(limits.step_s, fine, limits.max_types)
        self.names = tier(limits.name_step_s, fine, limits.max_names)
        self.summary_long = tier(limits.long_step_s, long, 1)
        self.types_long = tier(limits.long_step_s, long, limits.max_types)
        self.names_long = tier(limits.long_name_step_s, long, limits.max_names)
        self.views: dict[str, tuple[Tier, ...]] = {
            "summary": (self.summary, self.summary_long),
            "types": (self.types, self.types_long),
            "names": (self.names, self.names_long),
        }
        self._lock = threading.Lock()
        self._seen_types: set[str] | None = None  # None before the first sample
        self._seen_names: set[NameKey] | None = None
        self._last_version: Hashable | None = None
        self._totals: Totals | None = None

    def sample(self) -> bool:
        """Take one sample now; False (and a log line) when the store cannot be read."""
        try:
            snapshot = self.store.snapshot()
        except StoreError as error:
            log.debug("history sample skipped: %s", error)
            return False
        now_ms = self.clock.now_ms()
        if self._totals is None or snapshot.version != self._last_version:
            self._totals = totals_of(snapshot, self.buckets, self._bucket_at)
            self._last_version = snapshot.version
        summary, per_type, per_name = self._totals
        with self._lock:
            # Keys new since the last sample had no counts then: zeros are their history.
            # Not so after an empty store (a first start, the demo's first scrape): what
            # appears then was found, not started in those seconds, so it gets no rate.
            seen_types, seen_names = self._seen_types or set(), self._seen_names or set()
            known = bool(seen_names)
            fresh_types = set(per_type) - seen_types if known else set()
            fresh_names = set(per_name) - seen_names if known else set()
            if not per_name:
                unknown = [math.nan] * (len(summary) - Field.STARTED)
                summary = [*summary[: Field.STARTED], *unknown]
            for tier in self.views["summary"]:
                tier.record(now_ms, {SUMMARY: summary}, fresh=[SUMMARY])
            for tier in self.views["types"]:
                tier.record(now_ms, per_type, fresh=fresh_types)
            for tier in self.views["names"]:
                tier.record(now_ms, per_name, fresh=fresh_names)
            self._seen_types = set(per_type)
            self._seen_names = set(per_name)
        return True

    def tier(self, view: str, seconds: float) -> Tier:
        """The finest tier of a view ("summary", "types", "names") reaching back `seconds`,
        or not yet full (it holds all there is, finer than the next); the longest one when
        none does."""
        tiers = self.views[view]
        chosen = (t for t in tiers if t.span_s >= seconds or t.count < t.capacity)
        return next(chosen, tiers[-1])

    def longest(self, view: str) -> float:
        """How far back a view's history reaches, once full."""
        return max(tier.span_s for tier in self.views[view])

    def series(self, tier: Tier, key: Hashable, window: Window) -> dict[str, object] | None:
        with self._lock:
            return tier.series(key, window)

    def type_series(
        self, window: Window, limit: int, tier: Tier | None = None
    ) -> list[dict[str, object]]:
        """The busiest `limit` types (most jobs started), each with its series."""
        tier = tier or self.types
        with self._lock:
            ranked = sorted(tier.tracked(), key=lambda k: _activity(tier, k))
            chosen = sorted(cast(list[str], ranked[:limit]))
            return [{"type": key, **(tier.series(key, window) or {})} for key in chosen]

    def failing(self, seconds: float, limit: int) -> list[dict[str, object]]:
        """The job functions with the most failed and lost runs over the last `seconds`,
        most first (then the highest failure ratio, then by name), none without one."""
        tier = self.tier("names", seconds)
        rows: list[dict[str, object]] = []
        outcomes = (Field.COMPLETED, Field.FAILED, Field.LOST)
        with self._lock:
            for key in cast(list[NameKey], tier.tracked()):
                latest = tier.latest(key)
                if latest is not None and not latest[Field.FAILED] and not latest[Field.LOST]:
                    continue  # never failed at all (a NaN total is looked at)
                growth = tier.window_growth(key, seconds, outcomes)
                if growth is None:
                    continue
                failed, lost = max(growth[Field.FAILED], 0.0), max(growth[Field.LOST], 0.0)
                finished = failed + lost + max(growth[Field.COMPLETED], 0.0)
                if failed + lost <= 0:
                    continue
                source, kind, name = key
                rows.append(
                    {
                        "source": source,
                        "type": kind,
                        "name": name,
                        "failures": int(failed + lost),
                        "failed": int(failed),
                        "lost": int(lost),
                        "finished": int(finished),
                        "ratio": round((failed + lost) / finished, 4),
                    }
                )
        rows.sort(key=lambda r: (-cast(int, r["failures"]), -cast(float, r["ratio"]), r["name"]))
        return rows[:limit]

    def name_list(
        self, text: str = "", job_type: str = "", limit: int = 100
    ) -> tuple[list[dict[str, object]], int]:
        """Series that have history, busiest first, filtered; and how many matched in all."""
        text = text.casefold()
        with self._lock:
            matches = [
                key
                for key in cast(list[NameKey], self.names.tracked())
                if (not job_type or key[1] == job_type) and text in key[2].casefold()
            ]
            matches.sort(key=lambda k: (_activity(self.names, k), k))
            rows: list[dict[str, object]] = []
            for source, kind, name in matches[:limit]:
                latest = self.names.latest((source, kind, name)) or [0.0] * FIELDS
                rows.append(
                    {
                        "source": source,
                        "type": kind,
                        "name": name,
                        "running": _int(latest[Field.RUNNING]),
                        "started": _int(latest[Field.STARTED]),
                        "failed": _int(latest[Field.FAILED]),
                    }
                )
            return rows, len(matches)

    def latest_totals(self) -> dict[str, float | None] | None:
        """The newest sample of all jobs, for the summary's headline numbers."""
        with self._lock:
            latest = self.summary.latest(SUMMARY)
        if latest is None:
            return None
        names = ("running", "pending", "started", "completed", "failed", "lost")
        fields = (
            Field.RUNNING,
            Field.PENDING,
            Field.STARTED,
            Field.COMPLETED,
            Field.FAILED,
            Field.LOST,
        )
        return {name: _int(max(latest[f], 0.0)) for name, f in zip(names, fields, strict=True)}


def totals_of(
    snapshot: Snapshot, buckets: Buckets | None = None, bucket_at: dict[str, int] | None = None
) -> Totals:
    """The snapshot's totals for all jobs, per type and per (source, type, name): the
    FIELDS totals, then one count per duration bucket of `buckets` (not cumulative). A
    bucket label outside the layout (the buckets were changed since it was counted) counts
    in the first bucket that holds its bound; `bucket_at` caches labels' places."""
    buckets = buckets or Buckets()
    bucket_at = {} if bucket_at is None else bucket_at
    width = FIELDS + len(buckets.bounds)
    # Bound once: the loop below runs for every count of every series.
    finished, bucket, duration_sum = (
        CountKind.FINISHED,
        CountKind.DURATION_BUCKET,
        CountKind.DURATION_SUM,
    )
    count_at, sum_at = Field.DURATION_COUNT, Field.DURATION_SUM
    pending, started = (CountKind.PENDING, ""), (CountKind.STARTED, "")
    per_name: dict[NameKey, list[float]] = {}
    per_type: dict[str, list[float]] = defaultdict(lambda: [0.0] * width)
    summary = [0.0] * width
    for key in snapshot.series.keys() | snapshot.running.keys():
        counts = snapshot.series.get(key, {})
        values = [0.0] * width
        stats = snapshot.running.get(key)
        values[Field.RUNNING] = float(stats.count) if stats else 0.0
        values[Field.PENDING] = max(0.0, counts.get(pending, 0.0))
        values[Field.STARTED] = counts.get(started, 0.0)
        for (family, label), value in counts.items():
            if family == finished and label in OUTCOME_FIELDS:
                values[OUTCOME_FIELDS[label]] += value
            elif family == bucket:
                values[count_at] += value
                at = bucket_at.get(label)
                if at is None:
                    at = bucket_at[label] = _bucket_of(label, buckets.bounds)
                values[FIELDS + at] += value
            elif family == duration_sum:
                values[sum_at] += value
        per_name[key] = values
        kind = per_type[key[1]]
        for position in range(width):
            kind[position] += values[position]
            summary[position] += values[position]
    return summary, dict(per_type), per_name


def _bucket_of(label: str, bounds: Sequence[float]) -> int:
    """The place of the first bucket holding an `le` label's bound; the last when unreadable."""
    try:
        bound = float(label)
    except ValueError:
        return len(bounds) - 1
    return min(bisect_left(bounds, bound), len(bounds) - 1) if bound == bound else len(bounds) - 1


def _activity(tier: Tier, key: Hashable) -> tuple[float, ...]:
    """Sort key putting the most started jobs first."""
    latest = tier.latest(key)
    started = latest[Field.STARTED] if latest else 0.0
    return (-(started if started == started else 0.0),)


def _int(value: float) -> int | None:
    return None if value != value else int(value)
