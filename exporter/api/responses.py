"""Encoding answers: schema Structs to JSON responses, and stored jobs to their schema."""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Response

from exporter.api import schemas
from exporter.queue_records import QueueJob

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


def _raw(value: bytes | None) -> Any:
    """Stored JSON text is embedded as is, never decoded and encoded again."""
    return None if value is None else msgspec.Raw(value)


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)
