"""The SQLite store: one file in WAL mode, one writer connection, one reader connection.

Writes go through a single connection under a lock (SQLite has one writer anyway) in
`BEGIN IMMEDIATE` transactions; snapshots use a separate reader connection, whose
`PRAGMA data_version` tells cheaply whether anything was committed since the last snapshot.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from urllib.parse import unquote

from exporter.model.counts import STARTED, CountDeltas
from exporter.model.queue import (
    API_SOURCE,
    QueueChange,
    QueueJob,
    QueueQuery,
    Transition,
)
from exporter.model.schedules import Schedule, ScheduleFire, ScheduleTransition
from exporter.model.tracked import JobRow, Plan, SourceIndex
from exporter.store import schedule_rows, sqlite_queue
from exporter.store.base import ASK_BY_ID_UP_TO, Applied, Prune, Snapshot, StaleIndex, StoreError
from exporter.store.checkpointer import Checkpointer
from exporter.store.snapshot_sql import read_snapshot

# Each entry migrates the schema from version N to N + 1; PRAGMA user_version holds N.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        label_type TEXT NOT NULL,
        label_name TEXT NOT NULL,
        start_ms REAL NOT NULL,
        finish_ms REAL,
        finished_at_ms REAL,
        outcome TEXT,
        missing INTEGER NOT NULL DEFAULT 0,
        last_seen_ms REAL NOT NULL,
        PRIMARY KEY (source, id)
    ) WITHOUT ROWID;
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE outcome IS NULL;
    CREATE INDEX jobs_finished_at ON jobs (source, finished_at_ms) WHERE outcome IS NOT NULL;
    CREATE TABLE counts (
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        family TEXT NOT NULL,
        label TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (source, type, name, family, label)
    ) WITHOUT ROWID;
    CREATE TABLE sources (
        source TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    sqlite_queue.SCHEMA,  # 2: the job API's jobs
    schedule_rows.SQLITE_SCHEMA,  # 3: schedules and their fires
    # 4: what the PostgreSQL store's JOBS_SLIMMED does, by rebuilding the table: ALTER TABLE
    # ... DROP COLUMN needs SQLite 3.35, newer than some systems' Python 3.11 links against
    # (RHEL 9 has 3.34).
    """
    CREATE TABLE jobs_slim (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        label_type TEXT NOT NULL,
        label_name TEXT NOT NULL,
        start_ms REAL NOT NULL,
        finish_ms REAL,
        finished_at_ms REAL,
        outcome TEXT,
        missing INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, id)
    ) WITHOUT ROWID;
    INSERT INTO jobs_slim SELECT source, id, type, name, label_type, label_name, start_ms,
        finish_ms, finished_at_ms, outcome, missing FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_slim RENAME TO jobs;
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE outcome IS NULL
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_S = schedule_rows.SQLITE
_INSERT_JOB = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# SQLite's limit on the values one statement binds before 3.32 raised it to 32,766.
_MAX_VARIABLES = 999


@dataclass(frozen=True)
class _Batched:
    """The statements that write many rows of one shape: one row, or `per_statement` rows
    at a time in one multi-row statement."""

    one: str
    many: str
    per_statement: int

    @classmethod
    def of(cls, head: str, values: str, width: int, tail: str = "") -> _Batched:
        """`values` is one row's VALUES tuple, ?{0} standing for its first bound value."""
        per_statement = _MAX_VARIABLES // width

        def row(n: int) -> str:
            return values.format(*range(n * width + 1, n * width + width + 1))

        many = ", ".join(map(row, range(per_statement)))
        return cls(f"{head} {row(0)}{tail}", f"{head} {many}{tail}", per_statement)

    def write(self, db: sqlite3.Connection, rows: list[tuple]) -> None:
        """Whole chunks in multi-row statements, the rest one by one. A statement per row
        pays sqlite3's own loop and a fresh lookup per row; in chunks a 100,000-job first
        scrape inserts in about 370 ms instead of 450, and a steady scrape's 3,000 count
        changes take 9 ms instead of 15 (each statement is prepared once a connection)."""
        size = self.per_statement
        whole = len(rows) - len(rows) % size
        for start in range(0, whole, size):
            db.execute(self.many, list(chain.from_iterable(rows[start : start + size])))
        db.executemany(self.one, rows[whole:])


