"""The store's counts for `/metrics` and `/readyz`, read on a thread of their own.

A scrape must answer within Prometheus's timeout even while the store hangs (a stopped
database server holds a query until TCP gives up): the request waits at most its budget for
a read that started after it arrived, so what it shows includes every write acknowledged
before it, and otherwise answers with the last counts read and the store marked down.
Requests that arrive while a read is running share the next one, so a hung store holds one
thread and one connection, never one per request.
"""

from __future__ import annotations

import logging
import threading
import time

from exporter.store import Snapshot, Store, StoreError

log = logging.getLogger(__name__)

# Prometheus's default scrape timeout is 10 s; an answer within 2 s leaves room for the
# rendering and the network even when the store hangs.
READ_BUDGET_S = 1.5


class SnapshotReader:
    def __init__(self, store: Store, budget_s: float = READ_BUDGET_S) -> None:
        self.store = store
        self.budget_s = budget_s
        self._changed = threading.Condition()
        self._asked = 0  # requests numbered as they arrive
        self._done = 0  # every request up to this number has its read
        self._snapshot: Snapshot | None = None
        self._fresh = False  # whether the last read worked
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reading_since: float | None = None  # monotonic start of the read under way

    def read(self) -> tuple[Snapshot | None, bool]:
        """The counts as of now and True; or, when the store does not answer within the
        budget or fails, the last counts read (None before any) and False."""
        now = time.monotonic()
        deadline = now + self.budget_s
        with self._changed:
            self._asked += 1
            ticket = self._asked
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="snapshot-reader", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()
            since = self._reading_since
            if since is not None and now - since > self.budget_s:
                # A read is hung already: waiting out another budget behind it would hold
                # this thread for nothing (ten scrapes at once would hold every thread).
                return self._snapshot, False
            while self._done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._snapshot, False
                self._changed.wait(remaining)
            return self._snapshot, self._fresh

    def close(self) -> None:
        """Stop the thread; one stuck in a hung store is a daemon and does not hold exit."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._done == self._asked and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                target = self._asked
                self._reading_since = time.monotonic()
            try:
                snapshot: Snapshot | None = self.store.snapshot()
            except StoreError:  # the store's health has counted and logged it
                snapshot = None
            except Exception:  # a bug: loud, and the next request tries again
                log.exception("reading the store's counts failed")
                snapshot = None
            with self._changed:
                if snapshot is not None:
                    self._snapshot = snapshot
                self._fresh = snapshot is not None
                self._done = target
                self._reading_since = None
                self._changed.notify_all()
