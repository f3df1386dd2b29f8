"""Copies the SQLite write-ahead log into the database on a thread of its own, and looks
at the store file once a second.

By default SQLite checkpoints inside whichever commit pushes the log past 1,000 pages, so
every so often a scrape or a push pays for copying and syncing megabytes it did not write
(docs/benchmarks.md). Here the writer never checkpoints; this thread does, a second after
commits, on its own connection. A passive checkpoint neither blocks nor waits for writers
or readers, and SQLite releases the GIL while it copies, so the work moves to the other core
instead of the request.

The same tick runs the dialect's `tick` first: it tells a store file deleted, replaced or
overwritten while nothing writes (so `/readyz` knows within a second or two), and while the
disk is full it tries the checkpoint that empties the log. It says whether a passive
checkpoint may follow: never into a file that is no longer the store's.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# At most one checkpoint a second: under a steady stream of small commits that is fewer
# copies and syncs than SQLite's own every 1,000 pages, each covering more of the log.
INTERVAL_S = 1.0


def _no_tick(connection: sqlite3.Connection) -> bool:
    return True


class Checkpointer:
    """Call `committed()` after each write; `close()` stops the thread. `tick(connection)`
    runs every INTERVAL_S on the thread's connection; it returns False to skip the
    checkpoint."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        tick: Callable[[sqlite3.Connection], bool] = _no_tick,
    ) -> None:
        self._connect = connect
        self._tick = tick
        self._pending = threading.Event()
        self._stopping = threading.Event()
        self.checkpointed = threading.Event()  # set after each checkpoint, for tests
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._pending.set()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        connection = self._connect()
        try:
            while not self._stopping.wait(INTERVAL_S):
                # closing: the last connection to close checkpoints anyway
                try:
                    if not self._tick(connection) or not self._pending.is_set():
                        continue
                except Exception:  # a bug: loud, and the thread keeps its watch
                    log.exception("checking the SQLite store file failed")
                    continue
                self._pending.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as error:
                    log.warning("SQLite checkpoint failed (tried again after a write): %s", error)
                    continue
                self.checkpointed.set()
        finally:
            connection.close()
