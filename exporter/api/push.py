"""`POST /api/v1/push` and `GET /api/v1/jobinfo` (docs/contract.md §4).

A push is validated whole before anything is written: one bad item rejects the batch with a
400 naming the first bad items' index and field (`errorCount` says how many there were), and
leaves no trace (not even the invalid-items counter). A good batch goes through the same
ingest path as a scrape, as a partial list. A push naming a new source once
`max_push_sources` are known is refused with 429, and counted (docs/contract.md §8).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from exporter.api import schemas
from exporter.api.bodies import BODY_FIELD, ListedErrors, raw_json_body
from exporter.api.errors import ApiError
from exporter.api.responses import json_response
from exporter.config import (
    DEFAULT_PUSH_SOURCE,
    MAX_LOST_AFTER_S,
    MIN_LOST_AFTER_S,
    ConfigError,
    check_source_name,
)
from exporter.model.counts import Outcome
from exporter.model.jobinfo import Status
from exporter.model.queue import API_SOURCE, JobStatus, QueueQuery
from exporter.model.tracked import PENDING, RETRY, RUNS, JobRow
from exporter.runtime.process import current_runtime
from exporter.tracking.decode import MAX_NESTING, InvalidDocument, decode_jobs

blueprint = Blueprint("push", __name__, url_prefix="/api/v1")
JOBINFO_PAGE = 1000


@blueprint.post("/push")
def push() -> Response:
    runtime = current_runtime()
    source = _push_source(request.args.get("source", DEFAULT_PUSH_SOURCE))
    lost_after_ms = _lost_after_ms(request.args.get("lostAfter"))
    raw = raw_json_body(max_nesting=None)  # decode_jobs checks, a cheaper way for JobInfo
    assert raw is not None
    max_nesting = MAX_NESTING
    if raw.lstrip()[:1] == b"{":
        raw = b"[" + raw + b"]"  # one JobInfoBase: a batch of one
        max_nesting += 1  # its array is ours, not the client's
    now_ms = runtime.clock.now_ms()
    try:
        decoded = decode_jobs(raw, now_ms, max_nesting=max_nesting)
    except InvalidDocument as error:
        raise ApiError(
            400,
            "the body must be a JobInfoBase object or a JSON array of them",
            [{"field": BODY_FIELD, "message": str(error)}],
        ) from error
    if decoded.errors:
        count = len(decoded.errors)
        raise ListedErrors(
            f"{count} invalid item(s); nothing of this push was applied",
            [
                {"index": error.index, "field": error.field, "message": error.message}
                for error in decoded.errors.listed
            ],
            count,
        )
    reserved = {API_SOURCE, *(one.name for one in runtime.settings.sources)}
    if not runtime.ingestor.admit_push_source(source, reserved):
        message = (
            f"source {source!r} would be push source number "
            f"{runtime.ingestor.max_push_sources + 1}; push to a known source"
        )
        raise ApiError(429, "too many push sources", [{"field": "source", "message": message}])
    runtime.ingestor.ingest(
        source, decoded.jobs, now_ms, complete_list=False, lost_after_ms=lost_after_ms
    )
    return json_response(schemas.PushAccepted(len(decoded.jobs)), 202)


@blueprint.get("/jobinfo")
def jobinfo() -> Response:
    """Every tracked job as JobInfoBase: scraped and pushed jobs, and API jobs that ran."""
    runtime = current_runtime()
    source = request.args.get("source")
    jobs = [] if source == API_SOURCE else runtime.store.tracked_jobs(source)
    tracked = [_tracked(row) for row in jobs]
    if source in (None, API_SOURCE):
        tracked.extend(_api_jobs(runtime.queue))
    return json_response(tracked)


def _lost_after_ms(text: str | None) -> float | None:
    """`lostAfter`: the seconds this push's source may leave an open job unreported (its
    reporter sends heartbeats more often than that)."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not MIN_LOST_AFTER_S <= seconds <= MAX_LOST_AFTER_S:  # NaN fails too
        message = f"seconds from {MIN_LOST_AFTER_S:g} to {MAX_LOST_AFTER_S:g}"
        raise ApiError(400, "invalid lostAfter", [{"field": "lostAfter", "message": message}])
    return seconds * 1000


def _push_source(name: str) -> str:
    """A well-formed source name that is neither `api` nor a scraped source: pushing into
    a scraped source would fight its scrapes over which jobs exist."""
    try:
        check_source_name(name)
    except ConfigError as error:
        raise ApiError(400, str(error), [{"field": "source", "message": str(error)}]) from error
    scraped = {source.name for source in current_runtime().settings.sources}
    if name == API_SOURCE or name in scraped:
        message = f"source {name!r} is not a push source (it is the job API's or a scraped one)"
        raise ApiError(400, message, [{"field": "source", "message": message}])
    return name


def _tracked(row: JobRow) -> schemas.TrackedJob:
    outcome = row.outcome
    finish = row.finish_ms if row.finish_ms is not None else row.finished_at_ms
    # JobInfoBase's status has no word for lost: a lost run says failed.
    status: Status = "completed" if outcome == Outcome.COMPLETED else "failed"
    if outcome is None:
        status = _OPEN_STATUS[row.waiting]
    return schemas.TrackedJob(
        id=row.id,
        name=row.name,
        start_timestamp=row.start_ms,
        background_job_type=row.type,
        is_finished=outcome is not None,
        finish_timestamp=finish if outcome is not None else None,
        status=status,
        source=row.source,
        outcome=outcome,  # type: ignore[arg-type]
        attempt=row.attempt,
        enqueue_timestamp=row.enqueue_ms,
        error=row.error,
    )


_OPEN_STATUS: dict[int, Status] = {RUNS: "running", PENDING: "pending", RETRY: "retrying"}


def _api_jobs(queue) -> list[schemas.TrackedJob]:
    """API jobs running or finished, in JobInfoBase shape: JobInfoBase has no word for
    waiting, so pending jobs (new, or waiting for a retry) are left out."""
    tracked: list[schemas.TrackedJob] = []
    after = 0
    while True:
        jobs, after = queue.list(QueueQuery(after_seq=after, limit=JOBINFO_PAGE))
        for job in jobs:
            if job.status == JobStatus.PENDING or job.started_ms is None:
                continue
            finished = job.status in (JobStatus.COMPLETED, JobStatus.FAILED)
            tracked.append(
                schemas.TrackedJob(
                    id=job.id,
                    name=job.name,
                    start_timestamp=job.started_ms,
                    background_job_type=job.type,
                    is_finished=finished,
                    finish_timestamp=job.finished_ms if finished else None,
                    status=job.status if finished else "running",
                    source=API_SOURCE,
                    outcome=job.status if finished else None,
                )
            )
        if after is None:
            return tracked
