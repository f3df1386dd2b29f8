"""The PostgreSQL dialect: several exporter replicas share one database.

Rows about to change are locked (FOR UPDATE), and the queue's picks pass over rows another
transaction holds (SKIP LOCKED); a source's row is locked the same way, so two replicas that
scraped the same list cannot both apply it. What must happen one at a time without a row to
lock (migrating, the schedule limit) takes an advisory lock. Large inserts go through COPY.
A snapshot's version is the database's own `pg_current_snapshot()`, which changes exactly
when some transaction that wrote has committed, so every replica refreshes its cached
counts when, and only when, anything changed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from exporter.model.tracked import Plan
from exporter.store.base import Snapshot, StoreError
from exporter.store.dialect import Dialect
from exporter.store.health import StoreFault
from exporter.store.snapshot_sql import read_snapshot
from exporter.store.sql import SqlStore
from exporter.store.tables import JOB_COLUMNS, ColumnTypes, first_steps, runs_step

TYPES = ColumnTypes(
    "DOUBLE PRECISION", "BYTEA", "BIGINT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", ""
)
# Schema step 4 (SQLite's does the same by rebuilding the table): `last_seen_ms` was written
# and never read, and the index on finished jobs cost every insert and finish to speed up a
# prune that runs once a minute (which now reads the source's rows instead).
JOBS_SLIMMED = """
    ALTER TABLE jobs DROP COLUMN last_seen_ms;
    DROP INDEX IF EXISTS jobs_finished_at
"""
MIGRATIONS: tuple[str, ...] = (*first_steps(TYPES), JOBS_SLIMMED, runs_step(TYPES))
SCHEMA_VERSION = len(MIGRATIONS)
COPY_FROM = 500  # inserts beyond this many rows go through COPY

Connection = psycopg.Connection[Any]


class PostgresDialect(Dialect[Connection]):
    """PostgreSQL's ways, on a pool of connections to one database."""

    placeholder = "%s"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    max_in = sys.maxsize  # one array binds any number of values
    errors = (psycopg.Error, PoolTimeout)
    migrations = MIGRATIONS

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        super().__init__()
        self.url = url
        self.where = _safe(url)
        try:
            self._pool: ConnectionPool[Connection] = ConnectionPool(
                url,
                min_size=1,
                max_size=max_connections,
                open=True,
                timeout=10,
                kwargs={"autocommit": True},
                name="job-exporter",
            )
            self._pool.wait(timeout=10)
        except (psycopg.Error, PoolTimeout) as error:
            raise StoreError(f"cannot reach PostgreSQL store {self.where}: {error}") from error

    def fault_of(self, error: Exception) -> str:
        if isinstance(error, PoolTimeout | psycopg.errors.QueryCanceled):
            return StoreFault.TIMEOUT
        if isinstance(error, psycopg.errors.LockNotAvailable):
            return StoreFault.TIMEOUT
        if isinstance(error, psycopg.errors.DiskFull):
            return StoreFault.DISK_FULL
        if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
            return StoreFault.READ_ONLY
        if isinstance(error, psycopg.OperationalError):
            return StoreFault.UNAVAILABLE
        return StoreFault.ERROR

    def write(self) -> AbstractContextManager[Connection]:
        return self.read()

    @contextmanager
    def read(self, consistent: bool = False) -> Iterator[Connection]:
        with self._pool.connection() as connection, connection.transaction():
            if consistent:
                connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield connection

    def snapshot(self, cached: Snapshot | None) -> Snapshot:
        with self.read(consistent=True) as db:
            version = _one(db, "SELECT pg_current_snapshot()::text")
            if cached is not None and cached.version == version:
                return cached
            return read_snapshot(db, version)

    def close(self) -> None:
        self._pool.close()

    def schema_version(self, db: Connection) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def set_schema_version(self, db: Connection, version: int) -> None:
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    def run_script(self, db: Connection, script: str) -> None:
        db.execute(script)  # a script without parameters may hold many statements

    def lock(self, db: Connection, key: int) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def lock_source(self, db: Connection, source: str) -> None:
        db.execute("INSERT INTO sources VALUES (%s, 0) ON CONFLICT (source) DO NOTHING", (source,))

    def insert_jobs(self, db: Connection, plan: Plan) -> None:
        if plan.insert_count > COPY_FROM:
            with (
                db.cursor() as cursor,
                cursor.copy(f"COPY jobs ({JOB_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in plan.job_rows():
                    copy.write_row(row)
        elif plan.insert_count:
            self.execute_many(db, self.insert_job, plan.job_rows())

    def add_counts(self, db: Connection, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.execute_many(db, self.add_count, rows)

    def execute_many(self, db: Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with db.cursor() as cursor:
            cursor.executemany(sql, rows)

    def delete_jobs(self, db: Connection, source: str, job_ids: list[str]) -> None:
        db.execute("DELETE FROM jobs WHERE source = %s AND id = ANY(%s)", (source, job_ids))

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def insert_id(self, db: Connection, sql: str, values: Sequence[Any], key: str) -> int:
        seq: int = _one(db, f"{sql} RETURNING {key}", values)
        return seq


class PostgresStore(SqlStore[Connection]):
    """The Store protocol on a PostgreSQL database shared by every replica."""

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        super().__init__(PostgresDialect(url, max_connections=max_connections))


def _one(db: Connection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The single value of a query that always returns one row."""
    row = db.execute(sql, params).fetchone()
    if row is None:
        raise StoreError(f"no row from {sql!r}")
    return row[0]


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
