"""The SQLite dialect: one file in WAL mode, one writer connection, one reader connection.

Writes go through a single connection under a lock (SQLite has one writer anyway) in
`BEGIN IMMEDIATE` transactions, which exclude every other writer, in this process or another,
until they commit: no row needs locking. Reads use a separate reader connection, whose
`PRAGMA data_version` tells cheaply whether anything was committed since the last snapshot.
Many rows go in multi-row statements, each prepared once a connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from exporter.model.tracked import Plan
from exporter.store.base import Snapshot, StoreError
from exporter.store.checkpointer import Checkpointer
from exporter.store.dialect import Dialect
from exporter.store.health import StoreFault
from exporter.store.snapshot_sql import read_snapshot
from exporter.store.sql import SqlStore
from exporter.store.tables import (
    ADD_TO_COUNT,
    HEAD_COLUMNS,
    JOBS_RUNNING_INDEX,
    ColumnTypes,
    first_steps,
    jobs_table,
    runs_step,
)

TYPES = ColumnTypes(
    "REAL", "BLOB", "INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT", " WITHOUT ROWID"
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
)
SCHEMA_VERSION = len(MIGRATIONS)

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


class SqliteDialect(Dialect[sqlite3.Connection]):
    """SQLite's ways, on one file (or `:memory:`)."""

    placeholder = "?"
    for_update = ""  # BEGIN IMMEDIATE has excluded every other writer already
    skip_locked = ""
    max_in = 900  # under SQLite's 999 values a statement before 3.32
    errors = (sqlite3.Error,)
    migrations = MIGRATIONS

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = self.where = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self.checkpointer: Checkpointer | None = None
        self.writer = self._connect()
        self.reader = self._connect()

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

    def fault_of(self, error: Exception) -> str:
        name = getattr(error, "sqlite_errorname", "")
        return _FAULTS.get("_".join(name.split("_")[:2]), StoreFault.ERROR)

    def start(self) -> None:
        if self.path != ":memory:":
            self.writer.execute("PRAGMA wal_autocheckpoint = 0")  # the thread does it
            self.checkpointer = Checkpointer(self._connect)
        # A large write keeps its dirty pages in memory until it commits, instead of
        # spilling them into the log midway and reading them back. The cache shrinks back
        # to its usual size once the write is done.
        self.writer.execute("PRAGMA cache_spill = OFF")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            connection = self.writer
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
            if self.checkpointer is not None:
                self.checkpointer.committed()

    @contextmanager
    def read(self, consistent: bool = False) -> Iterator[sqlite3.Connection]:
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
            self.reader.close()
            self.writer.close()

    def schema_version(self, db: sqlite3.Connection) -> int:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
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

    def delete_jobs(self, db: sqlite3.Connection, source: str, job_ids: list[str]) -> None:
        db.executemany(
            "DELETE FROM jobs WHERE source = ? AND id = ?", [(source, i) for i in job_ids]
        )

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

    @property
    def _writer(self) -> sqlite3.Connection:
        return self._sqlite.writer

    @property
    def _checkpointer(self) -> Checkpointer | None:
        return self._sqlite.checkpointer


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
