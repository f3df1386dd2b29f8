"""The running parts of one exporter process, built from settings and started explicitly.

Building opens the store and wires components; nothing runs until `start()`, so tests can
build an app and drive scrapes themselves.
"""

from __future__ import annotations

import logging
import random
from contextlib import suppress
from dataclasses import replace
from functools import partial

from flask import current_app
from prometheus_client import CollectorRegistry

from exporter.clock import Clock, ClockWatch, SystemClock
from exporter.config import Settings
from exporter.health import HealthBoard
from exporter.jobs.demo_crew import DemoCrew, ensure_demo_schedule
from exporter.jobs.queue import Backoff, JobQueue, QueuePolicy
from exporter.jobs.schedules import Scheduler
from exporter.metrics.build import build_info
from exporter.metrics.collector import JobCollector
from exporter.metrics.page import MetricsPage
from exporter.metrics.process import ProcessMetrics
from exporter.model.counts import Buckets
from exporter.model.exemplars import ExemplarBoard
from exporter.runtime.allocator import give_back
from exporter.runtime.sweeps import Sweeper
from exporter.runtime.timers import Timers
from exporter.sources.fetch import FetchLimits
from exporter.sources.owners import SourceLeases
from exporter.sources.scrape import Scraper, ScrapeTarget
from exporter.stats.history import HistorySampler
from exporter.store import Store, StoreError, open_store
from exporter.tracking.ingest import Ingestor, TrackingRules
from exporter.tracking.plan import LabelGuard, SeriesBudget

log = logging.getLogger(__name__)
EXTENSION = "job_exporter"


RETENTION_SWEEP_S = 60.0  # the pace of pruning finished jobs past the retention period
# How often pushed jobs not reported in time are looked for: a push that asks for lostAfter
# 45 s (the client's heartbeats) has its dead jobs counted lost within a minute.
PUSH_LOST_SWEEP_S = 5.0
CLOCK_WATCH_S = 1.0
STORE_PROBE_S = 1.0


