"""Metric families from the stored counts, built fresh on each collect (docs/contract.md §3).

Like prometheus_client's own collectors: it reads, never writes, and a failing store yields
the exporter's health alone instead of failing the whole scrape. `/metrics` itself is written
by the faster `render` module from the same view; this collector serves any registry a user
adds it to, and is the reference the renderer is tested against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar as ClientExemplar

from exporter.health import HealthBoard
from exporter.metrics.build import BuildInfo
from exporter.metrics.reader import SnapshotReader
from exporter.metrics.view import (
    Families,
    Family,
    HistogramValues,
    JobSeries,
    MetricsView,
    build_view,
)
from exporter.model.counts import (
    Buckets,
    CountKind,
    Outcome,
    PushRefusal,
    RetryTrigger,
    ScrapeErrorReason,
)
from exporter.model.exemplars import EXEMPLAR_LABEL, ExemplarBoard
from exporter.model.schedules import FireResult
from exporter.store import Store

log = logging.getLogger(__name__)

_KINDS = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
}


class JobCollector:
    """Yields every job and health family from one store snapshot."""

    def __init__(
        self,
        store: Store,
        health: HealthBoard,
        buckets: Buckets,
        build: BuildInfo,
        push_refused: Callable[[], Mapping[str, int]] | None = None,
        exemplars: ExemplarBoard | None = None,
    ) -> None:
        self.store = store
        self.health = health
        self.buckets = buckets
        self.build = build
        self.reader = SnapshotReader(store)
        self.push_refused = push_refused or dict  # pushes refused, by reason (in memory)
        self.exemplars = ExemplarBoard(buckets.labels) if exemplars is None else exemplars

    def current(self) -> tuple[Hashable, Callable[[], MetricsView]]:
        """A key that changes whenever the output would, and how to build that output;
        within the reader's budget even when the store hangs.

        Exemplars are read before the counts: each is recorded once its write committed,
        so counts read after it include its observation. A page of stale counts (the store
        did not answer) shows none, as those counts may not hold them."""
        exemplars_version, exemplars = self.exemplars.current()
        snapshot, fresh = self.reader.read()
        store = self.store.health
        up = fresh and store.up
        refused = self.push_refused()
        if not fresh:
            exemplars_version, exemplars = -1, {}
        key = (
            exemplars_version,
            None if snapshot is None else snapshot.version,
            up,
            self.health.version,
            store.version,
            tuple(refused.get(reason, 0) for reason in PushRefusal.ALL),
        )

        def view() -> MetricsView:
            return build_view(
                snapshot,
                self.health.sources(),
                store.errors,
                self.buckets,
                self.build.version,
                store_up=up,
                clock_step_s=self.health.clock_step_s,
                push_refused=refused,
                revision=self.build.revision,
                python_version=self.build.python_version,
                exemplars=exemplars,
            )

        return key, view

    def view(self) -> MetricsView:
        return self.current()[1]()

    def collect(self) -> Iterator[Metric]:
        view = self.view()
        families = {family: _new(family) for family in _ORDER}
        for series in view.series:
            labels = list(series.labels)
            families[Families.RUNNING].add_metric(labels, series.running)
            families[Families.PENDING].add_metric(labels, series.pending)
            if series.oldest_start_s is not None:
                families[Families.OLDEST_START].add_metric(labels, series.oldest_start_s)
            families[Families.STARTED].add_metric(labels, series.started)
            for outcome, value in zip(Outcome.ALL, series.finished, strict=True):
                families[Families.FINISHED].add_metric([*labels, outcome], value)
            for trigger, value in zip(RetryTrigger.ALL, series.retries, strict=True):
                families[Families.RETRIES].add_metric([*labels, trigger], value)
            families[Families.CANCELLED].add_metric(labels, series.cancelled)
            duration = series.duration
            _add_histogram(
                families[Families.DURATION], view, series, duration, CountKind.DURATION_BUCKET
            )
            if series.queue_wait is not None:
                _add_histogram(
                    families[Families.QUEUE_WAIT],
                    view,
                    series,
                    series.queue_wait,
                    CountKind.QUEUE_WAIT_BUCKET,
                )
        for row in view.sources:
            if row.up is not None:
                families[Families.SOURCE_UP].add_metric([row.source], row.up)
            if row.owned is not None:
                families[Families.SOURCE_OWNED].add_metric([row.source], row.owned)
            if row.scrape_duration_s is not None:
                families[Families.SCRAPE_DURATION].add_metric([row.source], row.scrape_duration_s)
            if row.last_success_s is not None:
                families[Families.LAST_SUCCESS].add_metric([row.source], row.last_success_s)
            if row.errors is not None:
                for reason, value in zip(ScrapeErrorReason.ALL, row.errors, strict=True):
                    families[Families.SCRAPE_ERRORS].add_metric([row.source, reason], value)
            for field, value in row.invalid:
                families[Families.INVALID_JOBS].add_metric([row.source, field], value)
            families[Families.FOLDED_JOBS].add_metric([row.source], row.folded)
        for reason, value in zip(PushRefusal.ALL, view.push_refused, strict=True):
            families[Families.PUSH_REFUSED].add_metric([reason], value)
        for source, count in view.tracked:
            families[Families.TRACKED_JOBS].add_metric([source], count)
        families[Families.STORE_ERRORS].add_metric([], view.store_errors)
        families[Families.STORE_UP].add_metric([], view.store_up)
        families[Families.CLOCK_STEP].add_metric([], view.clock_step_s)
        families[Families.BUILD_INFO].add_metric(
            [view.version, view.revision, view.python_version], 1
        )
        for schedule in view.schedules:
            labels = list(schedule.labels)
            for result, value in zip(FireResult.ALL, schedule.fires, strict=True):
                families[Families.SCHEDULE_FIRES].add_metric([*labels, result], value)
            for family, reading in (
                (Families.SCHEDULE_LAST_FIRE, schedule.last_fire_s),
                (Families.SCHEDULE_NEXT_FIRE, schedule.next_fire_s),
                (Families.SCHEDULE_LAST_SUCCESS, schedule.last_success_s),
                (Families.SCHEDULE_UNANSWERED, schedule.unanswered_s),
                (Families.SCHEDULE_PAUSED, schedule.paused),
            ):
                if reading is not None:
                    families[family].add_metric(labels, reading)
        yield from families.values()


_ORDER = (
    Families.RUNNING,
    Families.PENDING,
    Families.OLDEST_START,
    Families.STARTED,
    Families.FINISHED,
    Families.RETRIES,
    Families.CANCELLED,
    Families.DURATION,
    Families.QUEUE_WAIT,
    Families.SOURCE_UP,
    Families.SOURCE_OWNED,
    Families.SCRAPE_DURATION,
    Families.LAST_SUCCESS,
    Families.SCRAPE_ERRORS,
    Families.INVALID_JOBS,
    Families.FOLDED_JOBS,
    Families.PUSH_REFUSED,
    Families.TRACKED_JOBS,
    Families.STORE_ERRORS,
    Families.STORE_UP,
    Families.CLOCK_STEP,
    Families.BUILD_INFO,
    Families.SCHEDULE_FIRES,
    Families.SCHEDULE_LAST_FIRE,
    Families.SCHEDULE_NEXT_FIRE,
    Families.SCHEDULE_LAST_SUCCESS,
    Families.SCHEDULE_UNANSWERED,
    Families.SCHEDULE_PAUSED,
)


def _new(family: Family) -> Any:
    """A fresh family of the kind `family` says; typed loosely, since each kind's add_metric
    takes other values (a histogram takes its buckets and sum)."""
    return _KINDS[family.kind](family.name, family.help, labels=list(family.labels))


def _add_histogram(
    family: HistogramMetricFamily,
    view: MetricsView,
    series: JobSeries,
    values: HistogramValues,
    bucket_family: str,
) -> None:
    """One series' histogram, each bucket with its exemplar if it has one (OpenMetrics
    shows them; the text format leaves them out)."""
    buckets: list[Any] = list(zip(view.bucket_labels, values.cumulative, strict=True))
    exemplars = view.bucket_exemplars(series, bucket_family)
    if exemplars is not None:
        for position, exemplar in enumerate(exemplars):
            if exemplar is not None:
                labels_of = {EXEMPLAR_LABEL: exemplar.job_id}
                witness = ClientExemplar(labels_of, exemplar.value, exemplar.at_s)
                buckets[position] = (*buckets[position], witness)
    family.add_metric(list(series.labels), buckets, values.sum)
