"""The SQLite dialect: one file in WAL mode, one writer connection, one reader connection.

Writes go through a single connection under a lock (SQLite has one writer anyway) in
`BEGIN IMMEDIATE` transactions, which exclude every other writer, in this process or another,
until they commit: no row needs locking. Reads use a separate reader connection, whose
`PRAGMA data_version` tells cheaply whether anything was committed since the last snapshot.
Many rows go in multi-row statements, each prepared once a connection.

What can happen to the file under a running process is checked where it matters (docs in
`StoreFile`): every write, after its COMMIT and before it is acknowledged, and once a second
from the checkpointer's thread. A file deleted, replaced, truncated or overwritten makes the
store refuse writes until a restart; a full disk makes it refuse them until a checkpoint has
emptied the write-ahead log, so the log cannot grow into the space just freed. Every wait for
a lock, this process's or SQLite's, ends within LOCK_WAIT_S as a timeout.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from exporter.model.queue import API_SOURCE
from exporter.model.tracked import Plan
from exporter.store.base import Snapshot, StoreError
from exporter.store.checkpointer import Checkpointer
from exporter.store.dialect import Dialect
from exporter.store.health import StoreFault, StoreHealth
from exporter.store.settler import Settler
from exporter.store.snapshot_sql import read_snapshot
from exporter.store.sql import SqlStore
from exporter.store.tables import (
    ADD_TO_COUNT,
    HEAD_COLUMNS,
    JOB_COLUMNS,
    JOBS_RUNNING_INDEX,
    RUNNING,
    ColumnTypes,
    cancelled_step,
    first_steps,
    idempotency_step,
    jobs_table,
    owners_step,
    runs_step,
    tracked_counts_step,
    tracked_step,
)

TYPES = ColumnTypes(
    "REAL", "BLOB", "INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT", " WITHOUT ROWID"
)


def settled_step() -> str:
    """Schema step 11 (SQLite's alone): jobs in arrival order, found by id through
    `jobs_key` (settled, source, id). A new row has `settled` 0, so its key goes into the
    small part of the index where the other recent rows are, a few pages in the cache;
    `Settler` later sets it to 1 off the request path. Keyed by (source, id), each of a
    push's random ids (uuid4s) wrote a page of its own once the store held about 1M jobs
    (docs/benchmarks.md, issue 23). Rows already kept are settled, in start order."""
    columns = ", ".join(f"{name} {kind}" for name, kind in _JOB_COLUMN_TYPES)
    return f"""
    CREATE TABLE jobs_arrived (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, {columns}, settled INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO jobs_arrived ({JOB_COLUMNS}, settled)
        SELECT {JOB_COLUMNS}, 1 FROM jobs ORDER BY start_ms;
    DROP TABLE jobs;
    ALTER TABLE jobs_arrived RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_key ON jobs (settled, source, id);
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE {RUNNING};
    {tracked_step()}
    """


_JOB_COLUMN_TYPES = (
    *((name, "TEXT NOT NULL") for name in ("source", "id", "type", "name")),
    *((name, "TEXT NOT NULL") for name in ("label_type", "label_name")),
    ("start_ms", "REAL NOT NULL"),
    ("finish_ms", "REAL"),
    ("finished_at_ms", "REAL"),
    ("outcome", "TEXT"),
    ("missing", "INTEGER NOT NULL DEFAULT 0"),
    ("attempt", "INTEGER NOT NULL DEFAULT 1"),
    ("waiting", "INTEGER NOT NULL DEFAULT 0"),
    ("enqueue_ms", "REAL"),
    ("error", "TEXT"),
    ("reported_ms", "REAL"),
)

# Each entry migrates the schema from version N to N + 1; PRAGMA user_version holds N.
MIGRATIONS: tuple[str, ...] = (
    *first_steps(TYPES),
    # 4: what PostgreSQL's step 4 does (postgres.py), by rebuilding the table: ALTER TABLE ...
    # DROP COLUMN needs SQLite 3.35, newer than some systems' Python 3.11 links against
    # (RHEL 9 has 3.34).
    f"""{jobs_table("jobs_slim", TYPES)};
    INSERT INTO jobs_slim SELECT {HEAD_COLUMNS} FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_slim RENAME TO jobs;
    {JOBS_RUNNING_INDEX}
    """,
    runs_step(TYPES),
    idempotency_step(TYPES),
    owners_step(TYPES),
    tracked_step(),
    cancelled_step(),
    tracked_counts_step(TYPES, API_SOURCE),
    settled_step(),
)
SCHEMA_VERSION = len(MIGRATIONS)

# The tables each schema step creates (no later step drops one): a store at version N has
# those of the first N steps and none of the others.
STEP_TABLES: tuple[tuple[str, ...], ...] = (
    ("jobs", "counts", "sources"),
    ("queue_jobs",),
    ("schedules", "schedule_fires"),
    (),
    (),
    ("idempotency_keys",),
    ("source_owners",),
    (),
    (),
    ("tracked_counts",),
    (),
)

# SQLite's limit on the values one statement binds before 3.32 raised it to 32,766.
_MAX_VARIABLES = 999

# The longest an operation waits for a write lock, this process's or SQLite's (held by a
# slow write or another process) before failing as a timeout: a push or a scrape gets its
# answer well inside its client's patience.
LOCK_WAIT_S = 2.0
# After a checkpoint has used the whole log, SQLite cuts the file back to this size, so a
# burst of writes does not keep its disk space.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# Every SQLite database file starts so; then its page size and, in WAL mode, bytes 2 and 2.
MAGIC = b"SQLite format 3\0"
HEADER_BYTES = 20

log = logging.getLogger(__name__)


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

    def write(self, db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Whole chunks in multi-row statements, the rest one by one: a statement per row
        pays sqlite3's own loop and a fresh lookup per row (docs/benchmarks.md)."""
        size = self.per_statement
        whole = len(rows) - len(rows) % size
        for start in range(0, whole, size):
            db.execute(self.many, list(chain.from_iterable(rows[start : start + size])))
        db.executemany(self.one, rows[whole:])


# New jobs' short rows (see Plan): the label columns repeat the type and name bound once.
_SHORT_INSERT = f"INSERT INTO jobs ({HEAD_COLUMNS}) VALUES"
_RUNNING_ROWS = _Batched.of(
    _SHORT_INSERT, "(?{0}, ?{1}, ?{2}, ?{3}, ?{2}, ?{3}, ?{4}, NULL, NULL, NULL, 0)", 5
)
_LATE_ROWS = _Batched.of(
    f"INSERT INTO jobs ({HEAD_COLUMNS}, reported_ms) VALUES",
    "(?{0}, ?{1}, ?{2}, ?{3}, ?{2}, ?{3}, ?{4}, NULL, NULL, NULL, 0, ?{5})",
    6,
)
_FINISHED_ROWS = _Batched.of(
    _SHORT_INSERT, "(?{0}, ?{1}, ?{2}, ?{3}, ?{2}, ?{3}, ?{4}, ?{5}, ?{6}, ?{7}, 0)", 8
)
_COUNT_ROWS = _Batched.of(
    "INSERT INTO counts VALUES", "(?{0}, ?{1}, ?{2}, ?{3}, ?{4}, ?{5})", 6, ADD_TO_COUNT
)


# SQLite's primary result codes (the part of an extended one before its second "_").
_FAULTS = {
    "SQLITE_BUSY": StoreFault.TIMEOUT,
    "SQLITE_LOCKED": StoreFault.TIMEOUT,
    "SQLITE_FULL": StoreFault.DISK_FULL,
    "SQLITE_READONLY": StoreFault.READ_ONLY,
    "SQLITE_CORRUPT": StoreFault.CORRUPT,
    "SQLITE_NOTADB": StoreFault.CORRUPT,
    "SQLITE_CANTOPEN": StoreFault.UNAVAILABLE,
}


def sqlite_path(url: str) -> str:
    """The file of a store URL, as SQLAlchemy reads them: what follows `sqlite:///` is the
    path, so `sqlite:///rel.db` is relative and `sqlite:////abs/file.db` absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or not url[len(prefix) :]:
        raise ValueError(f"store URL {url!r} must be sqlite:///path/file.db")
    return unquote(url[len(prefix) :])


class StoreFile:
    """The store file as this process opened it, to tell when the path no longer names it.

    SQLite keeps its file open: deleted, or replaced by another file, it goes on writing
    to the one it has, which nobody will read again; truncated or overwritten, its pages
    are gone, and a checkpoint would copy the log into the wreck. None of that fails a
    COMMIT. One stat and a read of the header say which, in microseconds: the file never
    shrinks here (no VACUUM, no auto_vacuum) and its first bytes never change.
    """

    def __init__(self, path: str, shrinks: bool = False) -> None:
        self.path = path
        self.shrinks = shrinks  # a file made with auto_vacuum gives pages back
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        opened = os.fstat(self._fd)
        self._identity = (opened.st_dev, opened.st_ino)
        self._lock = threading.Lock()
        self._size = opened.st_size
        self._header = b""  # the first HEADER_BYTES, once the file has them
        self._seen: tuple[int, int] | None = None  # (size, mtime) when last found sound

    def check(self) -> None:
        """Raise StoreError, fault REPLACED or CORRUPT, when the file was changed under
        the process (UNAVAILABLE when it cannot even be looked at)."""
        where = f"store file {self.path}"
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(
                f"{where} was deleted while running: writes are refused, as they would go to "
                "a file nobody can read; put the file back or restart to begin a new, empty "
                "store",
                StoreFault.REPLACED,
            ) from None
        except OSError as error:
            raise StoreError(f"cannot look at {where}: {error}", StoreFault.UNAVAILABLE) from error
        if (now.st_dev, now.st_ino) != self._identity:
            raise StoreError(
                f"{where} was replaced by another file while running: writes are refused, as "
                "they would go to the old file, which nobody can read; restart to use the "
                "file now there, or put the old one back",
                StoreFault.REPLACED,
            )
        if (now.st_size, now.st_mtime_ns) == self._seen:
            return  # untouched since it was last found sound (writes go to the log)
        damaged = (
            "writes are refused; restore it from a backup and restart, or move it aside "
            "(with its -wal and -shm files) and restart to begin a new, empty store"
        )
        with self._lock:
            if now.st_size < self._size and not self.shrinks:
                raise StoreError(
                    f"{where} was truncated while running (from {self._size} to "
                    f"{now.st_size} bytes): its counts are damaged; {damaged}",
                    StoreFault.CORRUPT,
                )
            self._size = max(self._size, now.st_size)
            if self._fd < 0:
                return  # closed: the store's connections say so
            header = os.pread(self._fd, HEADER_BYTES, 0)
            if header == self._header:
                self._seen = (now.st_size, now.st_mtime_ns)
                return
            if not self._header and len(header) == HEADER_BYTES and header.startswith(MAGIC):
                self._header = header  # the first checkpoint wrote the first page
                self._seen = (now.st_size, now.st_mtime_ns)
                return
        raise StoreError(
            f"{where} was overwritten while running: it no longer starts as an SQLite "
            f"database does; {damaged}",
            StoreFault.CORRUPT,
        )

    def close(self) -> None:
        """Idempotent, as the store's own close is."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class SqliteDialect(Dialect[sqlite3.Connection]):
    """SQLite's ways, on one file (or `:memory:`). `health` is the store's, for what the
    checkpointer's thread finds out with no operation to raise it in."""

    placeholder = "?"
    for_update = ""  # BEGIN IMMEDIATE has excluded every other writer already
    skip_locked = ""
    max_in = 900  # under SQLite's 999 values a statement before 3.32
    # No statistics guide SQLite (nothing runs ANALYZE): the index is named, and `+source`
    # (the same value, but no index column) leaves the rows in the index's order, unsorted.
    jobs_by_status = "jobs INDEXED BY jobs_status"
    source_by_status = "+source"
    by_key = "settled IN (0, 1) AND "
    errors = (sqlite3.Error,)
    migrations = MIGRATIONS

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = self.where = str(path)
        self.health: StoreHealth | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self.checkpointer: Checkpointer | None = None
        self.settler = Settler(self.write)
        self._file: StoreFile | None = None
        self._broken: StoreError | None = None  # a fatal fault: writes refused till restart
        self._full: StoreError | None = (
            None  # the disk was full: until a checkpoint empties the log
        )
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise self._cannot_open(error) from error
            if not _writable(self.path):  # else SQLite opens it read-only, to fail later
                raise self._cannot_open(PermissionError("not writable"))
        self.writer = self._connect()
        self.reader = self._connect()
        if self.path != ":memory:":
            (auto_vacuum,) = self.writer.execute("PRAGMA auto_vacuum").fetchone()
            try:
                self._file = StoreFile(self.path, shrinks=auto_vacuum != 0)
            except OSError as error:
                raise self._cannot_open(error) from error

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_S
            )
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal" and self.path != ":memory:":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (still {mode})")
            # WAL with synchronous=NORMAL survives a killed process; only power loss can
            # drop the last commits, and those are counted again from the source.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT:d}")
        except sqlite3.Error as error:
            raise self._cannot_open(error) from error
        return connection

    def _cannot_open(self, error: Exception) -> StoreError:
        """What stands in the way of opening the store, and what to do about it."""
        where = f"cannot open SQLite store {self.path}"
        folder = Path(self.path).parent
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        fault = self.fault_of(error) if isinstance(error, sqlite3.Error) else StoreFault.ERROR
        if read_only:
            advice = (
                "it is on a read-only file system; mount it read-write or choose another --store"
            )
            fault = StoreFault.READ_ONLY
        elif fault == StoreFault.READ_ONLY or not _writable(self.path):
            advice = (
                "the file or its folder is read-only here (its -wal and -shm files sit beside "
                "it); make both writable or choose another --store"
            )
            fault = StoreFault.READ_ONLY
        elif fault == StoreFault.CORRUPT:
            advice = (
                "it is not an SQLite database or it is damaged; restore it from a backup, or "
                "move it aside (with its -wal and -shm files) to begin a new, empty store"
            )
        elif fault == StoreFault.TIMEOUT:
            advice = f"another process held it locked for over {LOCK_WAIT_S:g} s; try again"
        else:
            advice = "check the path and its permissions"
        return StoreError(f"{where}: {error}; {advice}", fault)

    def fault_of(self, error: Exception) -> str:
        name = getattr(error, "sqlite_errorname", "")
        return _FAULTS.get("_".join(name.split("_")[:2]), StoreFault.ERROR)

    def start(self) -> None:
        try:
            if self.path != ":memory:":
                self.writer.execute("PRAGMA wal_autocheckpoint = 0")  # the thread does it
                self.checkpointer = Checkpointer(self._connect, self._tick)
            # A large write keeps its dirty pages in memory until it commits, instead of
            # spilling them into the log midway and reading them back. The cache shrinks
            # back to its usual size once the write is done.
            self.writer.execute("PRAGMA cache_spill = OFF")
        except sqlite3.Error as error:
            raise self._cannot_open(error) from error

    # --- faults --------------------------------------------------------------------------

    def _error(self, what: str, error: sqlite3.Error) -> StoreError:
        """A driver error as StoreError with its fault; a full disk is remembered, so that
        reads and writes wait for the checkpoint that empties the log."""
        fault = self.fault_of(error)
        held = f" (another connection held the write lock for {LOCK_WAIT_S:g} s)"
        failure = StoreError(
            f"{what} {self.path}: {error}{held if fault == StoreFault.TIMEOUT else ''}", fault
        )
        if fault == StoreFault.DISK_FULL and self._file is not None:
            self._full = StoreError(
                f"the disk of store {self.path} is full: writes are refused until space is "
                f"freed and the write-ahead log could be emptied ({error})",
                StoreFault.DISK_FULL,
            )
        return failure

    def _check_file(self) -> None:
        """Raise (and remember, when fatal) a fault of the file itself."""
        if self._broken is not None:
            raise StoreError(str(self._broken), self._broken.fault)
        if self._file is None:
            return
        try:
            self._file.check()
        except StoreError as error:
            if error.fault in StoreFault.FATAL:
                self._broken = error
            raise

    def _recover(self, connection: sqlite3.Connection) -> bool:
        """After a full disk, whether a checkpoint has copied the whole log into the file
        and truncated it: only then may writes go on, or the log would grow into the freed
        space and leave no room for any checkpoint ever after."""
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        if busy:
            return False
        self._full = None
        return True

    def _tick(self, connection: sqlite3.Connection) -> bool:
        """Once a second on the checkpointer's thread: report a file changed under the
        process (no write may come to find it), settle new job rows (settler.py), and try
        to empty the log after a full disk. Returns whether a passive checkpoint may run."""
        if self._broken is not None:
            return False
        try:
            self._check_file()
        except StoreError as error:
            if self.health is not None:
                self.health.failed(error.fault, str(error), write=True)
            return False
        if self._full is None:
            self.settler.run(connection)
            return True
        if self._recover(connection):
            log.info("the write-ahead log of %s is emptied: writes go on", self.path)
            if self.health is not None:
                self.health.ok(write=True)
        return False

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, acknowledged only once the file is found still the
        store's; every wait for a lock, ours or SQLite's, ends within LOCK_WAIT_S."""
        asked = time.monotonic()
        if not self._write_lock.acquire(timeout=LOCK_WAIT_S):
            raise StoreError(
                f"no write to {self.path} within {LOCK_WAIT_S:g} s: the writes before it "
                "still hold the lock (a slow disk, or another process holding SQLite's)",
                StoreFault.TIMEOUT,
            )
        connection = self.writer
        busy_ms = 0
        try:
            if self._broken is not None:
                raise StoreError(str(self._broken), self._broken.fault)
            if self._full is not None and not self._recover(connection):
                raise StoreError(str(self._full), self._full.fault)
            waited = time.monotonic() - asked
            if waited > 0.05:  # what is left of LOCK_WAIT_S for SQLite's lock
                busy_ms = max(1, int((LOCK_WAIT_S - waited) * 1000))
                connection.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._error("cannot start a write on", error) from error
            try:
                yield connection
            except BaseException as error:
                if isinstance(error, sqlite3.Error):
                    self._error("writing to", error)  # remembers a full disk
                _abandon(connection)
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                _abandon(connection)
                raise self._error("commit failed on", error) from error
            self._check_file()
            if self.checkpointer is not None:
                self.checkpointer.committed()
        finally:
            if busy_ms:
                connection.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000):d}")
            self._write_lock.release()

    @contextmanager
    def read(self, consistent: bool = False) -> Iterator[sqlite3.Connection]:
        """Reads go on while the disk is full: they end no fault a write met (health.py)."""
        with self._read_lock:
            if not consistent:
                yield self.reader
                return
            with self._read_transaction() as reader:
                yield reader

    @contextmanager
    def _read_transaction(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every statement sees the state of its first."""
        reader = self.reader
        reader.execute("BEGIN")
        try:
            yield reader
        finally:
            reader.execute("COMMIT")

    def snapshot(self, cached: Snapshot | None) -> Snapshot:
        with self._read_lock:
            (version,) = self.reader.execute("PRAGMA data_version").fetchone()
            if cached is not None and cached.version == version:
                return cached
            with self._read_transaction() as reader:
                return read_snapshot(reader, version)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        with self._write_lock, self._read_lock:
            if self._broken is not None and self._broken.fault == StoreFault.REPLACED:
                self._leave_no_log()
            self.reader.close()
            self.writer.close()
            if self._file is not None:
                self._file.close()

    def _leave_no_log(self) -> None:
        """The log beside the path is still the old file's, and SQLite leaves it there when
        that file is gone: the next start would apply it to whatever file is at the path
        now. Copied into the old file (which may live on elsewhere) and truncated, it is
        harmless."""
        try:
            busy, _, _ = self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            busy = 1
        if busy:
            log.error(
                "the write-ahead log %s-wal belongs to the store file that was replaced: "
                "delete it (and %s-shm) before the next start",
                self.path,
                self.path,
            )

    def schema_version(self, db: sqlite3.Connection) -> int:
        """The file's schema step, once its tables agree: a database of another program,
        or one a failed upgrade left half done, is refused before any step runs on it."""
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(STEP_TABLES):
            return version  # newer than this release: the store says so
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        )
        tables = {name for (name,) in rows}
        have = {table for step in STEP_TABLES[:version] for table in step}
        later = {table for step in STEP_TABLES[version:] for table in step}
        where = f"{self.path} (schema version {version})"
        fresh = "point --store at a new file to begin a new, empty store"
        if version == 0 and tables:
            raise StoreError(
                f"{where} is not a job-exporter store: it has tables ({_names(tables)}) that "
                f"job-exporter did not make; {fresh}"
            )
        if have - tables:
            raise StoreError(
                f"{where} is not a job-exporter store, or a damaged one: it lacks tables "
                f"({_names(have - tables)}); restore it from a backup, or {fresh}"
            )
        if tables & later:
            raise StoreError(
                f"{where} is half-migrated: it has tables of a later schema step "
                f"({_names(tables & later)}); restore it from the backup taken before the "
                f"upgrade, or {fresh}"
            )
        return version

    def set_schema_version(self, db: sqlite3.Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version = {version:d}")

    def run_script(self, db: sqlite3.Connection, script: str) -> None:
        for statement in _statements(script):
            db.execute(statement)

    def lock(self, db: sqlite3.Connection, key: int) -> None:
        """Nothing: BEGIN IMMEDIATE has excluded every other writer already."""

    def lock_source(self, db: sqlite3.Connection, source: str) -> None:
        """Nothing: BEGIN IMMEDIATE has excluded every other writer already."""

    def insert_jobs(self, db: sqlite3.Connection, plan: Plan) -> None:
        """Short rows bind only the values that differ; folded jobs bind whole rows."""
        _RUNNING_ROWS.write(db, plan.running_inserts)
        _LATE_ROWS.write(db, plan.late_inserts)
        _FINISHED_ROWS.write(db, plan.finished_inserts)
        db.executemany(self.insert_job, plan.inserts)

    def add_counts(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        _COUNT_ROWS.write(db, rows)

    def execute_many(self, db: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        db.executemany(sql, rows)

    def delete_jobs(self, db: sqlite3.Connection, source: str, job_ids: list[str]) -> int:
        return db.executemany(
            f"DELETE FROM jobs WHERE {self.by_key}source = ? AND id = ?",
            [(source, i) for i in job_ids],
        ).rowcount

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({self.marks(len(values))})", list(values)

    def insert_id(self, db: sqlite3.Connection, sql: str, values: Sequence[Any], key: str) -> int:
        """The new row's rowid, which `key` (an INTEGER PRIMARY KEY) names: RETURNING
        needs SQLite 3.35."""
        row_id = db.execute(sql, values).lastrowid
        if row_id is None:
            raise StoreError(f"no {key} for the row inserted into {self.path}")
        return row_id


class SqliteStore(SqlStore[sqlite3.Connection]):
    """The Store protocol on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._sqlite = SqliteDialect(path)
        self.path = self._sqlite.path
        super().__init__(self._sqlite)
        self._sqlite.health = self.health

    @property
    def _writer(self) -> sqlite3.Connection:
        return self._sqlite.writer

    @property
    def _checkpointer(self) -> Checkpointer | None:
        return self._sqlite.checkpointer

    def settle(self, recent: int | None = None) -> int:
        """Settle all but the `recent` newest job rows now, as the checkpointer's thread
        does each second (up to its batches); returns how many were settled."""
        with self._sqlite.read() as db:
            return self._sqlite.settler.run(db, recent)


def _abandon(connection: sqlite3.Connection) -> None:
    """Roll back what is left of a failed write. After a full disk or an I/O error SQLite
    has rolled back already, and a ROLLBACK error must not hide the one that matters."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            log.warning("rolling back a failed write failed too: %s", error)


def _writable(path: str) -> bool:
    """Whether this process may write the file (if any) and create files beside it."""
    file = Path(path)
    return os.access(file.parent, os.W_OK) and (not file.exists() or os.access(file, os.W_OK))


def _names(tables: set[str]) -> str:
    return ", ".join(sorted(tables))


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
