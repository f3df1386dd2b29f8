"""The jobs of every process of a multi-process server (gunicorn `-w 3`), in one SQLite file
in a shared folder, so whichever process answers a scrape lists them all.

Why SQLite rather than one file per process merged at read time (prometheus_client's way for
counters): a job is a record that changes state (running, then finished) and must be
forgotten by age and by count across every process. A table keyed by job id does each of
those in one statement, from any process, with WAL letting a scrape read while workers
write. Files per process would need each process to rewrite its whole file on every change,
or a compaction scheme, and every scrape to parse them all.

Each process opens its own connection (lazily, and again after a fork: SQLite connections
must not cross a fork) and holds an exclusive `flock` on an owner file for its life. A
scrape drops the running jobs of owners whose lock is free (their process ended, however it
ended), so the exporter counts those jobs lost (docs/contract.md §2) instead of running for
ever; their finished jobs stay for the keep period like any other.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

ENV_DIR = "JOB_EXPORTER_MULTIPROC_DIR"
DB_NAME = "inprocess-jobs.sqlite"
BUSY_TIMEOUT_S = 2.0  # the longest an emit waits for another process's write
EVICT_EVERY = 1000  # emits between evictions, so a store nobody scrapes stays bounded

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    finished INTEGER NOT NULL,
    finish_ms REAL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, finished);
"""


class SharedJobs:
    """One process's handle on the shared store; thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._pid = 0
        self._connection: sqlite3.Connection | None = None
        self._owner = ""
        self._owner_fd = -1
        self._inherited: list[sqlite3.Connection] = []  # never closed: see _open
        self._emits = 0

    def put(self, item: dict[str, Any], now_ms: float, keep_ms: float, max_finished: int) -> None:
        finished = bool(item.get("isFinished"))
        finish_ms = item.get("finishTimestamp", now_ms) if finished else None
        with self._lock:
            connection = self._open()
            connection.execute(
                "INSERT OR REPLACE INTO jobs (id, owner, finished, finish_ms, item)"
                " VALUES (?, ?, ?, ?, ?)",
                (str(item["id"]), self._owner, int(finished), finish_ms, json.dumps(item)),
            )
            self._emits += 1
            if self._emits % EVICT_EVERY == 0:
                self._evict(connection, now_ms, keep_ms, max_finished)

    def jobs(self, now_ms: float, keep_ms: float, max_finished: int) -> list[dict[str, Any]]:
        """Running jobs of live processes, then finished ones, oldest first."""
        with self._lock:
            connection = self._open()
            self._evict(connection, now_ms, keep_ms, max_finished)
            self._forget_ended_owners(connection)
            rows = connection.execute("SELECT item FROM jobs ORDER BY finished, rowid").fetchall()
        return [json.loads(item) for (item,) in rows]

    def _open(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._connection is not None:
            # Inherited from the parent: closing it here could disturb the parent's locks,
            # so the child only stops using it.
            self._inherited.append(self._connection)
            self._connection = None
        if self._owner_fd >= 0:
            os.close(self._owner_fd)  # the parent's lock stays the parent's
            self._owner_fd = -1
        owners = self.folder / "owners"
        owners.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        temporary = self.folder / f".{owner}.tmp"  # named only once locked: never seen free
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, owners / owner)
        connection = sqlite3.connect(
            self.folder / DB_NAME,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # a live view: no fsync per write
        connection.executescript(SCHEMA)
        self._connection, self._owner, self._owner_fd, self._pid = (
            connection,
            owner,
            fd,
            os.getpid(),
        )
        return connection

    def _evict(
        self, connection: sqlite3.Connection, now_ms: float, keep_ms: float, max_finished: int
    ) -> None:
        connection.execute(
            "DELETE FROM jobs WHERE finished = 1 AND finish_ms < ?", (now_ms - keep_ms,)
        )
        connection.execute(
            "DELETE FROM jobs WHERE finished = 1 AND rowid <= (SELECT rowid FROM jobs"
            " WHERE finished = 1 ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
            (max_finished,),
        )

    def _forget_ended_owners(self, connection: sqlite3.Connection) -> None:
        """Drop the running jobs of processes that ended, and their owner files."""
        folder = self.folder / "owners"
        listed = {entry.name for entry in os.scandir(folder)}
        running = connection.execute("SELECT DISTINCT owner FROM jobs WHERE finished = 0")
        in_rows = {owner for (owner,) in running}
        for owner in (listed | in_rows) - {self._owner}:
            if owner in listed and self._alive(owner):
                continue
            connection.execute("DELETE FROM jobs WHERE owner = ? AND finished = 0", (owner,))
            (folder / owner).unlink(missing_ok=True)

    def _alive(self, owner: str) -> bool:
        """Whether the process that wrote as `owner` still runs: it holds its file's lock."""
        try:
            fd = os.open(self.folder / "owners" / owner, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