# New jobs' short rows (see Plan): the label columns repeat the type and name bound once.
_RUNNING_ROWS = _Batched.of(
    "INSERT INTO jobs VALUES", "(?{0}, ?{1}, ?{2}, ?{3}, ?{2}, ?{3}, ?{4}, NULL, NULL, NULL, 0)", 5
)
_FINISHED_ROWS = _Batched.of(
    "INSERT INTO jobs VALUES", "(?{0}, ?{1}, ?{2}, ?{3}, ?{2}, ?{3}, ?{4}, ?{5}, ?{6}, ?{7}, 0)", 8
)
_FINISH_JOB = (
    "UPDATE jobs SET outcome = ?, finish_ms = ?, finished_at_ms = ?, missing = 0"
    " WHERE source = ? AND id = ?"
)
_SET_MISSING = "UPDATE jobs SET missing = ? WHERE source = ? AND id = ?"
_FINISHED_IDS = "SELECT id FROM jobs WHERE source = ? AND outcome IS NOT NULL"
_IDS_PER_QUESTION = 900  # under SQLite's 999 values a statement before 3.32
_ADD_COUNT = (
    "INSERT INTO counts VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (source, type, name, family, label) DO UPDATE SET value = value + excluded.value"
)
_COUNT_ROWS = _Batched.of(
    "INSERT INTO counts VALUES",
    "(?{0}, ?{1}, ?{2}, ?{3}, ?{4}, ?{5})",
    6,
    " ON CONFLICT (source, type, name, family, label) DO UPDATE SET value = value + excluded.value",
)


