"""The tables, written once for both databases: each dialect fills in its column types.

Schema steps 1 to 3 are the same in SQLite and PostgreSQL but for types; step 4 differs in
how (SQLite rebuilds the table), so each dialect writes its own from the pieces here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ColumnTypes:
    """What one database calls the column types the schema needs."""

    real: str  # a float: REAL, DOUBLE PRECISION
    blob: str  # raw bytes: BLOB, BYTEA
    generation: str  # a source's write counter: INTEGER, BIGINT
    seq: str  # a key the database numbers, in insertion order
    keyed: str  # what follows a table keyed by its primary key alone (SQLite: WITHOUT ROWID)


# The jobs table's columns up to schema step 4: what a short row (a plain start or finish)
# sets; the columns added since take their defaults.
HEAD_COLUMNS = (
    "source, id, type, name, label_type, label_name, start_ms, finish_ms, finished_at_ms,"
    " outcome, missing"
)
# Every column of the jobs table, in JobRow's order.
JOB_COLUMNS = f"{HEAD_COLUMNS}, attempt, waiting, enqueue_ms, error, reported_ms"
# The conflict clause of an additive count upsert (PostgreSQL needs the table named).
ADD_TO_COUNT = (
    " ON CONFLICT (source, type, name, family, label)"
    " DO UPDATE SET value = counts.value + excluded.value"
)
JOBS_RUNNING_INDEX = """
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE outcome IS NULL"""
# From schema step 5 on, the running jobs' index leaves out the open jobs waiting for a run.
RUNNING = "outcome IS NULL AND waiting = 0"


def jobs_table(name: str, types: ColumnTypes, *, last_seen: bool = False) -> str:
    """The jobs table; up to schema step 3 it had a `last_seen_ms` column, never read."""
    last_seen_ms = f"last_seen_ms {types.real} NOT NULL,\n        " if last_seen else ""
    return f"""
    CREATE TABLE {name} (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        label_type TEXT NOT NULL,
        label_name TEXT NOT NULL,
        start_ms {types.real} NOT NULL,
        finish_ms {types.real},
        finished_at_ms {types.real},
        outcome TEXT,
        missing INTEGER NOT NULL DEFAULT 0,
        {last_seen_ms}PRIMARY KEY (source, id)
    ){types.keyed}"""


_COUNTS_AND_SOURCES = """
    CREATE INDEX jobs_finished_at ON jobs (source, finished_at_ms) WHERE outcome IS NOT NULL;
    CREATE TABLE counts (
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        family TEXT NOT NULL,
        label TEXT NOT NULL,
        value {real} NOT NULL,
        PRIMARY KEY (source, type, name, family, label)
    ){keyed};
    CREATE TABLE sources (
        source TEXT PRIMARY KEY,
        generation {generation} NOT NULL
    ){keyed};
"""

# Schema step 2: the job API's jobs.
_QUEUE = """
CREATE TABLE queue_jobs (
    seq {seq},
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    label_type TEXT NOT NULL,
    label_name TEXT NOT NULL,
    status TEXT NOT NULL,
    payload {blob},
    result {blob},
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    worker TEXT,
    created_ms {real} NOT NULL,
    started_ms {real},
    finished_ms {real},
    next_attempt_ms {real},
    lease_expires_ms {real}
);
CREATE INDEX queue_jobs_due ON queue_jobs (next_attempt_ms, seq) WHERE status = 'pending';
CREATE INDEX queue_jobs_leases ON queue_jobs (lease_expires_ms) WHERE status = 'running';
CREATE INDEX queue_jobs_status ON queue_jobs (status, seq);
CREATE INDEX queue_jobs_finished ON queue_jobs (finished_ms)
    WHERE status IN ('completed', 'failed');
"""

# Schema step 3: schedules, and one row per fire that created a job.
_SCHEDULES = """
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    payload {blob},
    max_attempts INTEGER,
    cron TEXT,
    interval_s {real},
    timezone TEXT NOT NULL,
    misfire TEXT NOT NULL,
    paused INTEGER NOT NULL,
    created_ms {real} NOT NULL,
    next_fire_ms {real} NOT NULL,
    last_fire_ms {real},
    last_success_ms {real},
    unanswered_ms {real},
    last_job_id TEXT,
    fires_on_time BIGINT NOT NULL DEFAULT 0,
    fires_late BIGINT NOT NULL DEFAULT 0,
    fires_skipped BIGINT NOT NULL DEFAULT 0,
    fires_manual BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX schedules_due ON schedules (next_fire_ms) WHERE paused = 0;
