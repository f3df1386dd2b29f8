"""Schedules' SQL and row mapping, written once over the dialect's placeholder.

Every function takes a connection's `execute` already inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

from exporter.model.schedules import (
    FireTaken,
    Schedule,
    ScheduleFire,
    ScheduleTransition,
    UnknownSchedule,
)

NAMES = tuple(f.name for f in fields(Schedule))
COLUMNS = ", ".join(NAMES)
# An edit may change type and name too (PATCH /api/v1/schedules/<id>); the id and the
# creation instant (an interval's anchor) never change.
UPDATED = tuple(name for name in NAMES if name not in ("id", "created_ms"))


SELECT = f"SELECT {COLUMNS} FROM schedules"
SELECT_ALL = f"{SELECT} ORDER BY created_ms, id"  # no placeholder: the snapshot reads it too


class Statements:
    """The statements with one dialect's placeholder filled in."""

    def __init__(self, p: str) -> None:
        self.select = SELECT
        self.insert = f"INSERT INTO schedules ({COLUMNS}) VALUES ({', '.join([p] * len(NAMES))})"
        self.update = (
            f"UPDATE schedules SET {', '.join(f'{name} = {p}' for name in UPDATED)} WHERE id = {p}"
        )
        self.get = f"{self.select} WHERE id = {p}"
        self.due = f"{self.select} WHERE paused = 0 AND next_fire_ms <= {p} ORDER BY next_fire_ms"
        self.all = SELECT_ALL
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
        self.prune_fires = (
            "DELETE FROM schedule_fires WHERE (schedule_id, fire_key) IN (SELECT schedule_id,"
            f" fire_key FROM schedule_fires WHERE fired_ms < {p} LIMIT {p})"
        )


def row_to_schedule(row: Sequence[Any]) -> Schedule:
    values = list(row)
    if values[3] is not None:
        values[3] = bytes(values[3])
    values[9] = bool(values[9])
    return Schedule(*values)


def insert_values(schedule: Schedule) -> tuple[Any, ...]:
    return tuple(_column(schedule, name) for name in NAMES)


def update_values(schedule: Schedule) -> tuple[Any, ...]:
    return (*(_column(schedule, name) for name in UPDATED), schedule.id)


def _column(schedule: Schedule, name: str) -> Any:
    value = getattr(schedule, name)
    return int(value) if name == "paused" else value


Execute = Callable[..., Any]  # connection.execute of either driver


def fetch(execute: Execute, sql: Statements, schedule_id: str, lock: str = "") -> Schedule | None:
    row = execute(sql.get + lock, (schedule_id,)).fetchone()
    return row_to_schedule(row) if row else None


def claim_fire(
    execute: Execute, sql: Statements, fire: ScheduleFire, job_id: str, now_ms: float
) -> None:
    """Insert the fire's key if absent; FireTaken when another transaction has it."""
    cursor = execute(sql.claim, (fire.schedule_id, fire.key, job_id, now_ms))
    if cursor.rowcount != 1:
        raise FireTaken(f"schedule {fire.schedule_id} fire {fire.key} already has its job")


def transition(
    execute: Execute,
    sql: Statements,
    schedule_id: str,
    change: ScheduleTransition,
    lock: str = "",
) -> Schedule | None:
    """Apply `change` to one schedule (read with `lock`); None when no schedule has the id."""
    schedule = fetch(execute, sql, schedule_id, lock)
    if schedule is None:
        return None
    updated = replace(change(schedule), id=schedule.id)
    execute(sql.update, update_values(updated))
    return updated


def record_fire(execute: Execute, sql: Statements, fire: ScheduleFire, lock: str = "") -> None:
    if transition(execute, sql, fire.schedule_id, fire.transition, lock) is None:
        raise UnknownSchedule(fire.schedule_id)
