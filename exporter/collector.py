"""Metric families from the stored counts, built fresh on each collect (CONTRACT section 3).

Like prometheus_client's own collectors: it reads, never writes, and a failing store yields
the exporter's health alone instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.counts import (
    DURATION_BUCKET,
    DURATION_SUM,
    FINISHED,
    FOLDED_JOBS,
    INVALID_JOBS,
    OUTCOMES,
    PENDING,
    QUEUE_WAIT_BUCKET,
    QUEUE_WAIT_SUM,
    RETRIES,
    SCRAPE_ERROR_REASONS,
    SCRAPE_ERRORS,
    STARTED,
    TRIGGERS,
    Buckets,
)
from exporter.health import HealthBoard
from exporter.store import Snapshot, Store, StoreError

log = logging.getLogger(__name__)

JOB_LABELS = ["source", "type", "name"]
CountName = tuple[str, str]


class JobCollector:
    """Yields every job and health family from one store snapshot."""

    def __init__(
        self,
        store: Store,
        health: HealthBoard,
        buckets: Buckets,
        version: str,
    ) -> None:
        self.store = store
        self.health = health
        self.buckets = buckets
        self.version = version

    def cache_key(self) -> tuple[int, int] | None:
        """Changes whenever the output would; None when the store cannot say."""
        try:
            return (self.store.snapshot().version, self.health.version)
        except StoreError:
            return None

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self.store.snapshot()
        except StoreError as error:
            log.error("cannot read counts for /metrics: %s", error)
            snapshot = None
        if snapshot is not None:
            yield from self._job_families(snapshot)
        yield from self._health_families(snapshot)

    def _job_families(self, snapshot: Snapshot) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "background_jobs_running", "Jobs running now.", labels=JOB_LABELS
        )
        pending = GaugeMetricFamily(
            "background_jobs_pending", "Jobs waiting to run (job API).", labels=JOB_LABELS
        )
        oldest = GaugeMetricFamily(
            "background_jobs_oldest_start_timestamp_seconds",
            "Start time of the oldest running job, in seconds since the epoch.",
            labels=JOB_LABELS,
        )
        started = CounterMetricFamily("background_jobs_started", "Jobs started.", labels=JOB_LABELS)
        finished = CounterMetricFamily(
            "background_jobs_finished",
            "Jobs finished, by outcome.",
            labels=[*JOB_LABELS, "outcome"],
        )
        retries = CounterMetricFamily(
            "background_jobs_retries",
            "Retries scheduled, by trigger.",
            labels=[*JOB_LABELS, "trigger"],
        )
        duration = HistogramMetricFamily(
            "background_jobs_duration_seconds", "Run time of finished jobs.", labels=JOB_LABELS
        )
        queue_wait = HistogramMetricFamily(
            "background_jobs_queue_wait_seconds",
            "Time from a job's creation to its first start (job API).",
            labels=JOB_LABELS,
        )
        keys = sorted(snapshot.series.keys() | snapshot.running.keys())
        for key in keys:
            counts = snapshot.series.get(key, {})
            labels = list(key)
            stats = snapshot.running.get(key)
            running.add_metric(labels, stats.count if stats else 0)
            if stats is not None:
                oldest.add_metric(labels, stats.oldest_start_ms / 1000)
            pending.add_metric(labels, max(0.0, counts.get((PENDING, ""), 0.0)))
            started.add_metric(labels, counts.get((STARTED, ""), 0.0))
            for outcome in OUTCOMES:
                finished.add_metric([*labels, outcome], counts.get((FINISHED, outcome), 0.0))
            for trigger in TRIGGERS:
                retries.add_metric([*labels, trigger], counts.get((RETRIES, trigger), 0.0))
            buckets = self._cumulative(counts, DURATION_BUCKET)
            duration.add_metric(labels, buckets, counts.get((DURATION_SUM, ""), 0.0))
            # Keyed on the buckets too: a sum of zero (waits all under a millisecond) is
            # never stored, as no zero delta is.
            if any(family == QUEUE_WAIT_BUCKET for family, _ in counts):
                buckets = self._cumulative(counts, QUEUE_WAIT_BUCKET)
                queue_wait.add_metric(labels, buckets, counts.get((QUEUE_WAIT_SUM, ""), 0.0))
        yield from (running, pending, oldest, started, finished, retries, duration, queue_wait)

    def _cumulative(
        self, counts: Mapping[CountName, float], family: str
    ) -> list[tuple[str, float]]:
        """Stored per-bucket counts to cumulative `le` buckets of the configured bounds.

        A bound stored under an older bucket layout goes to the first configured bound that
        holds it, so changing buckets never loses an observation.
        """
        per_bound = [0.0] * len(self.buckets.bounds)
        for (name, label), value in counts.items():
            if name != family:
                continue
            bound = math.inf if label == "+Inf" else float(label)
            per_bound[_first_at_least(self.buckets.bounds, bound)] += value
        cumulative: list[tuple[str, float]] = []
        running_total = 0.0
        for label, value in zip(self.buckets.labels, per_bound, strict=True):
            running_total += value
            cumulative.append((label, running_total))
        return cumulative

    def _health_families(self, snapshot: Snapshot | None) -> Iterator[Metric]:
        sources = self.health.sources()
        up = GaugeMetricFamily(
            "job_exporter_source_up", "1 when the last scrape of the source succeeded.",
            labels=["source"],
        )  # fmt: skip
        scrape_duration = GaugeMetricFamily(
            "job_exporter_source_scrape_duration_seconds",
            "How long the last scrape of the source took.",
            labels=["source"],
        )
        last_success = GaugeMetricFamily(
            "job_exporter_source_last_success_timestamp_seconds",
            "When the source was last scraped successfully, in seconds since the epoch.",
            labels=["source"],
        )
        for source, state in sorted(sources.items()):
            up.add_metric([source], 1 if state.up else 0)
            if state.last_duration_s is not None:
                scrape_duration.add_metric([source], state.last_duration_s)
            if state.last_success_ms is not None:
                last_success.add_metric([source], state.last_success_ms / 1000)
        yield from (up, scrape_duration, last_success)

        errors = CounterMetricFamily(
            "job_exporter_source_scrape_errors", "Failed scrapes, by reason.",
            labels=["source", "reason"],
        )  # fmt: skip
        invalid = CounterMetricFamily(
            "job_exporter_invalid_jobs", "Items skipped because a field was invalid.",
            labels=["source", "field"],
        )  # fmt: skip
        folded = CounterMetricFamily(
            "job_exporter_folded_jobs",
            "Jobs whose name was folded into __other__ by the per-source series cap.",
            labels=["source"],
        )
        stored = snapshot.health if snapshot else {}
        for source in sorted(stored.keys() | sources.keys()):
            counts = stored.get(source, {})
            if source in sources or any(f == SCRAPE_ERRORS for f, _ in counts):
                for reason in SCRAPE_ERROR_REASONS:
                    errors.add_metric([source, reason], counts.get((SCRAPE_ERRORS, reason), 0.0))
            for (family, label), value in sorted(counts.items()):
                if family == INVALID_JOBS:
                    invalid.add_metric([source, label], value)
            folded.add_metric([source], counts.get((FOLDED_JOBS, ""), 0.0))
        yield from (errors, invalid, folded)

        tracked = GaugeMetricFamily(
            "job_exporter_tracked_jobs", "Jobs the store remembers, per source.",
            labels=["source"],
        )  # fmt: skip
        for source, count in sorted((snapshot.tracked if snapshot else {}).items()):
            tracked.add_metric([source], count)
        yield tracked

        store_errors = CounterMetricFamily(
            "job_exporter_store_errors", "Store operations that failed (the store's log says why)."
        )
        store_errors.add_metric([], self.health.store_errors)
        yield store_errors

        info = GaugeMetricFamily(
            "job_exporter_build_info", "Always 1; the version label says which release runs.",
            labels=["version"],
        )  # fmt: skip
        info.add_metric([self.version], 1)
        yield info


def _first_at_least(bounds: tuple[float, ...], value: float) -> int:
    for position, bound in enumerate(bounds):
        if value <= bound:
            return position
    return len(bounds) - 1
