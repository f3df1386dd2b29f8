"""Periodic work the runtime's timers run: expired job-API leases, overdue pushed jobs, finished
jobs past retention (tracked and job-API ones), and due schedules.

Both only finish runs that nobody will finish any more, each in its own transaction; a store
failure is counted and logged by the store's health (once per change), and the next sweep
tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from exporter.clock import Clock
from exporter.health import HealthBoard
from exporter.jobs.queue import JobQueue
from exporter.jobs.schedules import Scheduler
from exporter.model.counts import Outcome
from exporter.model.queue import API_SOURCE
from exporter.store import StoreError
from exporter.tracking.ingest import Ingestor

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(
        self,
        queue: JobQueue,
        ingestor: Ingestor,
        clock: Clock,
        health: HealthBoard,
        scraped: Collection[str],
        push_lost_after_s: float,
        retention_ms: float,
        lost_after_for: Callable[[str], float | None] = lambda source: None,
        schedules: Scheduler | None = None,
    ) -> None:
        self._schedules = schedules  # underscored: `schedules()` is the sweep of them
        self.queue = queue
        self.ingestor = ingestor
        self.clock = clock
        self.health = health
        self.scraped = frozenset(scraped)
        self.push_lost_after_ms = push_lost_after_s * 1000
        self.lost_after_for = lost_after_for  # a push source's own setting, in seconds
        self.retention_ms = retention_ms

    def leases(self) -> int:
        """End runs whose lease expired as `lost`; requeue those with attempts left."""
        try:
            expired = self.queue.expire_leases()
        except StoreError as error:
            log.debug("could not expire job leases: %s", error)
            return 0
        if expired:
            log.info("%d job lease(s) expired; counted lost", expired)
        return expired

    def schedules(self) -> int:
        """Create the jobs of due schedules (each fire once, whichever replica wins)."""
        if self._schedules is None:
            return 0
        try:
            created = self._schedules.sweep()
        except StoreError as error:
            log.debug("could not fire due schedules: %s", error)
            return 0
        if created:
            log.debug("schedules created %d job(s)", created)
        return created

    def tracked_jobs(self) -> int:
        """Forget scraped and pushed jobs finished longer ago than the retention period,
        source by source, in short batches (Ingestor.prune)."""
        now_ms = self.clock.now_ms()
        pruned = 0
        try:
            known = set(self.ingestor.store.snapshot().tracked) | set(self.ingestor.push_sources())
            for source in sorted(known - {API_SOURCE}):
                pruned += self.ingestor.prune(source, now_ms, listed=source in self.scraped)
        except StoreError as error:
            log.debug("could not prune finished jobs: %s", error)
        if pruned:
            log.info("pruned %d finished job(s) past retention", pruned)
        return pruned

    def finished_api_jobs(self) -> int:
        """Forget job-API jobs finished longer ago than the retention period."""
        try:
            pruned = self.queue.prune(self.retention_ms)
        except StoreError as error:
            log.debug("could not prune finished API jobs: %s", error)
            return 0
        if pruned:
            log.info("pruned %d finished API job(s) past retention", pruned)
        return pruned

    def pushed(self) -> int:
        """Pushed jobs open and not reported for longer than their source allows: running
        ones count as `lost`, waiting ones are forgotten. A source's own setting wins over
        what its pushes ask for, which wins over --push-lost-after."""
        now_ms = self.clock.now_ms()
        lost = 0
        try:
            known = set(self.ingestor.store.snapshot().tracked) | set(self.ingestor.push_sources())
            for source in sorted(known - self.scraped - {API_SOURCE}):
                plan = self.ingestor.expire_open(source, self.lost_after_ms(source), now_ms)
                lost += sum(1 for finish in plan.finishes if finish.outcome == Outcome.LOST)
        except StoreError as error:
            log.debug("could not expire overdue pushed jobs: %s", error)
        if lost:
            log.info("%d pushed job(s) not reported in time; counted lost", lost)
        return lost

    def lost_after_ms(self, source: str) -> float:
        configured = self.lost_after_for(source)
        if configured is not None:
            return configured * 1000
        asked = self.ingestor.lost_after_asked(source)
        return asked if asked is not None else self.push_lost_after_ms
