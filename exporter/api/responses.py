"""Encoding answers: schema Structs to JSON responses, and stored jobs to their schema."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from flask import Response

from exporter.api import schemas
from exporter.model.queue import QueueJob
from exporter.model.schedules import Schedule

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, content_type="application/json")


def job_out(job: QueueJob) -> schemas.Job:
    return schemas.Job(
        id=job.id,
        type=job.type,
        name=job.name,
        status=job.status,  # type: ignore[arg-type]
        payload=_raw(job.payload),
        result=_raw(job.result),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        last_error=job.last_error,
        worker=job.worker,
        created_at=round(job.created_ms),
        started_at=_ms(job.started_ms),
        finished_at=_ms(job.finished_ms),
        next_attempt_at=_ms(job.next_attempt_ms),
        lease_expires_at=_ms(job.lease_expires_ms),
    )


def schedule_out(schedule: Schedule) -> schemas.Schedule:
    on_time, late, skipped, manual = schedule.fires
    return schemas.Schedule(
        id=schedule.id,
        type=schedule.type,
        name=schedule.name,
        payload=_raw(schedule.payload),
        cron=schedule.cron,
        interval_seconds=schedule.interval_s,
        timezone=schedule.timezone,
        misfire=schedule.misfire,  # type: ignore[arg-type]
        max_attempts=schedule.max_attempts,
        state="paused" if schedule.paused else "active",
        created_at=round(schedule.created_ms),
        next_fire_at=None if schedule.paused else _ms(schedule.next_fire_ms),
        last_fire_at=_ms(schedule.last_fire_ms),
        last_success_at=_ms(schedule.last_success_ms),
        last_job_id=schedule.last_job_id,
        fires=schemas.ScheduleFires(on_time, late, skipped, manual),
    )


def _raw(value: bytes | None) -> Any:
    """Stored JSON text is embedded as is, never decoded and encoded again."""
    return None if value is None else msgspec.Raw(value)


def _ms(value: float | None) -> int | None:
    """Milliseconds as an integer; None for unset, and for never (an expression with no
    fire left is due at infinity)."""
    return None if value is None or math.isinf(value) else round(value)
