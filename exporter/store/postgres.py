"""The PostgreSQL dialect: several exporter replicas share one database.

Rows about to change are locked (FOR UPDATE), and the queue's picks pass over rows another
transaction holds (SKIP LOCKED); a source's row is locked the same way, so two replicas that
scraped the same list cannot both apply it. What must happen one at a time without a row to
lock (migrating, the schedule limit) takes an advisory lock. Large inserts go through COPY.
A snapshot's version is the database's own `pg_current_snapshot()`, which changes exactly
when some transaction that wrote has committed, so every replica refreshes its cached
counts when, and only when, anything changed.

A database that stops answering must not hold the exporter: connecting, waiting for a pooled
connection, waiting for a lock and running a statement each have a bound of a few seconds,
and a watchdog breaks the connection of any wait for the server that overruns its own bound
(a frozen server still acknowledges TCP, so nothing else would ever time out). The pool
checks each connection as it hands it out and reconnects by itself once the server is back.
"""

from __future__ import annotations

import logging
import math
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, ClassVar, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from exporter.model.queue import API_SOURCE
from exporter.model.tracked import Plan
from exporter.store.base import Snapshot, StoreError
from exporter.store.dialect import Dialect
from exporter.store.health import StoreFault, StoreHealth
from exporter.store.snapshot_sql import read_snapshot
from exporter.store.sql import SqlStore
from exporter.store.tables import (
    JOB_COLUMNS,
    ColumnTypes,
    cancelled_step,
    first_steps,
    idempotency_step,
    owners_step,
    runs_step,
    tracked_counts_step,
    tracked_step,
)

TYPES = ColumnTypes(
    "DOUBLE PRECISION", "BYTEA", "BIGINT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", ""
)
# Schema step 4 (SQLite's does the same by rebuilding the table): `last_seen_ms` was written
# and never read, and the index on finished jobs cost every insert and finish to speed up a
# prune that runs once a minute (which walks jobs_status, schema step 8, since issue 23).
JOBS_SLIMMED = """
    ALTER TABLE jobs DROP COLUMN last_seen_ms;
    DROP INDEX IF EXISTS jobs_finished_at
"""
MIGRATIONS: tuple[str, ...] = (
    *first_steps(TYPES),
    JOBS_SLIMMED,
    runs_step(TYPES),
    idempotency_step(TYPES),
    owners_step(TYPES),
    tracked_step(),
    cancelled_step(),
    tracked_counts_step(TYPES, API_SOURCE),
)
SCHEMA_VERSION = len(MIGRATIONS)
COPY_FROM = 500  # inserts beyond this many rows go through COPY

# Bounds on every way the database can make a request wait, all below Prometheus's default
# scrape timeout (10 s), and short enough that a request thread held by a failing store is
# free again within a few seconds. The server's own bounds (lock, statement) are below the
# watchdog's, so a live server cancels a statement cleanly and keeps the connection; the
# watchdog only acts when the server does not answer at all.
CONNECT_TIMEOUT_S = 2
POOL_WAIT_S = 2.0  # for a free connection of the pool
PROBE_WAIT_S = 0.5  # ... while the store is down: a probe finds out, it does not queue
LOCK_TIMEOUT_MS = 1_500
PROBE_LOCK_TIMEOUT_MS = 500  # ... while the store is down: a lock still held is still down
STATEMENT_TIMEOUT_MS = 2_000
ANSWER_WITHIN_S = 2.5  # any one wait for the server (a statement, a commit, a COPY chunk)
CHECK_WITHIN_S = 1.0  # the pool's check of a connection: an empty query
# The pool retries a failed connect with backoff (1, 2, 4 s ...) for this long, then frees the
# slot, so the next request connects at once: a server back after a long outage is found
# within a couple of seconds, not after a backoff grown to minutes.
RECONNECT_FOR_S = 4.0
# A pool timeout is about the last failure of a connect or check within this long (refused:
# the server is down; no answer: it hangs), else about connections all busy (a timeout).
RECENT_FAILURE_S = 10.0

Connection = psycopg.Connection[Any]


