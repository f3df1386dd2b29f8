"""The running parts of one exporter process, built from settings and started explicitly.

Building opens the store and wires components; nothing runs until `start()`, so tests can
build an app and drive scrapes themselves.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from flask import current_app
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.clock import Clock, SystemClock
from exporter.config import Settings
from exporter.health import HealthBoard
from exporter.jobs.demo_crew import DemoCrew, ensure_demo_schedule
from exporter.jobs.queue import Backoff, JobQueue, QueuePolicy
from exporter.jobs.schedules import Scheduler
from exporter.metrics.collector import JobCollector
from exporter.metrics.page import MetricsPage
from exporter.model.counts import Buckets
from exporter.runtime.allocator import give_back
from exporter.runtime.sweeps import Sweeper
from exporter.sources.fetch import FetchLimits
from exporter.sources.scrape import Scraper, ScrapeTarget
from exporter.stats.history import HistorySampler
from exporter.store import Store, open_store
from exporter.tracking.ingest import Ingestor, TrackingRules
from exporter.tracking.plan import LabelGuard

log = logging.getLogger(__name__)
EXTENSION = "job_exporter"


PUSH_SWEEP_MAX_INTERVAL_S = 60.0  # the pace of pruning finished API jobs
# How often pushed jobs not reported in time are looked for: a push that asks for lostAfter
# 45 s (the client's heartbeats) has its dead jobs counted lost within a minute.
PUSH_LOST_SWEEP_S = 5.0


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
        targets = [
            ScrapeTarget(source.name, source.url, settings.interval_of(source))
            for source in settings.sources
        ]
        self.health = HealthBoard([target.name for target in targets])
        self.ingestor = Ingestor(
            self.store,
            TrackingRules(
                guard=LabelGuard(settings.max_series_per_source),
                buckets=Buckets(settings.buckets),
                retention_ms=settings.retention_ms,
            ),
        )
        limits = FetchLimits.within(settings.scrape_timeout, settings.max_response_bytes)
        self.scraper = Scraper(self.ingestor, targets, self.clock, self.health, limits=limits)
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = JobCollector(
            self.store, self.health, self.ingestor.rules.buckets, __version__
        )
        self.registry.register(self.collector)
        self.metrics_page = MetricsPage(self.collector.current)
        self.queue = JobQueue(
            self.store,
            self.clock,
            QueuePolicy(
                backoff=Backoff(settings.backoff_base, settings.backoff_cap),
                default_max_attempts=settings.max_attempts,
                default_lease_s=settings.lease_seconds,
                buckets=self.ingestor.rules.buckets,
            ),
            guard=self.ingestor.rules.guard,
            rng=rng,
        )
        # Recurring jobs (the API's schedules); APScheduler's timers are `_timers`.
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
        self.history = HistorySampler(self.store, self.clock)
        self._timers: BackgroundScheduler | None = None  # scrapes and sweeps, once started

    def start(self, url: str | None = None) -> None:
        """Scrape every source on its own interval, first right away; sample the dashboard's
        history; sweep expired leases (every `lease_sweep_interval`), overdue pushed jobs and
        old API jobs; fire due schedules (every `schedule_sweep_interval`, first right away);
        start the demo crew when asked, its workers reaching this process at `url` over HTTP.
        Sweeps are safe with several replicas: each one's writes check the state they change,
        in the same transaction."""
        timers = BackgroundScheduler(
            executors={
                "default": {"type": "threadpool", "max_workers": 5 + len(self.scraper.targets)}
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        for target in self.scraper.targets.values():
            timers.add_job(
                self._scrape,
                "interval",
                seconds=target.interval_s,
                args=[target.name],
                id=f"scrape:{target.name}",
                next_run_time=_now(),
            )
        timers.add_job(
            self.history.sample,
            "interval",
            seconds=self.history.limits.step_s,
            id="history",
            next_run_time=_now(),
        )
        timers.add_job(
            self.sweeper.leases,
            "interval",
            seconds=self.settings.lease_sweep_interval,
            id="sweep:leases",
        )
        timers.add_job(
            self.sweeper.schedules,
            "interval",
            seconds=self.settings.schedule_sweep_interval,
            id="sweep:schedules",
            next_run_time=_now(),  # fires missed while stopped follow their policy at once
        )
        timers.add_job(
            self.sweeper.pushed,
            "interval",
            seconds=min(
                PUSH_LOST_SWEEP_S,
                self.settings.push_lost_after,
                *(seconds for _, seconds in self.settings.push_lost_after_for),
            ),
            id="sweep:pushed",
        )
        timers.add_job(
            self.sweeper.finished_api_jobs,
            "interval",
            seconds=PUSH_SWEEP_MAX_INTERVAL_S,
            id="sweep:api-retention",
        )
        timers.start()
        self._timers = timers
        if self.settings.workers and url is not None:
            ensure_demo_schedule(self.schedules)
            self.demo_crew = DemoCrew(
                self.queue, url, self.settings.workers, token=self.settings.api_token
            )
            self.demo_crew.start()

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
            self._timers.shutdown(wait=True)
            self._timers = None
        self.scraper.close()
        self.store.close()


def current_runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


def _now() -> datetime:
    return datetime.now(UTC)