CREATE TABLE schedule_fires (
    schedule_id TEXT NOT NULL,
    fire_key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fired_ms {real} NOT NULL,
    PRIMARY KEY (schedule_id, fire_key)
);
CREATE INDEX schedule_fires_job ON schedule_fires (job_id);
CREATE INDEX schedule_fires_fired ON schedule_fires (fired_ms);
"""


def first_steps(types: ColumnTypes) -> tuple[str, str, str]:
    """Schema steps 1 to 3 (what release 0.1.0 created), each one script."""
    values = asdict(types)
    jobs = jobs_table("jobs", types, last_seen=True)
    tracked = f"{jobs};{JOBS_RUNNING_INDEX};{_COUNTS_AND_SOURCES.format(**values)}"
    return tracked, _QUEUE.format(**values), _SCHEDULES.format(**values)


def idempotency_step(types: ColumnTypes) -> str:
    """Schema step 6: the Idempotency-Keys of job creates, each with the job it made, so
    that a create resent after a lost answer makes no second job (docs/contract.md §4)."""
    return f"""
    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        request_digest TEXT NOT NULL,
        job_id TEXT NOT NULL,
        created_ms {types.real} NOT NULL
    ){types.keyed};
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms)
    """


def owners_step(types: ColumnTypes) -> str:
    """Schema step 7: which replica scrapes each scraped source, until when (a lease it
    renews on every scrape), so that replicas on one database scrape each source once and
    one takes over a source whose owner died (docs/contract.md §7)."""
    return f"""
    CREATE TABLE source_owners (
        source TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_ms {types.real} NOT NULL
    ){types.keyed}
    """


def runs_step(types: ColumnTypes) -> str:
    """Schema step 5: scraped and pushed jobs count per run (docs/contract.md §2), wait
    for runs, say why they failed, and show when a push last reported them."""
    return f"""
    ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN enqueue_ms {types.real};
    ALTER TABLE jobs ADD COLUMN error TEXT;
    ALTER TABLE jobs ADD COLUMN reported_ms {types.real};
    DROP INDEX jobs_running;
    CREATE INDEX jobs_running ON jobs (source, label_type, label_name, start_ms)
        WHERE {RUNNING}
    """


# Schema step 8's indexes, by name: what GET /api/v1/tracked reads a page through.
TRACKED_INDEXES = ("jobs_started", "jobs_status")


def tracked_step() -> str:
    """Schema step 8: the orders GET /api/v1/tracked pages through (docs/contract.md §4),
    so a page of 100,000 jobs reads its rows from an index instead of sorting them all.
    `jobs_started` serves the unfiltered list, newest or oldest first; `jobs_status` the
    list of one status (`outcome` is NULL for running and pending jobs, which the
    `waiting` test then tells apart while walking the index). Two indexes and no more:
    every insert and finish writes them (issue 23 keeps writes flat); filters by source,
    type or name and the `q` search walk one of them and test each row."""
    return """
    CREATE INDEX jobs_started ON jobs (start_ms, source, id);
    CREATE INDEX jobs_status ON jobs (outcome, start_ms, source, id)
    """


def cancelled_step() -> str:
    """Schema step 9: the finished jobs' index, which the prune of old jobs reads, holds
    cancelled jobs too (docs/contract.md §4), so pruning them scans no pending ones."""
    return """
    DROP INDEX queue_jobs_finished;
    CREATE INDEX queue_jobs_finished ON queue_jobs (finished_ms)
        WHERE status IN ('completed', 'failed', 'cancelled')
    """


# The kept count of tracked jobs per source (the job API's under its source, "api"): added to
# in the transaction of every insert and delete of a job row, so a snapshot reads it instead
# of counting every retained job (issue 23).
ADD_TO_TRACKED = " ON CONFLICT (source) DO UPDATE SET jobs = tracked_counts.jobs + excluded.jobs"


def tracked_counts_step(types: ColumnTypes, api_source: str) -> str:
    """Schema step 10: the kept tracked-jobs counts, filled
    once from COUNT(*) of the jobs a store has already."""
    return f"""
    CREATE TABLE tracked_counts (
        source TEXT PRIMARY KEY,
        jobs {types.generation} NOT NULL
    ){types.keyed};
    INSERT INTO tracked_counts SELECT source, COUNT(*) FROM jobs GROUP BY source;
    INSERT INTO tracked_counts SELECT '{api_source}', COUNT(*) FROM queue_jobs
    """
