"""Scrape one source: fetch, split into items, plan the changed ones against the known
state, write in one transaction.

Faults upstream (down, slow, garbage) are counted by reason and logged once per change of
state; they never raise out of `scrape`, so the timers and `/metrics` keep going.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import requests

from exporter.clock import Clock
from exporter.config import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_SCRAPE_TIMEOUT, is_rq_url
from exporter.health import HealthBoard
from exporter.model.counts import CountKind, ScrapeErrorReason
from exporter.sources.fetch import FetchError, FetchLimits, fetch
from exporter.sources.owners import SourceLeases
from exporter.store import StoreError
from exporter.tracking.decode import InvalidDocument
from exporter.tracking.ingest import Ingestor
from exporter.tracking.listing import Listing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScrapeTarget:
    name: str
    url: str
    interval_s: float


@dataclass(frozen=True)
class ScrapeResult:
    ok: bool
    reason: str | None = None
    jobs: int = 0
    invalid: int = 0


class Scraper:
    """Scrapes the configured targets; safe to call from timer threads."""

    def __init__(
        self,
        ingestor: Ingestor,
        targets: list[ScrapeTarget],
        clock: Clock,
        health: HealthBoard,
        *,
        limits: FetchLimits | None = None,
        leases: SourceLeases | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.targets = {target.name: target for target in targets}
        self.clock = clock
        self.health = health
        self.limits = limits or FetchLimits.within(
            DEFAULT_SCRAPE_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES
        )
        self.leases = leases  # None: this process scrapes every source (no replicas)
        self._session = requests.Session()
        # Per target: its fetch, and what closes it (an RQ source's Redis connections).
        self._fetchers: dict[str, tuple[Callable[[], bytes | bytearray], Callable[[], None]]] = {
            target.name: self._fetcher_for(target) for target in targets
        }
        self._locks = {name: threading.Lock() for name in self.targets}

    def scrape(self, name: str) -> ScrapeResult:
        """Scrape one target now, if this replica holds its lease; never raises for
        upstream faults."""
        fetch_body, _ = self._fetchers[name]
        with self._locks[name]:
            if self.leases is not None:
                held, changed = self.leases.hold(name, self.targets[name].interval_s)
                if held is None:  # the store is down: nothing a scrape found could be kept
                    return ScrapeResult(False, "store")
                if changed:
                    self.health.record_owned(name, held)
                    # What this process knew of the source may be from before another
                    # replica scraped it: read it afresh.
                    self.ingestor.forget(name)
                if not held:
                    return ScrapeResult(False, "standby")
            started = time.monotonic()
            try:
                body = fetch_body()
                now_ms = self.clock.now_ms()
                listing = Listing.split(body)
                del body  # the listing holds it while its items are needed
            except FetchError as error:
                return self._failed(name, error.reason, error.detail, started)
            except InvalidDocument as error:
                return self._failed(name, ScrapeErrorReason.INVALID_JSON, str(error), started)
            except Exception as error:  # anything else must not end the scrape unseen (§3)
                detail = f"{type(error).__name__}: {error}"
                return self._failed(name, ScrapeErrorReason.INTERNAL, detail, started)
            items = len(listing.items)
            try:
                decoded = self.ingestor.ingest_listing(name, listing, now_ms)
            except StoreError as error:  # logged by the store's health, once per change
                log.debug("source %s: scraped but could not store the result: %s", name, error)
                return ScrapeResult(False, "store", items)
            except InvalidDocument as error:  # an item nested too deep, found on decoding
                return self._failed(name, ScrapeErrorReason.INVALID_JSON, str(error), started)
            except Exception as error:  # a bug on the way to the store: counted, and loud
                log.exception("source %s: could not apply the scrape", name)
                detail = f"{type(error).__name__}: {error}"
                return self._failed(name, ScrapeErrorReason.INTERNAL, detail, started)
            finally:
                del listing  # free the body and its items before logging and returning
            invalid = len(decoded.errors)
            valid = items - invalid
            if self.health.record_success(name, time.monotonic() - started, now_ms):
                log.info("source %s: scrape succeeded (%d jobs)", name, valid)
            if decoded.errors.listed:
                first = decoded.errors.listed[0]
                log.debug(
                    "source %s: skipped %d invalid items (item %d, %s: %s)",
                    name,
                    invalid,
                    first.index,
                    first.field,
                    first.message,
                )
            return ScrapeResult(True, None, valid, invalid)

    def add(self, target: ScrapeTarget) -> None:
        """A source added while running (a reload): scraped from its first scheduled scrape."""
        self._fetchers[target.name] = self._fetcher_for(target)
        self._locks[target.name] = threading.Lock()
        self.targets[target.name] = target

    def remove(self, name: str) -> None:
        """A source no longer configured; its timer is stopped first, so no scrape runs."""
        with self._locks[name]:
            del self.targets[name]
            _, close = self._fetchers.pop(name)
        del self._locks[name]
        close()

    def close(self) -> None:
        for _, close in self._fetchers.values():
            close()
        self._session.close()

    def _fetcher_for(
        self, target: ScrapeTarget
    ) -> tuple[Callable[[], bytes | bytearray], Callable[[], None]]:
        """An HTTP GET of the target's endpoint, or for an `rq+redis://` URL a read of RQ's
        own registries that yields the same kind of body (docs/contract.md §6)."""
        if is_rq_url(target.url):
            from exporter.sources.rq import RQReader  # redis-py, only for an RQ source

            reader = RQReader(target.url, self.limits)
            return reader.read, reader.close
        return partial(fetch, self._session, target.url, self.limits), _nothing

    def _failed(self, name: str, reason: str, detail: str, started: float) -> ScrapeResult:
        """Count the fault; a failed scrape changes no job counts."""
        changed = self.health.record_failure(name, reason, time.monotonic() - started)
        if changed:
            log.warning("source %s: scrape failed (%s): %s", name, reason, detail)
        try:
            self.ingestor.store.add_counts(
                name, Counter({("", "", CountKind.SCRAPE_ERRORS, reason): 1})
            )
        except StoreError as error:
            log.debug("source %s: could not count a scrape error: %s", name, error)
        return ScrapeResult(False, reason)


def _nothing() -> None:
    """What closes an HTTP source: the session they share is closed with the scraper."""