def sqlite_path(url: str) -> str:
    """The file of a store URL, as SQLAlchemy reads them: what follows `sqlite:///` is the
    path, so `sqlite:///rel.db` is relative and `sqlite:////abs/file.db` absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or not url[len(prefix) :]:
        raise ValueError(f"store URL {url!r} must be sqlite:///path/file.db")
    return unquote(url[len(prefix) :])


class SqliteStore:
    """The Store protocol on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        self._writer = self._connect()
        self._migrate()
        self._reader = self._connect()
        self._cached: Snapshot | None = None
        if self.path != ":memory:":
            self._writer.execute("PRAGMA wal_autocheckpoint = 0")  # the thread does it
            self._checkpointer = Checkpointer(self._connect)
        # A large write (a first scrape of 100,000 jobs dirties about 13 MB of pages) keeps
        # its pages in memory until it commits, instead of spilling them into the log
        # midway and reading them back: about a tenth of its time. The cache shrinks back
        # to its usual 2 MB once the write is done.
        self._writer.execute("PRAGMA cache_spill = OFF")

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            connection.execute("PRAGMA journal_mode = WAL")
            # WAL with synchronous=NORMAL survives a killed process; only power loss can
            # drop the last commits, and those are counted again from the source.
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as error:
            raise StoreError(f"cannot open SQLite store {self.path}: {error}") from error
        return connection

    def _migrate(self) -> None:
        with self._transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade job-exporter"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[number]):
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            connection = self._writer
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StoreError(f"cannot write to {self.path}: {error}") from error
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                connection.execute("ROLLBACK")
                raise StoreError(f"commit failed on {self.path}: {error}") from error
            if self._checkpointer is not None:
                self._checkpointer.committed()

    def load_index(self, source: str) -> SourceIndex:
        with self._read_lock:
            reader = self._reader
            reader.execute("BEGIN")
            try:
                row = reader.execute(
                    "SELECT generation FROM sources WHERE source = ?", (source,)
                ).fetchone()
                index = SourceIndex(source, generation=row[0] if row else 0)
                index.load(
                    reader.execute(
                        "SELECT id, label_type, label_name, start_ms, missing, outcome"
                        " FROM jobs WHERE source = ? AND outcome IS NULL",
                        (source,),
                    )
                )
                (index.finished,) = reader.execute(
                    "SELECT COUNT(*) FROM jobs WHERE source = ? AND outcome IS NOT NULL",
                    (source,),
                ).fetchone()
                index.admit(
                    reader.execute(
                        "SELECT type, name FROM counts WHERE source = ? AND family = ?",
                        (source, STARTED),
                    ).fetchall()
                )
            finally:
                reader.execute("COMMIT")
        return index

    def finished_among(self, source: str, job_ids: Collection[str]) -> set[str]:
        if not job_ids:
            return set()

        def read(db: sqlite3.Connection) -> set[str]:
            db.execute("BEGIN")
            try:
                if len(job_ids) > ASK_BY_ID_UP_TO:
                    rows = db.execute(_FINISHED_IDS, (source,))
                    return {job_id for (job_id,) in rows if job_id in job_ids}
                found: set[str] = set()
                asked = list(job_ids)
                for start in range(0, len(asked), _IDS_PER_QUESTION):
                    chunk = asked[start : start + _IDS_PER_QUESTION]
                    marks = ", ".join("?" * len(chunk))
                    rows = db.execute(f"{_FINISHED_IDS} AND id IN ({marks})", (source, *chunk))
                    found.update(job_id for (job_id,) in rows)
                return found
            finally:
                db.execute("COMMIT")

        return self._read(read)

    def apply(self, index: SourceIndex, plan: Plan, prune: Prune | None = None) -> Applied:
        source = index.source
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT generation FROM sources WHERE source = ?", (source,)
                ).fetchone()
                if (row[0] if row else 0) != index.generation:
                    raise StaleIndex(f"source {source!r} changed since its index was loaded")
                _RUNNING_ROWS.write(db, plan.running_inserts)
                _FINISHED_ROWS.write(db, plan.finished_inserts)
                db.executemany(_INSERT_JOB, plan.inserts)
                db.executemany(_FINISH_JOB, plan.finishes)
                db.executemany(_SET_MISSING, plan.missing)
                _COUNT_ROWS.write(db, _count_rows(source, plan.counts))
                pruned = self._prune(db, source, prune) if prune else []
                generation = index.generation + 1
                db.execute(
                    "INSERT INTO sources VALUES (?, ?)"
                    " ON CONFLICT (source) DO UPDATE SET generation = excluded.generation",
                    (source, generation),
                )
        except sqlite3.Error as error:
            raise StoreError(f"writing source {source!r} failed: {error}") from error
        return Applied(generation, pruned)

    @staticmethod
    def _prune(db: sqlite3.Connection, source: str, prune: Prune) -> list[str]:
        candidates = db.execute(
            "SELECT id FROM jobs WHERE source = ? AND outcome IS NOT NULL AND finished_at_ms < ?",
            (source, prune.before_ms),
        ).fetchall()
        doomed = [job_id for (job_id,) in candidates if job_id not in prune.still_listed]
        db.executemany(
            "DELETE FROM jobs WHERE source = ? AND id = ?", [(source, i) for i in doomed]
        )
        return doomed

    def add_counts(self, source: str, deltas: CountDeltas) -> None:
        if not deltas:
            return
        try:
            with self._transaction() as db:
                _COUNT_ROWS.write(db, _count_rows(source, deltas))
        except sqlite3.Error as error:
            raise StoreError(f"adding counts for {source!r} failed: {error}") from error

    def snapshot(self) -> Snapshot:
        with self._read_lock:
            try:
                version = self._reader.execute("PRAGMA data_version").fetchone()[0]
                if self._cached is not None and self._cached.version == version:
                    return self._cached
                self._cached = self._read_snapshot(version)
            except sqlite3.Error as error:
                raise StoreError(f"reading counts failed: {error}") from error
            return self._cached

    def _read_snapshot(self, version: int) -> Snapshot:
        reader = self._reader
        reader.execute("BEGIN")
        try:
            return read_snapshot(reader, version)
        finally:
            reader.execute("COMMIT")

    def tracked_jobs(self, source: str | None = None) -> list[JobRow]:
        sql = "SELECT * FROM jobs"
        params: tuple = ()
        if source is not None:
            sql, params = f"{sql} WHERE source = ?", (source,)
        return self._read(lambda db: [JobRow(*row) for row in db.execute(sql, params)])

    # --- the job queue: each method one transaction -----------------------------------

    def queue_insert(self, change: QueueChange, fire: ScheduleFire | None = None) -> QueueJob:
        def insert(db: sqlite3.Connection) -> QueueJob:
            if fire is not None:
                schedule_rows.claim_fire(db.execute, _S, fire, change.job.id, change.job.created_ms)
            job = sqlite_queue.insert(db, change.job)
            db.executemany(_ADD_COUNT, _count_rows(API_SOURCE, change.counts))
            if fire is not None:
                schedule_rows.record_fire(db.execute, _S, fire)
            return job

        return self._write("creating a job", insert)

    def queue_get(self, job_id: str) -> QueueJob | None:
        return self._read(lambda db: sqlite_queue.get(db, job_id))

    def queue_list(self, query: QueueQuery) -> list[QueueJob]:
        return self._read(lambda db: sqlite_queue.page(db, query))

    def queue_series(self) -> set[tuple[str, str]]:
        return self._read(lambda db: sqlite_queue.series(db, API_SOURCE))

    def queue_update(self, job_id: str, transition: Transition) -> QueueJob | None:
        def update(db: sqlite3.Connection) -> QueueJob | None:
            job = sqlite_queue.get(db, job_id)
            return None if job is None else self._apply_change(db, transition(job))

        return self._write(f"updating job {job_id}", update)

    def queue_lease(
        self, types: list[str] | None, now_ms: float, transition: Transition
    ) -> QueueJob | None:
        """Pick and mark in one BEGIN IMMEDIATE transaction: no two callers, in this process
        or another, can pick the same job."""

        def lease(db: sqlite3.Connection) -> QueueJob | None:
            job = sqlite_queue.next_due(db, types, now_ms)
            return None if job is None else self._apply_change(db, transition(job))

        return self._write("leasing a job", lease)

    def queue_expire(self, now_ms: float, transition: Transition, limit: int) -> list[QueueJob]:
        def expire(db: sqlite3.Connection) -> list[QueueJob]:
            return [
                self._apply_change(db, transition(job))
                for job in sqlite_queue.expired(db, now_ms, limit)
            ]

        return self._write("expiring leases", expire)

    def queue_prune(self, finished_before_ms: float) -> int:
        def prune(db: sqlite3.Connection) -> int:
            db.execute(_S.prune_fires, (finished_before_ms,))
            return sqlite_queue.prune(db, finished_before_ms)

        return self._write("pruning finished jobs", prune)

    @staticmethod
    def _apply_change(db: sqlite3.Connection, change: QueueChange) -> QueueJob:
        job = change.job
        sqlite_queue.update(db, job)
        db.executemany(_ADD_COUNT, _count_rows(API_SOURCE, change.counts))
        success_ms = change.schedule_success_ms
        if success_ms is not None:
            db.execute(_S.succeeded, (success_ms, job.id, success_ms))
        return job

    # --- schedules: each method one transaction ---------------------------------------

    def schedule_insert(self, schedule: Schedule, limit: int) -> bool:
        def insert(db: sqlite3.Connection) -> bool:
            (count,) = db.execute("SELECT COUNT(*) FROM schedules").fetchone()
            if count >= limit:
                return False
            db.execute(_S.insert, schedule_rows.insert_values(schedule))
            return True

        return self._write("creating a schedule", insert)

    def schedule_get(self, schedule_id: str) -> Schedule | None:
        return self._read(lambda db: schedule_rows.fetch(db.execute, _S, schedule_id))

    def schedule_list(self, due_before_ms: float | None = None) -> list[Schedule]:
        sql, params = (_S.all, ()) if due_before_ms is None else (_S.due, (due_before_ms,))
        return self._read(
            lambda db: [schedule_rows.row_to_schedule(row) for row in db.execute(sql, params)]
        )

    def schedule_update(self, schedule_id: str, transition: ScheduleTransition) -> Schedule | None:
        return self._write(
            f"updating schedule {schedule_id}",
            lambda db: schedule_rows.transition(db.execute, _S, schedule_id, transition),
        )

    def schedule_delete(self, schedule_id: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            db.execute(_S.delete_fires, (schedule_id,))
            return db.execute(_S.delete, (schedule_id,)).rowcount == 1

        return self._write(f"deleting schedule {schedule_id}", delete)

    def _write(self, what: str, work):
        """Run `work(connection)` in one write transaction; anything it raises rolls back."""
        try:
            with self._transaction() as db:
                return work(db)
        except sqlite3.Error as error:
            raise StoreError(f"{what} failed: {error}") from error

    def _read(self, work):
        with self._read_lock:
            try:
                return work(self._reader)
            except sqlite3.Error as error:
                raise StoreError(f"reading {self.path} failed: {error}") from error

    def ping(self) -> None:
        with self._read_lock:
            try:
                self._reader.execute("SELECT 1").fetchone()
            except sqlite3.Error as error:
                raise StoreError(f"SQLite store {self.path} does not answer: {error}") from error

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()


def _count_rows(source: str, deltas: CountDeltas) -> list[tuple]:
    """In key order: neighbouring rows then share pages (15 ms to 14 for 3,000 changes)."""
    rows = [
        (source, job_type, name, family, label, value)
        for (job_type, name, family, label), value in deltas.items()
        if value
    ]
    rows.sort()
    return rows


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
