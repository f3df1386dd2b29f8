"""Settling SQLite's new job rows off the request path (schema step 11).

A new row's key goes into the recent part of `jobs_key` (settled 0): a few pages the cache
holds however many jobs the store keeps, so a push of random ids (uuid4s) costs the same at
10,000 jobs as at 10 million. Once RECENT rows are newer, a row is settled (set to 1) and its
key moves into the large part of the index. That move writes a random page of a large
index, as every insert did before; here it happens in batches of BATCH rows, each its own
short write between requests, a second after the writes that made the rows.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from exporter.store.base import StoreError

log = logging.getLogger(__name__)

# Rows kept in the recent part: a push of 5,000 jobs and the ones before it still go into
# cached pages, and most running jobs finish while they are recent.
RECENT = 10_000
# Rows one write settles: the longest a request waits behind one is a few milliseconds.
BATCH = 250
# Batches one call settles at most (10,000 rows a second); the rest wait for the next call.
BATCHES = 40

Write = Callable[[], AbstractContextManager[sqlite3.Connection]]


class Settler:
    """`run(connection)` settles what is due, through `write` (the store's writes)."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._below: int | None = None  # every row with a lower seq is settled
        self._failure: str | None = None

    def run(self, connection: sqlite3.Connection, recent: int | None = None) -> int:
        """Settle all but the `recent` newest rows, up to BATCHES batches; returns how many
        rows were settled. `connection` reads whether any are due, without a write. A
        failure is logged once until settling works again, and settling is tried again on
        the next call: rows left recent cost writes a little more, and nothing is lost."""
        recent = RECENT if recent is None else recent
        settled = 0
        for _ in range(BATCHES):
            try:
                (newest,) = connection.execute("SELECT MAX(seq) FROM jobs").fetchone()
                if newest is None or (self._below is not None and newest - recent < self._below):
                    break
                went, more = self._batch(newest - recent)
            except (StoreError, sqlite3.Error) as error:
                if str(error) != self._failure:
                    log.error("settling new job rows failed (tried again each second): %s", error)
                    self._failure = str(error)
                break
            if self._failure is not None:
                log.info("settling new job rows works again")
                self._failure = None
            settled += went
            if not more:
                break
        return settled

    def _batch(self, last: int) -> tuple[int, bool]:
        """Settle the unsettled rows from the cursor up to seq `last` (BATCH of them at
        most); returns how many, and whether rows up to `last` are left."""
        with self._write() as db:
            below = self._below
            if below is None:  # once a start: where the recent rows begin
                (below,) = db.execute(
                    "SELECT MIN(seq) FROM jobs INDEXED BY jobs_key WHERE settled = 0"
                ).fetchone()
                if below is None:  # none recent
                    (newest,) = db.execute("SELECT MAX(seq) FROM jobs").fetchone()
                    self._below = (newest or 0) + 1
                    return 0, False
            if last < below:
                self._below = below
                return 0, False
            up_to = min(below + BATCH, last + 1)
            went = db.execute(
                "UPDATE jobs SET settled = 1 WHERE seq >= ? AND seq < ? AND +settled = 0",
                (below, up_to),
            ).rowcount
        self._below = up_to
        return went, up_to <= last
