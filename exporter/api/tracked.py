"""`GET /api/v1/tracked` (docs/contract.md §4): the jobs of scraped and pushed sources, as
their latest runs left them, a page at a time, for people and tests asking "which job is
stuck, and why did that one fail?"."""

from __future__ import annotations

import base64
import binascii

import msgspec
from flask import Blueprint, Response, request

from exporter.api import schemas
from exporter.api.errors import ApiError
from exporter.api.responses import json_response
from exporter.model.counts import Outcome
from exporter.model.tracked import (
    DEFAULT_TRACKED_PAGE,
    MAX_TRACKED_PAGE,
    PENDING,
    RETRY,
    TRACKED_STATUSES,
    JobRow,
    TrackedQuery,
)
from exporter.runtime.process import current_runtime

blueprint = Blueprint("tracked", __name__, url_prefix="/api/v1")
MAX_TEXT = 200  # the longest `q`: ids and names are at most 200 characters
_cursor_decoder = msgspec.json.Decoder(tuple[float, str, str])


@blueprint.get("/tracked")
def tracked() -> Response:
    query = _query()
    rows = current_runtime().store.tracked_page(query)
    more = len(rows) > query.limit - 1
    rows = rows[: query.limit - 1]
    last = rows[-1] if rows else None
    cursor = _cursor(last) if more and last is not None else None
    return json_response(schemas.TrackedPage([run_of(row) for row in rows], cursor))


def run_of(row: JobRow) -> schemas.TrackedRun:
    """A stored row as the API shows it: what is not known is null."""
    outcome = row.outcome
    waiting = row.waiting if outcome is None else 0
    status = outcome if outcome is not None else ("pending" if waiting else "running")
    started = None if waiting == PENDING else row.start_ms
    finished: float | None = None
    if outcome is not None or waiting == RETRY:
        finished = row.finish_ms if row.finish_ms is not None else row.finished_at_ms
    duration = None
    if row.finish_ms is not None and started is not None and outcome != Outcome.LOST:
        duration = max(0.0, (row.finish_ms - started) / 1000)
    return schemas.TrackedRun(
        source=row.source,
        id=row.id,
        type=row.type,
        name=row.name,
        status=status,  # type: ignore[arg-type]
        attempt=row.attempt,
        enqueued_at=row.enqueue_ms,
        started_at=started,
        finished_at=finished,
        duration_seconds=duration,
        error=row.error,
    )


def _query() -> TrackedQuery:
    args = request.args
    status = args.get("status")
    if status is not None and status not in TRACKED_STATUSES:
        message = f"one of {', '.join(TRACKED_STATUSES)}"
        raise ApiError(400, "unknown status", [_field("status", message)])
    order = args.get("order", "newest")
    if order not in ("newest", "oldest"):
        raise ApiError(400, "invalid order", [_field("order", "newest or oldest")])
    text = args.get("q") or None
    if text is not None and len(text) > MAX_TEXT:
        raise ApiError(400, "q is too long", [_field("q", f"at most {MAX_TEXT} characters")])
    limit_text = args.get("limit", str(DEFAULT_TRACKED_PAGE))
    if not (limit_text.isascii() and limit_text.isdigit()) or not (
        1 <= int(limit_text) <= MAX_TRACKED_PAGE
    ):
        message = f"an integer from 1 to {MAX_TRACKED_PAGE}"
        raise ApiError(400, "invalid limit", [_field("limit", message)])
    return TrackedQuery(
        source=args.get("source") or None,
        type=args.get("type") or None,
        name=args.get("name") or None,
        status=status,
        text=text,
        newest_first=order == "newest",
        limit=int(limit_text) + 1,  # one more than shown says whether a next page exists
        after=_after(args.get("cursor")),
    )


def _cursor(row: JobRow) -> str:
    key = msgspec.json.encode((row.start_ms, row.source, row.id))
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[float, str, str] | None:
    if not cursor:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _cursor_decoder.decode(key)
    except (binascii.Error, ValueError, msgspec.DecodeError) as error:
        message = "the `next` of an earlier page"
        raise ApiError(400, "invalid cursor", [_field("cursor", message)]) from error


def _field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
