"""The job API (docs/contract.md §4): create, list, inspect, lease, heartbeat, complete,
fail, retry, cancel, delete, and the bulk retry and cancel. Thin: parse and check the
request, call the queue, encode its answer."""

from __future__ import annotations

import hashlib
import re

import msgspec
from flask import Blueprint, Response, request

from exporter.api import schemas
from exporter.api.bodies import raw_json_body, read_json
from exporter.api.errors import ApiError, error_response
from exporter.api.responses import job_out, json_response
from exporter.jobs.queue import JobConflict, QueueFull, UnknownJob
from exporter.model.queue import DEFAULT_PAGE, JobStatus, KeyOrphaned, KeyReused, QueueQuery
from exporter.runtime.process import current_runtime

blueprint = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
MAX_PAGE = 1000
ORDERS = ("newest", "oldest")
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 200
MAX_INT64 = 2**63 - 1  # the largest integer either store binds
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only, and short enough to convert cheaply


@blueprint.errorhandler(UnknownJob)
def unknown_job(error: UnknownJob):
    return error_response(404, f"no job has id {error.args[0]!r}", [_field("id", "unknown job")])


@blueprint.errorhandler(JobConflict)
def conflict(error: JobConflict):
    return error_response(409, str(error), [_field(error.field, str(error))])


@blueprint.errorhandler(KeyReused)
def key_reused(error: KeyReused):
    message = "this Idempotency-Key came with another request within the last 24 h"
    return error_response(409, message, [_field(IDEMPOTENCY_KEY, "used for another request")])


@blueprint.errorhandler(KeyOrphaned)
def key_orphaned(error: KeyOrphaned):
    """A resend of a create whose job was deleted since: 409 naming the header, never a
    second job made silently (the key holds its 24 h even so)."""
    message = "the job this Idempotency-Key created was deleted; send a new key for a new job"
    return error_response(409, message, [_field(IDEMPOTENCY_KEY, "its job was deleted")])


@blueprint.errorhandler(QueueFull)
def queue_full(error: QueueFull):
    response = error_response(429, str(error), [_field("body", "too many pending jobs")])
    response.headers["Retry-After"] = "1"
    return response


@blueprint.post("")
def create() -> Response:
    """201 with a new job; 200 with the job an Idempotency-Key made before, when it is
    resent (a create whose answer was lost makes no second job)."""
    body = read_json(schemas.CreateJob)
    payload = capped_json(body.payload, "payload")
    key = _idempotency_key(body)
    job, new = current_runtime().queue.create_once(
        body.type, body.name, payload, body.max_attempts, key=key
    )
    response = json_response(job_out(job), 201 if new else 200)
    response.headers["Location"] = f"{blueprint.url_prefix}/{job.id}"
    return response


def _idempotency_key(body: schemas.CreateJob) -> tuple[str, str] | None:
    """The header's key and a digest of the request it came with (its canonical JSON, so
    spacing and key order do not make a resend look like another request)."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            f"{IDEMPOTENCY_KEY} must be 1 to {MAX_KEY_LENGTH} printable characters",
            [_field(IDEMPOTENCY_KEY, "invalid")],
        )
    canonical = msgspec.json.encode(msgspec.to_builtins(body), order="sorted")
    return key, hashlib.sha256(canonical).hexdigest()


@blueprint.get("")
def list_jobs() -> Response:
    args = request.args
    status = args.get("status")
    if status is not None and status not in JobStatus.ALL:
        message = f"one of {', '.join(JobStatus.ALL)}"
        raise ApiError(400, "unknown status", [_field("status", message)])
    order = args.get("order", "newest")
    if order not in ORDERS:
        raise ApiError(400, "unknown order", [_field("order", "one of newest, oldest")])
    query = QueueQuery(
        newest=order == "newest",
        status=status,
        type=args.get("type"),
        name=args.get("name"),
        after_seq=_int_arg("cursor", 0, 0),
        limit=_int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE),
    )
    jobs, next_seq = current_runtime().queue.list(query)
    cursor = None if next_seq is None else str(next_seq)
    return json_response(schemas.JobPage([job_out(job) for job in jobs], cursor))


@blueprint.get("/<job_id>")
def get(job_id: str) -> Response:
    return json_response(job_out(current_runtime().queue.get(job_id)))


@blueprint.delete("/<job_id>")
def delete(job_id: str) -> Response:
    """204 once a completed, failed or cancelled job is gone; its counts stay."""
    current_runtime().queue.delete(job_id)
    return Response(status=204)


@blueprint.post("/retry")
def retry_all() -> Response:
    """Every matching failed job back to pending (429 when the pending cap leaves room
    for none of them)."""
    body = _bulk_filter()
    return json_response(schemas.Retried(current_runtime().queue.retry_all(body.type, body.name)))


@blueprint.post("/cancel")
def cancel_all() -> Response:
    body = _bulk_filter()
    cancelled = current_runtime().queue.cancel_all(body.type, body.name)
    return json_response(schemas.Cancelled(cancelled))


def _bulk_filter() -> schemas.BulkFilter:
    """The bulk routes' filter: an absent or empty body takes every job."""
    if raw_json_body(required=False) is None:
        return schemas.BulkFilter()
    return read_json(schemas.BulkFilter)


@blueprint.post("/lease")
def lease() -> Response:
    body = read_json(schemas.LeaseRequest)
    job = current_runtime().queue.lease(body.worker, body.types, body.lease_seconds)
    if job is None:
        return Response(status=204)
    return json_response(job_out(job))


@blueprint.post("/<job_id>/heartbeat")
def heartbeat(job_id: str) -> Response:
    body = read_json(schemas.HeartbeatRequest)
    job = current_runtime().queue.heartbeat(job_id, body.worker, body.lease_seconds)
    return json_response(job_out(job))


@blueprint.post("/<job_id>/complete")
def complete(job_id: str) -> Response:
    body = read_json(schemas.CompleteRequest)
    result = capped_json(body.result, "result")
    return json_response(job_out(current_runtime().queue.complete(job_id, body.worker, result)))


@blueprint.post("/<job_id>/fail")
def fail(job_id: str) -> Response:
    body = read_json(schemas.FailRequest)
    job = current_runtime().queue.fail(job_id, body.worker, body.error, body.retryable)
    return json_response(job_out(job))


@blueprint.post("/<job_id>/retry")
def retry(job_id: str) -> Response:
    raw_json_body(required=False)  # no body needed; a body sent must still be JSON
    return json_response(job_out(current_runtime().queue.retry(job_id)))


@blueprint.post("/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    raw_json_body(required=False)  # no body needed; a body sent must still be JSON
    return json_response(job_out(current_runtime().queue.cancel(job_id)))


def capped_json(value: object, field: str) -> bytes | None:
    """A payload or result as stored JSON text, refused (413) beyond the configured cap."""
    if value is None:
        return None
    encoded = msgspec.json.encode(value)
    cap = current_runtime().settings.max_payload_bytes
    if len(encoded) > cap:
        raise ApiError(413, f"{field} is larger than {cap} bytes", [_field(field, "too large")])
    return encoded


def _int_arg(name: str, default: int, low: int, high: int = MAX_INT64) -> int:
    """An integer query argument in ASCII digits within bounds: `str.isdigit()` also takes
    "²", which `int()` refuses, and the stores bind at most a signed 64-bit integer."""
    text = request.args.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise ApiError(400, f"invalid {name}", [_field(name, f"an integer from {low} to {high}")])
    return int(text)


def _field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
