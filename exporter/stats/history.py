"""The history sampler: every few seconds, the store's totals per view go into fixed rings.

The dashboard needs an hour of history the moment it opens, without replaying raw jobs in
the browser, so the server keeps compact aggregates: one `store.snapshot()` per tick (cheap
when nothing changed) summed per view and appended to the rings of `exporter.stats.ring`.

Memory is fixed by the settings below. With the defaults, the summary and up to 50 job types
keep one hour at 5 s steps (722 samples), and up to 2,000 (source, type, name) series keep
one hour at 30 s steps (122 samples, the newest refreshed every tick); 18 bytes a sample
(see ring.py) make at most 0.7 MB for types and 4.4 MB for names. When more series exist, the
one idle longest (unchanged for a whole hour) gives up its ring to the newcomer; otherwise
the newcomer has no history and `untracked` says how many were turned away.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import cast

from exporter.clock import Clock
from exporter.model.counts import CountKind, Outcome
from exporter.stats.ring import FIELDS, Field, Tier, Window
from exporter.store import Snapshot, Store, StoreError

log = logging.getLogger(__name__)

SUMMARY = "summary"
HOUR_S = 3600.0
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
    span_s: float = HOUR_S  # how far back every view reaches
    max_types: int = 50
    max_names: int = 2000

    def capacity(self, step_s: float) -> int:
        """Samples to cover the span, plus one to give the oldest point its rate."""
        return int(self.span_s // step_s) + 2


class HistorySampler:
    """Samples the store into rings; queried by the stats endpoints. Thread-safe."""

    def __init__(self, store: Store, clock: Clock, limits: HistoryLimits | None = None) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits = limits or HistoryLimits()
        self.summary = Tier(limits.step_s, limits.capacity(limits.step_s), max_keys=1)
        self.types = Tier(limits.step_s, limits.capacity(limits.step_s), limits.max_types)
        self.names = Tier(limits.name_step_s, limits.capacity(limits.name_step_s), limits.max_names)
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
            self._totals = totals_of(snapshot)
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
                summary = [*summary[: Field.STARTED], *[math.nan] * (FIELDS - Field.STARTED)]
            self.summary.record(now_ms, {SUMMARY: summary}, fresh=[SUMMARY])
            self.types.record(now_ms, per_type, fresh=fresh_types)
            self.names.record(now_ms, per_name, fresh=fresh_names)
            self._seen_types = set(per_type)
            self._seen_names = set(per_name)
        return True

    def series(self, tier: Tier, key: Hashable, window: Window) -> dict[str, object] | None:
        with self._lock:
            return tier.series(key, window)

    def type_series(self, window: Window, limit: int) -> list[dict[str, object]]:
        """The busiest `limit` types (most jobs started), each with its series."""
        with self._lock:
            ranked = sorted(self.types.tracked(), key=lambda k: _activity(self.types, k))
            chosen = sorted(cast(list[str], ranked[:limit]))
            return [{"type": key, **(self.types.series(key, window) or {})} for key in chosen]

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


def totals_of(snapshot: Snapshot) -> Totals:
    """The snapshot's totals for all jobs, per type and per (source, type, name)."""
    # Bound once: the loop below runs for every count of every series.
    finished, bucket, duration_sum = (
        CountKind.FINISHED,
        CountKind.DURATION_BUCKET,
        CountKind.DURATION_SUM,
    )
    count_at, sum_at = Field.DURATION_COUNT, Field.DURATION_SUM
    pending, started = (CountKind.PENDING, ""), (CountKind.STARTED, "")
    per_name: dict[NameKey, list[float]] = {}
    per_type: dict[str, list[float]] = defaultdict(lambda: [0.0] * FIELDS)
    summary = [0.0] * FIELDS
    for key in snapshot.series.keys() | snapshot.running.keys():
        counts = snapshot.series.get(key, {})
        values = [0.0] * FIELDS
        stats = snapshot.running.get(key)
        values[Field.RUNNING] = float(stats.count) if stats else 0.0
        values[Field.PENDING] = max(0.0, counts.get(pending, 0.0))
        values[Field.STARTED] = counts.get(started, 0.0)
        for (family, label), value in counts.items():
            if family == finished and label in OUTCOME_FIELDS:
                values[OUTCOME_FIELDS[label]] += value
            elif family == bucket:
                values[count_at] += value
            elif family == duration_sum:
                values[sum_at] += value
        per_name[key] = values
        kind = per_type[key[1]]
        for position in range(FIELDS):
            kind[position] += values[position]
            summary[position] += values[position]
    return summary, dict(per_type), per_name


def _activity(tier: Tier, key: Hashable) -> tuple[float, ...]:
    """Sort key putting the most started jobs first."""
    latest = tier.latest(key)
    started = latest[Field.STARTED] if latest else 0.0
    return (-(started if started == started else 0.0),)


def _int(value: float) -> int | None:
    return None if value != value else int(value)
