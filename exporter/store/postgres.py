"""The PostgreSQL store: several exporter replicas share one database.

Writes to a source take that source's row in `sources` FOR UPDATE and check its generation,
so two replicas that scraped the same list cannot both apply it: the second one reloads and
finds nothing left to count. Count rows are upserted additively in key order, so concurrent
writers never deadlock on them. A snapshot's version is the database's own
`pg_current_snapshot()`, which changes exactly when some transaction that wrote has
committed, so every replica refreshes its cached counts when, and only when, anything changed.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

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
from exporter.store import postgres_queue, schedule_rows
from exporter.store.base import ASK_BY_ID_UP_TO, Applied, Prune, Snapshot, StaleIndex, StoreError
from exporter.store.snapshot_sql import read_snapshot

MIGRATION_LOCK = 7_317_001  # pg_advisory_xact_lock key: one replica migrates at a time
SCHEDULES_LOCK = 7_317_002  # ... and one creates a schedule at a time (the count limit)
_S = schedule_rows.POSTGRES
_LOCKED = " FOR UPDATE"

# Schema step 4 (SQLite's store does the same by rebuilding the table): `last_seen_ms` was written
# and never read, and the index on finished jobs cost every insert and finish to speed up a
# prune that runs once a minute (which now reads the source's rows instead, about 20 ms for
# 100,000).
JOBS_SLIMMED = """
    ALTER TABLE jobs DROP COLUMN last_seen_ms;
    DROP INDEX IF EXISTS jobs_finished_at
"""

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        label_type TEXT NOT NULL,
        label_name TEXT NOT NULL,
        start_ms DOUBLE PRECISION NOT NULL,
        finish_ms DOUBLE PRECISION,
        finished_at_ms DOUBLE PRECISION,
        outcome TEXT,
        missing INTEGER NOT NULL DEFAULT 0,
        last_seen_ms DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, id)
    );
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE outcome IS NULL;
    CREATE INDEX jobs_finished_at ON jobs (source, finished_at_ms) WHERE outcome IS NOT NULL;
    CREATE TABLE counts (
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        family TEXT NOT NULL,
        label TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, type, name, family, label)
    );
    CREATE TABLE sources (
        source TEXT PRIMARY KEY,
        generation BIGINT NOT NULL
    );
    """,
    postgres_queue.SCHEMA,  # 2: the job API's jobs
    schedule_rows.POSTGRES_SCHEMA,  # 3: schedules and their fires
    JOBS_SLIMMED,  # 4
)
SCHEMA_VERSION = len(MIGRATIONS)
_FINISHED_IDS = "SELECT id FROM jobs WHERE source = %s AND outcome IS NOT NULL"
COPY_FROM = 500  # inserts beyond this many rows go through COPY

_JOB_COLUMNS = (
    "source, id, type, name, label_type, label_name, start_ms, finish_ms, finished_at_ms,"
    " outcome, missing"
)
_INSERT_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_FINISH_JOB = (
    "UPDATE jobs SET outcome = %s, finish_ms = %s, finished_at_ms = %s, missing = 0"
    " WHERE source = %s AND id = %s"
)
_SET_MISSING = "UPDATE jobs SET missing = %s WHERE source = %s AND id = %s"
_ADD_COUNT = (
    "INSERT INTO counts VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (source, type, name, family, label)"
    " DO UPDATE SET value = counts.value + excluded.value"
)