class PostgresDialect(Dialect[Connection]):
    """PostgreSQL's ways, on a pool of connections to one database."""

    placeholder = "%s"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    max_in = sys.maxsize  # one array binds any number of values
    jobs_by_status = "jobs"  # autovacuum's statistics lead the planner to jobs_status
    source_by_status = "source"
    by_key = ""  # the heap keeps rows in arrival order already; the key is (source, id)
    errors = (psycopg.Error, PoolTimeout)
    migrations = MIGRATIONS

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 10,
        answer_within_s: float = ANSWER_WITHIN_S,
    ) -> None:
        super().__init__()
        self.url = url
        self.where = _safe(url)
        self.watchdog = Watchdog(answer_within_s)
        # (monotonic s, StoreFault, what was said) of the last failed connect or check
        self._last_failure: tuple[float, str, str] | None = None
        self._started = False
        self.health: StoreHealth | None = None  # the store's, once it has one
        # StoreHealth says once when the store fails and once when it is back; the pool
        # would also warn at each connect attempt and each discarded connection.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo_to_dict(url):
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            self._pool: ConnectionPool[Connection] = ConnectionPool(
                url,
                connection_class=_watched_by(self),
                min_size=1,
                max_size=max_connections,
                open=True,
                timeout=POOL_WAIT_S,
                kwargs=kwargs,
                configure=_configure,
                check=self._check,
                reconnect_timeout=RECONNECT_FOR_S,
                name="job-exporter",
            )
            self._pool.wait(timeout=10)
        except (psycopg.Error, PoolTimeout) as error:
            raise StoreError(f"cannot reach PostgreSQL store {self.where}: {error}") from error

    def start(self) -> None:
        """The schema is current: from now on every wait for the server is bounded. (A
        migration may take long, or wait for another replica's.)"""
        self._started = True
        self.watchdog.start()

    def fault_of(self, error: Exception) -> str:
        if isinstance(error, PoolTimeout):
            last = self._recent_failure()
            return StoreFault.TIMEOUT if last is None else last[1]  # none: all busy
        return _fault_of(error)

    def saw(self, error: Exception) -> None:
        """A connect or a check failed: what a pool timeout soon after will be about."""
        lines = str(error).strip().splitlines()
        said = lines[0] if lines else type(error).__name__
        self._last_failure = (time.monotonic(), _fault_of(error), said)

    def _recent_failure(self) -> tuple[float, str, str] | None:
        last = self._last_failure
        if last is None or time.monotonic() - last[0] >= RECENT_FAILURE_S:
            return None
        return last

    def _check(self, connection: Connection) -> None:
        """The pool's check of a connection it hands out: one that died while idle (a
        server restarted) is replaced instead of failing the operation. A server that
        ends a connection says so or closes it, which leaves something to read on an idle
        socket: only then is a round trip spent on finding out (most connections are used
        again at once, and a query per check would add a round trip to every operation)."""
        watched = connection if isinstance(connection, WatchedConnection) else None
        try:
            if not select.select([connection.pgconn.socket], [], [], 0)[0]:
                return  # nothing said since it came back
            if watched is not None:
                watched.bound_s = min(CHECK_WITHIN_S, self.watchdog.budget_s)
            connection.execute("")
        except (psycopg.Error, OSError) as error:
            self.saw(error)
            raise
        finally:
            if watched is not None:
                watched.bound_s = None

    def write(self) -> AbstractContextManager[Connection]:
        return self.read()

    @contextmanager
    def read(self, consistent: bool = False) -> Iterator[Connection]:
        down = self.health is not None and not self.health.up  # then this is a probe
        wait_s = PROBE_WAIT_S if down else POOL_WAIT_S
        try:
            connection = self._pool.getconn(wait_s)
        except PoolTimeout as error:
            last = self._recent_failure()
            if last is None:
                raise
            raise PoolTimeout(f"{error} (last connect or check: {last[2]})") from error
        try:
            with connection.transaction():
                if consistent:  # first: it must come before any query
                    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if not self._started:  # migrating: as long as it takes (see start)
                    connection.execute(
                        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0"
                    )
                elif down:
                    connection.execute(f"SET LOCAL lock_timeout = {PROBE_LOCK_TIMEOUT_MS}")
                yield connection
        finally:
            self._pool.putconn(connection)

    def snapshot(self, cached: Snapshot | None) -> Snapshot:
        with self.read(consistent=True) as db:
            version = _one(db, "SELECT pg_current_snapshot()::text")
            if cached is not None and cached.version == version:
                return cached
            return read_snapshot(db, version)

    def close(self) -> None:
        self.watchdog.stop()
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

    def delete_jobs(self, db: Connection, source: str, job_ids: list[str]) -> int:
        return db.execute(
            "DELETE FROM jobs WHERE source = %s AND id = ANY(%s)", (source, job_ids)
        ).rowcount

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def insert_id(self, db: Connection, sql: str, values: Sequence[Any], key: str) -> int:
        seq: int = _one(db, f"{sql} RETURNING {key}", values)
        return seq


class PostgresStore(SqlStore[Connection]):
    """The Store protocol on a PostgreSQL database shared by every replica."""

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        dialect = PostgresDialect(url, max_connections=max_connections)
        super().__init__(dialect)
        dialect.health = self.health  # a probe while the store is down waits less


