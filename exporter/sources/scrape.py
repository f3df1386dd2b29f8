"""Scrape one source: fetch, decode, plan against the known state, write in one transaction.

Faults upstream (down, slow, garbage) are counted by reason and logged once per change of
state; they never raise out of `scrape`, so the scheduler and `/metrics` keep going.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from exporter.clock import Clock
from exporter.counts import INVALID_JOBS, SCRAPE_ERRORS, Buckets
from exporter.decode import Decoded, InvalidDocument, decode_jobs
from exporter.health import HealthBoard
from exporter.records import SourceIndex
from exporter.sources.fetch import FetchError, FetchLimits, fetch
from exporter.store import Prune, StaleIndex, Store, StoreError
from exporter.tracker import LabelGuard, dedupe, plan_changes

log = logging.getLogger(__name__)

PRUNE_EVERY_MS = 60_000


@dataclass(frozen=True)
class ScrapeTarget:
    name: str
    url: str
    interval_s: float


@dataclass(frozen=True)
class TrackingRules:
    """How observed jobs become counts: cardinality cap, buckets, retention."""

    guard: LabelGuard = field(default_factory=LabelGuard)
    buckets: Buckets = field(default_factory=Buckets)
    retention_ms: float = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class ScrapeResult:
    ok: bool
    reason: str | None = None
    jobs: int = 0
    invalid: int = 0


class Scraper:
    """Scrapes the configured targets; safe to call from scheduler threads."""

    def __init__(
        self,
        store: Store,
        targets: list[ScrapeTarget],
        clock: Clock,
        health: HealthBoard,
        *,
        rules: TrackingRules | None = None,
        limits: FetchLimits | None = None,
    ) -> None:
        self.store = store
        self.targets = {target.name: target for target in targets}
        self.clock = clock
        self.health = health
        self.rules = rules or TrackingRules()
        self.limits = limits or FetchLimits()
        self._session = requests.Session()
        self._locks = {name: threading.Lock() for name in self.targets}
        self._indexes: dict[str, SourceIndex] = {}
        self._last_prune_ms: dict[str, float] = {}

    def scrape(self, name: str) -> ScrapeResult:
        """Scrape one target now; never raises for upstream faults."""
        target = self.targets[name]
        with self._locks[name]:
            started = time.monotonic()
            try:
                body = fetch(self._session, target.url, self.limits)
                now_ms = self.clock.now_ms()
                decoded = decode_jobs(body, now_ms)
            except FetchError as error:
                return self._failed(name, error.reason, error.detail, started)
            except InvalidDocument as error:
                return self._failed(name, "invalid_json", str(error), started)
            try:
                self._record(name, decoded, now_ms)
            except StoreError as error:
                self.health.record_store_error()
                log.error("source %s: scraped but could not store the result: %s", name, error)
                return ScrapeResult(False, "store", len(decoded.jobs), len(decoded.errors))
            if self.health.record_success(name, time.monotonic() - started, now_ms):
                log.info("source %s: scrape succeeded (%d jobs)", name, len(decoded.jobs))
            if decoded.errors:
                first = decoded.errors[0]
                log.debug(
                    "source %s: skipped %d invalid items (item %d, %s: %s)",
                    name, len(decoded.errors), first.index, first.field, first.message,
                )  # fmt: skip
            return ScrapeResult(True, None, len(decoded.jobs), len(decoded.errors))

    def tracked(self) -> dict[str, int]:
        """Jobs each source's index holds (those scraped by this process so far)."""
        return {name: index.tracked for name, index in self._indexes.items()}

    def close(self) -> None:
        self._session.close()

    def _record(self, name: str, decoded: Decoded, now_ms: float) -> None:
        observed = dedupe(decoded.jobs)
        invalid = Counter(
            {("", "", INVALID_JOBS, f): n for f, n in decoded.invalid_by_field().items()}
        )
        prune = self._due_prune(name, observed, now_ms)
        for _ in range(3):
            index = self._indexes.get(name) or self.store.load_index(name)
            self._indexes[name] = index
            plan = plan_changes(
                index, observed, now_ms,
                complete_list=True, guard=self.rules.guard, buckets=self.rules.buckets,
            )  # fmt: skip
            plan.counts.update(invalid)
            if plan.empty and prune is None:
                return
            try:
                self.store.apply(index, plan, prune)
            except StaleIndex:
                del self._indexes[name]  # another writer moved on: reload and plan again
                continue
            if prune is not None:
                self._last_prune_ms[name] = now_ms
            return
        raise StoreError(f"source {name!r} kept changing under this scrape")

    def _due_prune(self, name: str, observed: dict[str, object], now_ms: float) -> Prune | None:
        if now_ms - self._last_prune_ms.get(name, 0) < PRUNE_EVERY_MS:
            return None
        return Prune(before_ms=now_ms - self.rules.retention_ms, still_listed=observed)

    def _failed(self, name: str, reason: str, detail: str, started: float) -> ScrapeResult:
        """Count the fault; a failed scrape changes no job counts."""
        changed = self.health.record_failure(name, reason, time.monotonic() - started)
        if changed:
            log.warning("source %s: scrape failed (%s): %s", name, reason, detail)
        try:
            self.store.add_counts(name, Counter({("", "", SCRAPE_ERRORS, reason): 1}))
        except StoreError as error:
            self.health.record_store_error()
            log.error("source %s: could not count a scrape error: %s", name, error)
        return ScrapeResult(False, reason)