class PostgresStore:
    """The Store protocol on a PostgreSQL database shared by every replica."""

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(
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
            raise StoreError(f"cannot reach PostgreSQL store {_safe(url)}: {error}") from error
        self._read_lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._migrate()

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield connection
        except StaleIndex:
            raise
        except (psycopg.Error, PoolTimeout) as error:
            raise StoreError(f"{what} failed on {_safe(self.url)}: {error}") from error

    def _migrate(self) -> None:
        with self._transaction("migrating the schema") as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade job-exporter"
                )
            for number in range(version, SCHEMA_VERSION):
                db.execute(MIGRATIONS[number])
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))

    def load_index(self, source: str) -> SourceIndex:
        with self._transaction("loading an index") as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = db.execute(
                "SELECT generation FROM sources WHERE source = %s", (source,)
            ).fetchone()
            index = SourceIndex(source, generation=row[0] if row else 0)
            index.admit(
                db.execute(
                    "SELECT type, name FROM counts WHERE source = %s AND family = %s",
                    (source, STARTED),
                ).fetchall()
            )
            index.load(
                db.execute(
                    "SELECT id, label_type, label_name, start_ms, missing, outcome FROM jobs"
                    " WHERE source = %s AND outcome IS NULL",
                    (source,),
                )
            )
            (index.finished,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE source = %s AND outcome IS NOT NULL", (source,)
            ).fetchone()
        return index

    def finished_among(self, source: str, job_ids: Collection[str]) -> set[str]:
        if not job_ids:
            return set()
        with self._transaction("reading finished jobs") as db:
            if len(job_ids) > ASK_BY_ID_UP_TO:
                rows = db.execute(_FINISHED_IDS, (source,))
                return {job_id for (job_id,) in rows if job_id in job_ids}
            rows = db.execute(f"{_FINISHED_IDS} AND id = ANY(%s)", (source, list(job_ids)))
            return {job_id for (job_id,) in rows}

    def apply(self, index: SourceIndex, plan: Plan, prune: Prune | None = None) -> Applied:
        source = index.source
        with self._transaction(f"writing source {source!r}") as db:
            db.execute(
                "INSERT INTO sources VALUES (%s, 0) ON CONFLICT (source) DO NOTHING", (source,)
            )
            (generation,) = db.execute(
                "SELECT generation FROM sources WHERE source = %s FOR UPDATE", (source,)
            ).fetchone()
            if generation != index.generation:
                raise StaleIndex(f"source {source!r} changed since its index was loaded")
            self._insert(db, plan)
            with db.cursor() as cursor:
                if plan.finishes:
                    cursor.executemany(_FINISH_JOB, plan.finishes)
                if plan.missing:
                    cursor.executemany(_SET_MISSING, plan.missing)
            _add_counts(db, source, plan.counts)
            pruned = self._prune(db, source, prune) if prune else []
            db.execute(
                "UPDATE sources SET generation = %s WHERE source = %s", (generation + 1, source)
            )
        return Applied(generation + 1, pruned)

    @staticmethod
    def _insert(db: psycopg.Connection, plan: Plan) -> None:
        if plan.insert_count > COPY_FROM:
            with (
                db.cursor() as cursor,
                cursor.copy(f"COPY jobs ({_JOB_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in plan.job_rows():
                    copy.write_row(row)
        elif plan.insert_count:
            with db.cursor() as cursor:
                cursor.executemany(_INSERT_JOB, plan.job_rows())

    @staticmethod
    def _prune(db: psycopg.Connection, source: str, prune: Prune) -> list[str]:
        candidates = db.execute(
            "SELECT id FROM jobs WHERE source = %s AND outcome IS NOT NULL AND finished_at_ms < %s",
            (source, prune.before_ms),
        ).fetchall()
        doomed = [job_id for (job_id,) in candidates if job_id not in prune.still_listed]
        if doomed:
            db.execute("DELETE FROM jobs WHERE source = %s AND id = ANY(%s)", (source, doomed))
        return doomed

    def add_counts(self, source: str, deltas: CountDeltas) -> None:
        if deltas:
            with self._transaction(f"adding counts for {source!r}") as db:
                _add_counts(db, source, deltas)

    def snapshot(self) -> Snapshot:
        with self._read_lock, self._transaction("reading counts") as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            (version,) = db.execute("SELECT pg_current_snapshot()::text").fetchone()
            if self._cached is None or self._cached.version != version:
                self._cached = read_snapshot(db, version)
            return self._cached

    def tracked_jobs(self, source: str | None = None) -> list[JobRow]:
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        params: tuple = ()
        if source is not None:
            sql, params = f"{sql} WHERE source = %s", (source,)
        with self._transaction("listing tracked jobs") as db:
            return [JobRow(*row) for row in db.execute(sql, params)]

    # --- the job queue: each method one transaction -----------------------------------

    def queue_insert(self, change: QueueChange, fire: ScheduleFire | None = None) -> QueueJob:
        """With a fire, its key goes in first: a second replica's insert of the same key
        waits for the first transaction, then finds the key and writes nothing."""
        with self._transaction("creating a job") as db:
            if fire is not None:
                schedule_rows.claim_fire(db.execute, _S, fire, change.job.id, change.job.created_ms)
            job = postgres_queue.insert(db, change.job)
            _add_counts(db, API_SOURCE, change.counts)
            if fire is not None:
                schedule_rows.record_fire(db.execute, _S, fire, _LOCKED)
        return job

    def queue_get(self, job_id: str) -> QueueJob | None:
        with self._transaction("reading a job") as db:
            return postgres_queue.get(db, job_id)

    def queue_list(self, query: QueueQuery) -> list[QueueJob]:
        with self._transaction("listing jobs") as db:
            return postgres_queue.page(db, query)

    def queue_series(self) -> set[tuple[str, str]]:
        with self._transaction("reading job labels") as db:
            return postgres_queue.series(db, API_SOURCE)

    def queue_update(self, job_id: str, transition: Transition) -> QueueJob | None:
        with self._transaction(f"updating job {job_id}") as db:
            job = postgres_queue.get(db, job_id, lock=True)
            return None if job is None else _apply_change(db, transition(job))

    def queue_lease(
        self, types: list[str] | None, now_ms: float, transition: Transition
    ) -> QueueJob | None:
        """SELECT ... FOR UPDATE SKIP LOCKED: concurrent leases each take a different job."""
        with self._transaction("leasing a job") as db:
            job = postgres_queue.next_due(db, types, now_ms)
            return None if job is None else _apply_change(db, transition(job))

    def queue_expire(self, now_ms: float, transition: Transition, limit: int) -> list[QueueJob]:
        with self._transaction("expiring leases") as db:
            return [
                _apply_change(db, transition(job))
                for job in postgres_queue.expired(db, now_ms, limit)
            ]

    def queue_prune(self, finished_before_ms: float) -> int:
        with self._transaction("pruning finished jobs") as db:
            db.execute(_S.prune_fires, (finished_before_ms,))
            return postgres_queue.prune(db, finished_before_ms)

    # --- schedules: each method one transaction ---------------------------------------

    def schedule_insert(self, schedule: Schedule, limit: int) -> bool:
        with self._transaction("creating a schedule") as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEDULES_LOCK,))
            (count,) = db.execute("SELECT COUNT(*) FROM schedules").fetchone()
            if count >= limit:
                return False
            db.execute(_S.insert, schedule_rows.insert_values(schedule))
            return True

    def schedule_get(self, schedule_id: str) -> Schedule | None:
        with self._transaction("reading a schedule") as db:
            return schedule_rows.fetch(db.execute, _S, schedule_id)

    def schedule_list(self, due_before_ms: float | None = None) -> list[Schedule]:
        sql, params = (_S.all, ()) if due_before_ms is None else (_S.due, (due_before_ms,))
        with self._transaction("listing schedules") as db:
            return [schedule_rows.row_to_schedule(row) for row in db.execute(sql, params)]

    def schedule_update(self, schedule_id: str, transition: ScheduleTransition) -> Schedule | None:
        with self._transaction(f"updating schedule {schedule_id}") as db:
            return schedule_rows.transition(db.execute, _S, schedule_id, transition, _LOCKED)

    def schedule_delete(self, schedule_id: str) -> bool:
        with self._transaction(f"deleting schedule {schedule_id}") as db:
            db.execute(_S.delete_fires, (schedule_id,))
            return db.execute(_S.delete, (schedule_id,)).rowcount == 1

    def ping(self) -> None:
        with self._transaction("a ping") as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._pool.close()


def _apply_change(db: psycopg.Connection, change: QueueChange) -> QueueJob:
    """Write a job's new state, its counts and, if the change names one, its schedule's
    success."""
    job = change.job
    postgres_queue.update(db, job)
    _add_counts(db, API_SOURCE, change.counts)
    success_ms = change.schedule_success_ms
    if success_ms is not None:
        db.execute(_S.succeeded, (success_ms, job.id, success_ms))
    return job


def _add_counts(db: psycopg.Connection, source: str, deltas: CountDeltas) -> None:
    """Upsert in key order, so two writers touching the same rows lock them in one order."""
    rows = sorted(
        (source, job_type, name, family, label, value)
        for (job_type, name, family, label), value in deltas.items()
        if value
    )
    if rows:
        with db.cursor() as cursor:
            cursor.executemany(_ADD_COUNT, rows)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