def _fault_of(error: Exception) -> str:
    """The StoreFault word for what psycopg raised."""
    if isinstance(error, NoAnswer | psycopg.errors.QueryCanceled):
        return StoreFault.TIMEOUT  # hung, or a statement beyond statement_timeout
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return StoreFault.TIMEOUT  # another client held a lock beyond lock_timeout
    if isinstance(error, psycopg.errors.DiskFull):
        return StoreFault.DISK_FULL
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return StoreFault.READ_ONLY  # a standby, or default_transaction_read_only
    if isinstance(error, psycopg.OperationalError):
        if "timeout expired" in str(error):
            return StoreFault.TIMEOUT  # connect_timeout: accepted, then no answer (hung)
        return StoreFault.UNAVAILABLE  # refused, shutting down, connection lost
    return StoreFault.ERROR


def _configure(connection: Connection) -> None:
    """Each new connection: the server's own bounds on a lock wait and a statement."""
    connection.execute(
        f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET lock_timeout = {LOCK_TIMEOUT_MS}"
    )


class NoAnswer(psycopg.OperationalError):
    """The server did not answer one wait within the watchdog's bound: its connection was
    broken, and the pool discards it."""


class WatchedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server the watchdog bounds. psycopg makes
    every blocking exchange (statements, fetches, COPY, commit, the pool's check) one
    `wait` call, so this one place sees them all."""

    dialect: ClassVar[PostgresDialect]
    overran = False  # set by the watchdog when it broke this connection
    bound_s: float | None = None  # a bound of its own for the next waits, else the watchdog's

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.Error as error:
            cls.dialect.saw(error)
            raise

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        watchdog = self.dialect.watchdog
        if not watchdog.armed:
            return super().wait(gen, *args, **kwargs)
        bound_s = watchdog.budget_s if self.bound_s is None else self.bound_s
        if self.overran:
            raise NoAnswer(f"no answer within {bound_s:g} s; connection broken")
        watchdog.watch(self, bound_s)
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as error:
            if not self.overran:
                raise
            self.close()  # so the pool discards it when it comes back
            raise NoAnswer(f"no answer within {bound_s:g} s; connection broken") from error
        finally:
            watchdog.unwatch(self)


def _watched_by(dialect: PostgresDialect) -> type[Connection]:
    """The connection class of one dialect's pool."""
    return type("WatchedConnection", (WatchedConnection,), {"dialect": dialect})


class Watchdog:
    """Breaks the connection of any wait for the server that overruns `budget_s`, so the
    call blocked in it raises at once. The socket is shut down (on a duplicate of its
    descriptor), not closed: the blocked thread still owns the connection and closes it."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.armed = False
        self._changed = threading.Condition(threading.Lock())
        self._waits: dict[int, tuple[float, WatchedConnection]] = {}  # by id(connection)
        self._wake_at = math.inf  # when the thread looks next (monotonic s)
        self._stopping = False

    def start(self) -> None:
        with self._changed:
            if self.armed:
                return
            self.armed = True
        threading.Thread(target=self._run, name="postgres-watchdog", daemon=True).start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self.armed = False
            self._changed.notify_all()

    def watch(self, connection: WatchedConnection, bound_s: float) -> None:
        """Before one wait: from now until `unwatch`, and only then, the watchdog may
        break `connection` (its descriptor is surely still its own)."""
        deadline = time.monotonic() + bound_s
        with self._changed:
            self._waits[id(connection)] = (deadline, connection)
            if deadline < self._wake_at:
                self._changed.notify_all()  # else it wakes in time and finds this one

    def unwatch(self, connection: WatchedConnection) -> None:
        with self._changed:
            self._waits.pop(id(connection), None)

    def _run(self) -> None:
        with self._changed:
            while not self._stopping:
                now = time.monotonic()
                for key, (deadline, connection) in list(self._waits.items()):
                    if deadline <= now:
                        del self._waits[key]
                        _break(connection)
                self._wake_at = min((d for d, _ in self._waits.values()), default=math.inf)
                self._changed.wait(None if self._wake_at == math.inf else self._wake_at - now)


def _break(connection: WatchedConnection) -> None:
    """Shut the connection's socket down: the wait on it wakes and libpq sees it lost.
    Called while its thread is inside `wait`, so the descriptor is still its own."""
    connection.overran = True
    try:
        duplicate = os.dup(connection.pgconn.socket)
    except (OSError, psycopg.Error):
        return  # already closed: the wait has ended anyway
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return
    with sock, suppress(OSError):  # closing it closes the duplicate only
        sock.shutdown(socket.SHUT_RDWR)


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
