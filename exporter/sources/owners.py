"""Which replica scrapes each scraped source: a lease in the store, renewed on every scrape.

Replicas on one PostgreSQL would otherwise each scrape every source (N times the load on the
app's endpoint, for the same counts). Each scheduled scrape first takes or renews the
source's lease; a replica that does not hold it stands by and tries again at its next
scrape. A lease lasts `LEASE_INTERVALS` scrape intervals, so an owner that misses one
renewal (a slow scrape) keeps its sources, and a dead owner's sources are taken over within
three intervals: its lease runs out at most two intervals after its last scrape, and every
other replica tries once an interval. Counting stays exact through a takeover, because each
write checks that nobody applied a newer scrape of the source first (store.apply).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from contextlib import suppress

from exporter.clock import Clock
from exporter.store import Store, StoreError

log = logging.getLogger(__name__)

LEASE_INTERVALS = 2


def replica_id() -> str:
    """Host and process for the people reading the log, and a random part, since every
    container's process is pid 1 and a restarted pod may keep its name."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class SourceLeases:
    """This replica's leases; safe to call from the scrape threads."""

    def __init__(self, store: Store, clock: Clock, owner: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner or replica_id()
        self._lock = threading.Lock()
        self._held: dict[str, bool] = {}

    def hold(self, source: str, interval_s: float) -> tuple[bool | None, bool]:
        """Take or renew the lease on `source`: (held, changed). `held` is None when the
        store could not say (its health has logged why), and then nothing changes."""
        now_ms = self.clock.now_ms()
        until_ms = now_ms + LEASE_INTERVALS * interval_s * 1000
        try:
            held = self.store.claim_source(source, self.owner, now_ms, until_ms)
        except StoreError:
            return None, False
        with self._lock:
            before = self._held.get(source)
            self._held[source] = held
        changed = held != before
        if changed and held:
            log.info("source %s: this replica (%s) scrapes it", source, self.owner)
        elif changed and before is not None:
            log.info("source %s: another replica scrapes it; this one stands by", source)
        elif changed:
            log.info("source %s: another replica scrapes it; %s stands by", source, self.owner)
        return held, changed

    def held(self) -> list[str]:
        with self._lock:
            return sorted(source for source, held in self._held.items() if held)

    def forget(self, source: str) -> None:
        """A source no longer configured: give its lease up."""
        with self._lock:
            held = self._held.pop(source, False)
        if held:
            with suppress(StoreError):
                self.store.release_sources(self.owner, [source])

    def release(self) -> None:
        """Give every lease up on the way out, so that a rolling restart hands the sources
        over at the others' next scrape instead of after the leases run out."""
        sources = self.held()
        with suppress(StoreError):  # unreachable store: the leases run out by themselves
            self.store.release_sources(self.owner, sources)
        with self._lock:
            self._held.clear()
