"""Schedules' tables and SQL, shared by the SQLite and PostgreSQL stores.

The statements are the same in both dialects but for the placeholder (`?` or `%s`) and a
few column types, so each is written once here with `{p}` for the placeholder. Every
function takes a connection (or cursor-like object) already inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

from exporter.model.schedules import FireTaken, Schedule, ScheduleFire, UnknownSchedule

_SCHEMA = """
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
# Schema version 3 of each store: schedules, and one row per fire that created a job.
SQLITE_SCHEMA = _SCHEMA.format(blob="BLOB", real="REAL")
POSTGRES_SCHEMA = _SCHEMA.format(blob="BYTEA", real="DOUBLE PRECISION")

NAMES = tuple(f.name for f in fields(Schedule))
COLUMNS = ", ".join(NAMES)
UPDATED = tuple(name for name in NAMES if name not in ("id", "type", "name", "created_ms"))


class Dialect:
    """The statements with one store's placeholder filled in."""

    def __init__(self, p: str) -> None:
        self.select = f"SELECT {COLUMNS} FROM schedules"
        self.insert = f"INSERT INTO schedules ({COLUMNS}) VALUES ({', '.join([p] * len(NAMES))})"
        self.update = (
            f"UPDATE schedules SET {', '.join(f'{name} = {p}' for name in UPDATED)} WHERE id = {p}"
        )
        self.get = f"{self.select} WHERE id = {p}"
        self.due = f"{self.select} WHERE paused = 0 AND next_fire_ms <= {p} ORDER BY next_fire_ms"
        self.all = f"{self.select} ORDER BY created_ms, id"
        self.claim = (
            "INSERT INTO schedule_fires (schedule_id, fire_key, job_id, fired_ms)"
            f" VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (schedule_id, fire_key) DO NOTHING"
        )
        self.succeeded = (
            f"UPDATE schedules SET last_success_ms = {p}, unanswered_ms = NULL WHERE id IN"
            f" (SELECT schedule_id FROM schedule_fires WHERE job_id = {p})"
            f" AND (last_success_ms IS NULL OR last_success_ms < {p})"
        )
        self.delete_fires = f"DELETE FROM schedule_fires WHERE schedule_id = {p}"
        self.delete = f"DELETE FROM schedules WHERE id = {p}"
        self.prune_fires = f"DELETE FROM schedule_fires WHERE fired_ms < {p}"


SQLITE = Dialect("?")
POSTGRES = Dialect("%s")


def row_to_schedule(row: Sequence[Any]) -> Schedule:
    values = list(row)
    if values[3] is not None:
        values[3] = bytes(values[3])
    values[9] = bool(values[9])
    return Schedule(*values)


def insert_values(schedule: Schedule) -> tuple:
    return tuple(_column(schedule, name) for name in NAMES)


def update_values(schedule: Schedule) -> tuple:
    return (*(_column(schedule, name) for name in UPDATED), schedule.id)


def _column(schedule: Schedule, name: str) -> Any:
    value = getattr(schedule, name)
    return int(value) if name == "paused" else value


Execute = Callable[..., Any]  # connection.execute of either driver


def fetch(execute: Execute, sql: Dialect, schedule_id: str, lock: str = "") -> Schedule | None:
    row = execute(sql.get + lock, (schedule_id,)).fetchone()
    return row_to_schedule(row) if row else None


def claim_fire(execute: Execute, sql: Dialect, fire: ScheduleFire, job_id: str, now_ms: float):
    """Insert the fire's key if absent; FireTaken when another transaction has it."""
    cursor = execute(sql.claim, (fire.schedule_id, fire.key, job_id, now_ms))
    if cursor.rowcount != 1:
        raise FireTaken(f"schedule {fire.schedule_id} fire {fire.key} already has its job")


def transition(execute: Execute, sql: Dialect, schedule_id: str, change, lock: str = ""):
    """Apply `change` to one schedule (read with `lock`); None when no schedule has the id."""
    schedule = fetch(execute, sql, schedule_id, lock)
    if schedule is None:
        return None
    updated = replace(change(schedule), id=schedule.id)
    execute(sql.update, update_values(updated))
    return updated


def record_fire(execute: Execute, sql: Dialect, fire: ScheduleFire, lock: str = "") -> None:
    if transition(execute, sql, fire.schedule_id, fire.transition, lock) is None:
        raise UnknownSchedule(fire.schedule_id)