class Runtime:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        store: Store | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = store or open_store(settings.store)
        targets = _targets(settings)
        self.health = HealthBoard([target.name for target in targets])
        buckets = Buckets(settings.duration_buckets)
        # The latest job per histogram bucket, fed by scrapes, pushes and the job API.
        self.exemplars = ExemplarBoard(buckets.labels)
        store = self.store
        budget = SeriesBudget(settings.max_series, seed=lambda: store.snapshot().series.keys())
        self.ingestor = Ingestor(
            self.store,
            TrackingRules(
                guard=LabelGuard(settings.max_series_per_source, budget),
                buckets=buckets,
                retention_ms=settings.retention_ms,
            ),
            max_push_sources=settings.max_push_sources,
            exemplars=self.exemplars,
        )
        limits = FetchLimits.within(
            settings.scrape_timeout,
            settings.max_response_bytes,
            redirects_elsewhere=settings.scrape_redirects_elsewhere,
        )
        self.leases = SourceLeases(self.store, self.clock)
        self.scraper = Scraper(
            self.ingestor, targets, self.clock, self.health, limits=limits, leases=self.leases
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = JobCollector(
            self.store,
            self.health,
            self.ingestor.rules.buckets,
            build_info(),
            push_refused=self.ingestor.refused_pushes,
            exemplars=self.exemplars,
        )
        self.registry.register(self.collector)
        self.process_metrics = ProcessMetrics()  # process_* and python_*, fresh each time
        self.metrics_page = MetricsPage(self.collector.current, self.process_metrics.render)
        self.queue = JobQueue(
            self.store,
            self.clock,
            QueuePolicy(
                backoff=Backoff(settings.backoff_base, settings.backoff_cap),
                default_max_attempts=settings.max_attempts,
                default_lease_s=settings.lease_seconds,
                max_pending=settings.max_pending_jobs,
                buckets=self.ingestor.rules.buckets,
            ),
            guard=self.ingestor.rules.guard,
            rng=rng,
            exemplars=self.exemplars,
        )
        # Recurring jobs (the API's schedules).
        self.schedules = Scheduler(
            self.store,
            self.queue,
            self.clock,
            misfire_grace_s=settings.schedule_misfire_grace,
            max_schedules=settings.max_schedules,
        )
        self.sweeper = Sweeper(
            self.queue,
            self.ingestor,
            self.clock,
            self.health,
            scraped=self.scraper.targets.keys(),
            push_lost_after_s=settings.push_lost_after,
            retention_ms=self.ingestor.rules.retention_ms,
            lost_after_for=settings.lost_after_of,
            schedules=self.schedules,
        )
        self.demo_crew: DemoCrew | None = None
        self.history = HistorySampler(self.store, self.clock, buckets=buckets)
        self.clock_watch = ClockWatch(self.clock)
        self._timers: Timers | None = None  # scrapes and sweeps, once started

    def start(self, url: str | None = None) -> None:
        """Scrape every source on its own interval, first right away; sample the dashboard's
        history (unless the page is off); sweep expired leases (every
        `lease_sweep_interval`), overdue pushed jobs and old API jobs; fire due schedules
        (every `schedule_sweep_interval`, first right away), unless the job API is off;
        watch the wall clock for steps; start the demo crew when asked, its workers reaching
        this process at `url` over HTTP. Sweeps are safe with several replicas: each one's
        writes check the state they change, in the same transaction."""
        timers = Timers()
        for target in self.scraper.targets.values():
            self._scrape_every(timers, target)
        if self.settings.page:  # the page's chart data
            timers.every("history sample", self.history.limits.step_s, self.history.sample, True)
        if self.settings.job_api:
            timers.every("lease sweep", self.settings.lease_sweep_interval, self.sweeper.leases)
            # Fires missed while stopped follow their policy at once.
            timers.every(
                "schedule sweep",
                self.settings.schedule_sweep_interval,
                self.sweeper.schedules,
                True,
            )
        timers.every(
            "lost-after sweep of pushed jobs",
            min(
                PUSH_LOST_SWEEP_S,
                self.settings.push_lost_after,
                *(seconds for _, seconds in self.settings.push_lost_after_for),
            ),
            self.sweeper.pushed,
        )
        # First at start-up: a week of jobs that aged out while stopped goes at once.
        timers.every("retention sweep", RETENTION_SWEEP_S, self.sweeper.tracked_jobs, True)
        if self.settings.job_api:
            timers.every(
                "retention sweep of API jobs",
                RETENTION_SWEEP_S,
                self.sweeper.finished_api_jobs,
                True,
            )
        timers.every("clock watch", CLOCK_WATCH_S, self._watch_clock)
        timers.every("store probe", STORE_PROBE_S, self._probe_store)
        timers.start()
        self._timers = timers
        if self.settings.workers and url is not None:
            ensure_demo_schedule(self.schedules)
            self.demo_crew = DemoCrew(
                self.queue, url, self.settings.workers, token=self.settings.api_token
            )
            self.demo_crew.start()

    def _scrape_every(self, timers: Timers, target: ScrapeTarget) -> None:
        timers.every(
            _scrape_name(target.name),
            target.interval_s,
            partial(self._scrape, target.name),
            first_now=True,
        )

    def reload_sources(self, settings: Settings) -> None:
        """Scrape the sources of `settings` from now on (a SIGHUP's reload): new ones from
        now, removed ones no more (their counts stay, and their running jobs are swept as
        unreported pushed jobs are, as after a restart without them), changed ones (URL or
        interval) anew. Only the sources change; the caller says which other options would
        need a restart."""
        timers = self._timers
        if timers is None:
            raise RuntimeError("reload before start")
        wanted = {target.name: target for target in _targets(settings)}
        current = dict(self.scraper.targets)
        gone = sorted(name for name in current if wanted.get(name) != current[name])
        new = sorted(name for name in wanted if current.get(name) != wanted[name])
        for name in gone:
            timers.cancel(_scrape_name(name))
            self.scraper.remove(name)
            self.leases.forget(name)
            self.ingestor.forget(name)
            self.health.remove(name)
        # Before any new source is scraped: the sweep of unreported pushed jobs must not take
        # a scraped source's jobs for pushed ones.
        self.sweeper.scraped = frozenset(wanted)
        for name in new:
            self.health.add(name)
            self.scraper.add(wanted[name])
            self._scrape_every(timers, wanted[name])
        self.settings = replace(self.settings, sources=settings.sources)
        changed = sorted(set(gone) & set(new))
        added = sorted(set(new) - set(gone))
        removed = sorted(set(gone) - set(new))
        if not (added or removed or changed):
            log.info("reloaded sources: none changed")
            return
        log.info(
            "reloaded sources: added %s; removed %s; changed %s",
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(changed) or "none",
        )

    def _probe_store(self) -> None:
        """While the store is down, try an empty write each second, so that the store is
        known to be back (and said so, and /readyz ready) without waiting for a client."""
        if self.store.health.needs_probe:
            with suppress(StoreError):  # still down: the store's health has said so once
                self.store.probe()

    def _watch_clock(self) -> None:
        if self.clock_watch.check():
            self.health.record_clock_step(self.clock_watch.step_s)

    def _scrape(self, source: str) -> None:
        """One scheduled scrape, then the compaction a large one leaves due and giving the
        C heap's free pages back, off the scrape's own path (its results are committed and
        served already)."""
        self.scraper.scrape(source)
        self.ingestor.compact_due()
        give_back()

    def stop(self) -> None:
        """Stop the demo crew, let a scrape or sweep in progress finish, then release
        everything."""
        if self.demo_crew is not None:
            self.demo_crew.stop()
        if self._timers is not None:
            stopped = self._timers.stop()
            self._timers = None
            if not stopped:  # a scrape or sweep still uses the store (and may still store
                # a scrape): the exit frees it, and its source's lease runs out on its own
                log.warning("the store is left open for the work still running")
                return
        self.leases.release()
        self.collector.reader.close()
        self.scraper.close()
        self.store.close()


def current_runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


def _targets(settings: Settings) -> list[ScrapeTarget]:
    return [
        ScrapeTarget(source.name, source.url, settings.interval_of(source))
        for source in settings.sources
    ]


def _scrape_name(source: str) -> str:
    return f"scrape of source {source}"
