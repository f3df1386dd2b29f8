"""The Store protocol written once, in SQL that SQLite and PostgreSQL both run.

Each method is one transaction, opened by the store's dialect (dialect.py), which owns only
what the two databases do their own way. Writes to a source read its generation locked and
compare it with the index the plan was made against, so two writers that planned against
the same state cannot both count it: the second gets StaleIndex, reloads and replans. Count
rows are added in key order, so concurrent writers lock them in one order and never
deadlock. What a job's state means is decided by tracking/ and jobs/; this only writes it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any, Generic

from exporter.model.counts import CountDeltas, CountKind, Outcome
from exporter.model.queue import (
    API_SOURCE,
    CreateKey,
    KeyOrphaned,
    KeyReused,
    QueueBatch,
    QueueChange,
    QueueJob,
    QueueQuery,
    Transition,
)
from exporter.model.schedules import Schedule, ScheduleFire, ScheduleTransition
from exporter.model.tracked import JobRow, Plan, SourceIndex, TrackedQuery
from exporter.store import schedule_rows
from exporter.store.base import (
    Prune,
    PruneCursor,
    Pruned,
    Snapshot,
    StaleIndex,
    StoreError,
)
from exporter.store.dialect import C, Dialect
from exporter.store.health import StoreHealth
from exporter.store.queue_sql import QueueSql
from exporter.store.tables import JOB_COLUMNS

# Rows one prune transaction deletes at most (the tracked jobs' prune takes its own size).
PRUNE_BATCH = 1000
# Keys of Dialect.lock: one replica migrates at a time, and one creates a schedule at a time
# (the count limit).
MIGRATION_LOCK = 7_317_001
SCHEDULES_LOCK = 7_317_002


def count_rows(source: str, deltas: CountDeltas) -> list[tuple[Any, ...]]:
    """The non-zero deltas as count rows, in key order: neighbouring rows share pages, and
    writers touching the same rows lock them in one order."""
    rows = [
        (source, job_type, name, family, label, value)
        for (job_type, name, family, label), value in deltas.items()
        if value
    ]
    rows.sort()
    return rows


class SqlStore(Generic[C]):
    """The Store protocol over one dialect's connections."""

    def __init__(self, dialect: Dialect[C]) -> None:
        self._dialect = dialect
        p = dialect.placeholder
        self._queue = QueueSql(dialect)
        self._schedules = schedule_rows.Statements(p)
        self._generation = f"SELECT generation FROM sources WHERE source = {p}"
        self._locked_generation = self._generation + dialect.for_update
        self._set_generation = (
            f"INSERT INTO sources VALUES ({p}, {p})"
            " ON CONFLICT (source) DO UPDATE SET generation = excluded.generation"
        )
        by_status, source_by_status = dialect.jobs_by_status, dialect.source_by_status
        key = f"{dialect.by_key}source = {p} AND id = {p}"
        self._open_rows = (
            "SELECT id, label_type, label_name, start_ms, missing, outcome, attempt, waiting,"
            f" enqueue_ms, reported_ms FROM {by_status}"
            f" WHERE {source_by_status} = {p} AND outcome IS NULL"
        )
        self._kept = f"SELECT jobs FROM tracked_counts WHERE source = {p}"
        self._started_series = f"SELECT type, name FROM counts WHERE source = {p} AND family = {p}"
        self._finished_attempts = (
            f"SELECT id, attempt FROM jobs WHERE source = {p} AND outcome IS NOT NULL"
        )
        self._finished_attempts_among = f"{self._finished_attempts} AND {dialect.by_key}"
        self._finish_job = (
            f"UPDATE jobs SET outcome = {p}, finish_ms = {p}, finished_at_ms = {p}, missing = 0"
            f" WHERE {key}"
        )
        self._set_missing = f"UPDATE jobs SET missing = {p} WHERE {key}"
        self._update_job = (
            f"UPDATE jobs SET start_ms = {p}, finish_ms = {p}, finished_at_ms = {p},"
            f" outcome = {p}, missing = {p}, attempt = {p}, waiting = {p},"
            f" enqueue_ms = COALESCE({p}, enqueue_ms), error = NULLIF(COALESCE({p}, error), ''),"
            f" reported_ms = {p} WHERE {key}"
        )
        self._touch = f"UPDATE jobs SET reported_ms = {p} WHERE {key}"
        # One outcome's finished jobs started before the cutoff, walked along jobs_status
        # (schema step 8) from a cursor: a batch reads the rows it prunes, not the source.
        # A job finishes after it starts, so every job counted before the cutoff is among
        # them (one the app's clock dates later than ours goes once its start is past too).
        self._prunable = (
            f"SELECT start_ms, id FROM {by_status} WHERE outcome = {p} AND start_ms < {p}"
            f" AND (start_ms, source, id) > ({p}, {p}, {p}) AND {source_by_status} = {p}"
            f" AND finished_at_ms < {p} ORDER BY start_ms, source, id LIMIT {p}"
        )
        # A lease on a source: taken when free or expired, renewed by its owner, atomically.
        self._claim = (
            f"INSERT INTO source_owners VALUES ({p}, {p}, {p}) ON CONFLICT (source) DO UPDATE"
            " SET owner = excluded.owner, expires_ms = excluded.expires_ms"
            " WHERE source_owners.owner = excluded.owner"
            f" OR source_owners.expires_ms <= {p}"
        )
        self._release = f"DELETE FROM source_owners WHERE owner = {p} AND source = {p}"
        self._tracked = f"SELECT {JOB_COLUMNS} FROM jobs"
        self._tracked_of = f"{self._tracked} WHERE source = {p}"
        self._snapshot_lock = threading.Lock()
        self._cached: Snapshot | None = None
        self.health = StoreHealth()
        self._migrate()
        dialect.start()

    # --- transactions --------------------------------------------------------------------

    def _write(self, what: str) -> AbstractContextManager[C]:
        return self._guarded(what, True, self._dialect.write)

    def _read(self, what: str, consistent: bool = False) -> AbstractContextManager[C]:
        return self._guarded(what, False, partial(self._dialect.read, consistent))

    @contextmanager
    def _guarded(
        self, what: str, write: bool, connect: Callable[[], AbstractContextManager[Any]]
    ) -> Iterator[Any]:
        """One operation on a connection `connect` opens, reported to `health`: driver
        errors become StoreError with a fault; while the store is known to be down it is
        not tried (but for probes). One context manager, not two: this is every write's
        path."""
        health = self.health
        probe = health.admit(write)
        try:
            with connect() as db:
                yield db
        except StaleIndex:
            health.ok(probe, write=write)  # another writer won: the store works
            raise
        except StoreError as error:
            health.failed(error.fault, str(error), probe, write=write)
            raise
        except self._dialect.errors as error:
            failure = self._failed(what, error)
            health.failed(failure.fault, str(failure), probe, write=write)
            raise failure from error
        except BaseException:
            health.ok(probe, write=write)  # the store answered; the caller's own code raised
            raise
        health.ok(probe, write=write)

    def _failed(self, what: str, error: Exception) -> StoreError:
        return StoreError(
            f"{what} failed on {self._dialect.where}: {error}", self._dialect.fault_of(error)
        )

    def _migrate(self) -> None:
        """Bring the schema up to date in one transaction, so a step that fails leaves the
        file as it was. Not through `health`: a store that cannot be opened stops the
        start-up with one message, which a log line before it would only repeat."""
        dialect = self._dialect
        latest = len(dialect.migrations)
        running = 0  # the schema step being run, if any
        try:
            with dialect.write() as db:
                dialect.lock(db, MIGRATION_LOCK)
                version = dialect.schema_version(db)
                if version > latest:
                    raise StoreError(
                        f"{dialect.where} has schema version {version}, newer than this "
                        f"release understands ({latest}); upgrade job-exporter"
                    )
                for running in range(version + 1, latest + 1):
                    dialect.run_script(db, dialect.migrations[running - 1])
                running = 0
                dialect.set_schema_version(db, latest)
        except dialect.errors as error:
            dialect.close()
            if not running:
                raise self._failed("migrating the schema", error) from error
            raise StoreError(
                f"schema step {running} of {latest} failed on {dialect.where}: {error}; the "
                "upgrade was rolled back, but the database is not what that step expects "
                "(half-migrated, or not a job-exporter store): restore it from a backup, or "
                "point --store at a new file to begin a new, empty store",
                dialect.fault_of(error),
            ) from error
        except StoreError:
            dialect.close()
            raise

    # --- tracked jobs and counts ---------------------------------------------------------

    def load_index(self, source: str) -> SourceIndex:
        with self._read("loading an index", consistent=True) as db:
            row = db.execute(self._generation, (source,)).fetchone()
            index = SourceIndex(source, generation=row[0] if row else 0)
            index.load(db.execute(self._open_rows, (source,)))
            # Every row is open or finished: the kept count less the open ones, where
            # counting the finished ones read every job the source retains.
            kept = db.execute(self._kept, (source,)).fetchone()
            index.finished = max(0, (kept[0] if kept else 0) - len(index.open))
            index.admit(db.execute(self._started_series, (source, CountKind.STARTED)).fetchall())
        return index

    def finished_among(self, source: str, job_ids: Collection[str], kept: int) -> dict[str, int]:
        if not job_ids:
            return {}
        if len(job_ids) > kept:  # fewer rows to read than ids to ask about
            with self._read("reading finished jobs") as db:
                rows = db.execute(self._finished_attempts, (source,))
                return {job_id: attempt for job_id, attempt in rows if job_id in job_ids}
        asked = list(job_ids)
        step = self._dialect.max_in
        found: dict[str, int] = {}
        with self._read("reading finished jobs", consistent=len(asked) > step) as db:
            for start in range(0, len(asked), step):
                clause, values = self._dialect.in_clause("id", asked[start : start + step])
                rows = db.execute(f"{self._finished_attempts_among}{clause}", (source, *values))
                found.update(rows)
        return found

    def apply(self, index: SourceIndex, plan: Plan) -> int:
        source = index.source
        dialect = self._dialect
        with self._write(f"writing source {source!r}") as db:
            self._check_generation(db, index)
            dialect.insert_jobs(db, plan)
            if plan.finishes:
                dialect.execute_many(db, self._finish_job, plan.finishes)
            if plan.missing:
                dialect.execute_many(db, self._set_missing, plan.missing)
            if plan.updates:
                dialect.execute_many(db, self._update_job, plan.updates)
            if plan.touches:
                dialect.execute_many(db, self._touch, plan.touches)
            # Plain inserts: the plan asked the store which ids it keeps, under this
            # generation, and a recent row already there fails the write (on SQLite a
            # settled twin would not, and would stop the settler loudly).
            added = plan.insert_count
            if plan.deletes:
                added -= dialect.delete_jobs(db, source, plan.deletes)
            dialect.add_counts(db, count_rows(source, plan.counts))
            dialect.add_tracked(db, source, added)
            generation = index.generation + 1
            db.execute(self._set_generation, (source, generation))
        return generation

    def _check_generation(self, db: C, index: SourceIndex) -> None:
        """Lock the source; StaleIndex unless it is still at the index's generation."""
        source = index.source
        self._dialect.lock_source(db, source)
        row = db.execute(self._locked_generation, (source,)).fetchone()
        if (row[0] if row else 0) != index.generation:
            raise StaleIndex(f"source {source!r} changed since its index was loaded")

    def prune_batch(
        self, index: SourceIndex, prune: Prune, after: PruneCursor | None, limit: int
    ) -> Pruned:
        """One batch of the retention prune, in its own short write transaction: the next
        `limit` finished jobs counted before `prune.before_ms` (after the cursor `after`),
        less those still listed, are deleted if the source is still at `index.generation`
        (else StaleIndex, nothing written: `still_listed` is of the listing that index
        reflects). The generation moves on only when jobs were deleted."""
        source = index.source
        outcome, start_ms, job_id = after or (0, -math.inf, "")
        generation = index.generation
        with self._write(f"pruning source {source!r}") as db:
            self._check_generation(db, index)
            found: list[str] = []
            while outcome < len(Outcome.ALL) and len(found) < limit:
                wanted = limit - len(found)
                cutoff = prune.before_ms
                params = (Outcome.ALL[outcome], cutoff, start_ms, source, job_id, source)
                rows = db.execute(self._prunable, (*params, cutoff, wanted)).fetchall()
                found.extend(row[1] for row in rows)
                if len(rows) < wanted:  # this outcome is done: the next one from its start
                    outcome, start_ms, job_id = outcome + 1, -math.inf, ""
                else:
                    start_ms, job_id = rows[-1]
            doomed = [one for one in found if one not in prune.still_listed]
            if doomed:
                deleted = self._dialect.delete_jobs(db, source, doomed)
                self._dialect.add_tracked(db, source, -deleted)
                generation += 1
                db.execute(self._set_generation, (source, generation))
        going_on = (outcome, start_ms, job_id) if outcome < len(Outcome.ALL) else None
        return Pruned(generation, doomed, going_on)

    def add_counts(self, source: str, deltas: CountDeltas) -> None:
        if deltas:
            with self._write(f"adding counts for {source!r}") as db:
                self._dialect.add_counts(db, count_rows(source, deltas))

    def claim_source(self, source: str, owner: str, now_ms: float, until_ms: float) -> bool:
        with self._write(f"claiming source {source!r}") as db:
            return db.execute(self._claim, (source, owner, until_ms, now_ms)).rowcount == 1

    def release_sources(self, owner: str, sources: Collection[str]) -> None:
        if sources:
            with self._write("releasing sources") as db:
                self._dialect.execute_many(db, self._release, [(owner, s) for s in sources])

    def snapshot(self) -> Snapshot:
        with self._snapshot_lock, self._guarded("reading counts", False, nullcontext):
            self._cached = self._dialect.snapshot(self._cached)
            return self._cached

    def tracked_page(self, query: TrackedQuery) -> list[JobRow]:
        """Up to `query.limit` jobs in (start_ms, source, id) order after `query.after`."""
        sql, params = self.tracked_sql(query)
        with self._read("listing tracked jobs") as db:
            return [JobRow(*row) for row in db.execute(sql, params)]

    def tracked_sql(self, query: TrackedQuery) -> tuple[str, list[Any]]:
        """The statement and parameters of `tracked_page` (the tests EXPLAIN it: schema
        step 8's indexes give its orders without a sort)."""
        p = self._dialect.placeholder
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("source", query.source), ("type", query.type), ("name", query.name)):
            if value is not None:
                where.append(f"{column} = {p}")
                params.append(value)
        if query.status == "pending":
            where.append("outcome IS NULL AND waiting <> 0")
        elif query.status == "running":
            where.append("outcome IS NULL AND waiting = 0")
        elif query.status is not None:
            where.append(f"outcome = {p}")
            params.append(query.status)
        if query.text:
            pattern = "%" + _like_escaped(query.text.lower()) + "%"
            where.append(f"(LOWER(id) LIKE {p} ESCAPE '\\' OR LOWER(name) LIKE {p} ESCAPE '\\')")
            params += [pattern, pattern]
        direction, compare = ("DESC", "<") if query.newest_first else ("ASC", ">")
        # A search matches few jobs and no index finds them: reading the table once and
        # sorting the matches beats walking jobs_started and looking up every row's name
        # (SQLite does that otherwise; `+ 0` keeps the index out, and changes no value).
        start = "start_ms + 0" if query.text else "start_ms"
        if query.after is not None:
            where.append(f"({start}, source, id) {compare} ({p}, {p}, {p})")
            params += list(query.after)
        sql = self._tracked + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {start} {direction}, source {direction}, id {direction} LIMIT {p}"
        params.append(query.limit)
        return sql, params

    def tracked_jobs(self, source: str | None = None) -> list[JobRow]:
        sql, params = (self._tracked, ()) if source is None else (self._tracked_of, (source,))
        with self._read("listing tracked jobs") as db:
            return [JobRow(*row) for row in db.execute(sql, params)]

    # --- the job queue: each method one transaction --------------------------------------

    def queue_insert(
        self,
        change: QueueChange,
        fire: ScheduleFire | None = None,
        key: CreateKey | None = None,
    ) -> QueueJob:
        """With a fire, its key goes in first: a second replica's insert of the same key
        waits for the first transaction, then finds the key and writes nothing. An
        Idempotency-Key goes in first the same way; one that holds already answers the job
        it made, writing nothing."""
        job = change.job
        with self._write("creating a job") as db:
            if key is not None:
                made = self._claim_key(db, key, job.id, job.created_ms)
                if made is not None:
                    return made
            if fire is not None:
                schedule_rows.claim_fire(db.execute, self._schedules, fire, job.id, job.created_ms)
            created = self._queue.insert(db, job)
            self._dialect.add_tracked(db, API_SOURCE, 1)
            self._dialect.add_counts(db, count_rows(API_SOURCE, change.counts))
            if fire is not None:
                lock = self._dialect.for_update
                schedule_rows.record_fire(db.execute, self._schedules, fire, lock)
        return created

    def _claim_key(self, db: C, key: CreateKey, job_id: str, now_ms: float) -> QueueJob | None:
        """None when the key is this create's now; the job it made when it holds already
        (KeyReused when that was another request)."""
        p = self._dialect.placeholder
        claimed = db.execute(
            f"INSERT INTO idempotency_keys VALUES ({p}, {p}, {p}, {p})"
            " ON CONFLICT (key) DO NOTHING",
            (key.key, key.request_digest, job_id, now_ms),
        ).rowcount
        if claimed == 1:
            return None
        digest, made_id, created_ms = db.execute(
            "SELECT request_digest, job_id, created_ms FROM idempotency_keys"
            f" WHERE key = {p}{self._dialect.for_update}",
            (key.key,),
        ).fetchone()
        expired = created_ms < key.expired_before_ms
        made = None if expired else self._queue.get(db, made_id)
        if made is None and not expired:  # its job was deleted (or pruned) meanwhile
            raise KeyOrphaned(key.key)
        if made is None:  # expired: the key starts afresh
            db.execute(
                "UPDATE idempotency_keys SET request_digest = "
                f"{p}, job_id = {p}, created_ms = {p} WHERE key = {p}",
                (key.request_digest, job_id, now_ms, key.key),
            )
            return None
        if digest != key.request_digest:
            raise KeyReused(key.key)
        return made

    def queue_pending(self) -> int:
        p = self._dialect.placeholder
        with self._read("counting pending jobs") as db:
            (total,) = db.execute(
                f"SELECT COALESCE(SUM(value), 0) FROM counts WHERE source = {p} AND family = {p}",
                (API_SOURCE, CountKind.PENDING),
            ).fetchone()
        return int(total)

    def queue_get(self, job_id: str) -> QueueJob | None:
        with self._read("reading a job") as db:
            return self._queue.get(db, job_id)

    def queue_list(self, query: QueueQuery) -> list[QueueJob]:
        with self._read("listing jobs") as db:
            return self._queue.page(db, query)

    def queue_series(self) -> set[tuple[str, str]]:
        with self._read("reading job labels") as db:
            return self._queue.series(db, API_SOURCE)

    def queue_update(self, job_id: str, transition: Transition) -> QueueJob | None:
        with self._write(f"updating job {job_id}") as db:
            job = self._queue.get(db, job_id, lock=True)
            return None if job is None else self._change(db, transition(job))

    def queue_lease(
        self, types: list[str] | None, now_ms: float, transition: Transition
    ) -> QueueJob | None:
        """Pick and mark in one write transaction: where rows lock, concurrent leases each
        skip to a different job; SQLite's writer excludes every other one meanwhile."""
        with self._write("leasing a job") as db:
            job = self._queue.next_due(db, types, now_ms)
            return None if job is None else self._change(db, transition(job))

    def queue_expire(self, now_ms: float, transition: Transition, limit: int) -> list[QueueJob]:
        with self._write("expiring leases") as db:
            return [
                self._change(db, transition(job)) for job in self._queue.expired(db, now_ms, limit)
            ]

    def queue_batch(self, batch: QueueBatch, transition: Transition) -> list[QueueJob]:
        with self._write("changing jobs in bulk") as db:
            return [self._change(db, transition(job)) for job in self._queue.batch(db, batch)]

    def queue_delete(self, job_id: str, check: Transition) -> QueueJob | None:
        with self._write(f"deleting job {job_id}") as db:
            job = self._queue.get(db, job_id, lock=True)
            if job is None:
                return None
            check(job)
            self._queue.delete(db, job)
            self._dialect.add_tracked(db, API_SOURCE, -1)
            return job

    def queue_prune(self, finished_before_ms: float, keys_before_ms: float | None = None) -> int:
        p = self._dialect.placeholder
        fires = partial(self._delete_batch, self._schedules.prune_fires, finished_before_ms)
        self._in_batches("pruning schedule fires", fires)
        if keys_before_ms is not None:
            delete_keys = (
                "DELETE FROM idempotency_keys WHERE key IN"
                f" (SELECT key FROM idempotency_keys WHERE created_ms < {p} LIMIT {p})"
            )
            keys = partial(self._delete_batch, delete_keys, keys_before_ms)
            self._in_batches("pruning Idempotency-Keys", keys)
        jobs = partial(self._prune_jobs, finished_before_ms)
        return self._in_batches("pruning finished jobs", jobs)

    def _in_batches(self, what: str, batch: Callable[[C, int], int]) -> int:
        """Run `batch` (which deletes at most the limit it is given) in one short write
        transaction after another until one deletes fewer: a week of rows never holds the
        store's writer for longer than one batch. Returns how many rows went."""
        deleted = 0
        while True:
            with self._write(what) as db:
                went = batch(db, PRUNE_BATCH)
            deleted += went
            if went < PRUNE_BATCH:
                return deleted

    def _delete_batch(self, sql: str, cutoff: float, db: C, limit: int) -> int:
        return int(db.execute(sql, (cutoff, limit)).rowcount)

    def _prune_jobs(self, finished_before_ms: float, db: C, limit: int) -> int:
        pruned = self._queue.prune(db, finished_before_ms, limit)
        self._dialect.add_tracked(db, API_SOURCE, -pruned)
        return pruned

    def _change(self, db: C, change: QueueChange) -> QueueJob:
        """Write a job's new state, its counts and, if the change names one, its schedule's
        success."""
        job = change.job
        self._queue.update(db, job)
        self._dialect.add_counts(db, count_rows(API_SOURCE, change.counts))
        success_ms = change.schedule_success_ms
        if success_ms is not None:
            db.execute(self._schedules.succeeded, (success_ms, job.id, success_ms))
        return job

    # --- schedules: each method one transaction ------------------------------------------

    def schedule_insert(self, schedule: Schedule, limit: int) -> bool:
        with self._write("creating a schedule") as db:
            self._dialect.lock(db, SCHEDULES_LOCK)
            (count,) = db.execute("SELECT COUNT(*) FROM schedules").fetchone()
            if count >= limit:
                return False
            db.execute(self._schedules.insert, schedule_rows.insert_values(schedule))
            return True

    def schedule_get(self, schedule_id: str) -> Schedule | None:
        with self._read("reading a schedule") as db:
            return schedule_rows.fetch(db.execute, self._schedules, schedule_id)

    def schedule_list(self, due_before_ms: float | None = None) -> list[Schedule]:
        statements = self._schedules
        sql, params = (
            (statements.all, ()) if due_before_ms is None else (statements.due, (due_before_ms,))
        )
        with self._read("listing schedules") as db:
            return [schedule_rows.row_to_schedule(row) for row in db.execute(sql, params)]

    def schedule_update(self, schedule_id: str, transition: ScheduleTransition) -> Schedule | None:
        lock = self._dialect.for_update
        with self._write(f"updating schedule {schedule_id}") as db:
            return schedule_rows.transition(
                db.execute, self._schedules, schedule_id, transition, lock
            )

    def schedule_delete(self, schedule_id: str) -> bool:
        with self._write(f"deleting schedule {schedule_id}") as db:
            db.execute(self._schedules.delete_fires, (schedule_id,))
            return db.execute(self._schedules.delete, (schedule_id,)).rowcount == 1

    def probe(self) -> None:
        """A write transaction that writes nothing: ends a fault that writes met, once
        writes work again, without waiting for a client's write to find out."""
        with self._write("a probe"):
            pass

    def ping(self) -> None:
        with self._read("a ping") as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._dialect.close()


def _like_escaped(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
