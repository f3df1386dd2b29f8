"""`GET /api/openapi.json` and `GET /api/docs`: the API described from its own schemas.

Component schemas come from the msgspec Structs that validate the requests, and the paths
from the `OPERATIONS` table below; the docs page is plain HTML rendered from the same
document on the server, so it works offline (no CDN, no script).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec
from flask import Blueprint, Response

from exporter import __version__
from exporter.api import durations, schemas, stats, stats_schemas
from exporter.api.jobs import MAX_PAGE
from exporter.api.responses import json_response
from exporter.config import DEFAULT_PUSH_SOURCE, MAX_LOST_AFTER_S, MIN_LOST_AFTER_S
from exporter.model.jobinfo import JobInfo
from exporter.model.queue import JobStatus
from exporter.model.tracked import MAX_TRACKED_PAGE, TRACKED_STATUSES

blueprint = Blueprint("openapi", __name__, url_prefix="/api")
REF = "#/components/schemas/{name}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    request: str | None = None  # schema name of the JSON body
    responses: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # schema name
    parameters: tuple[dict[str, Any], ...] = ()
    write: bool = True
    body_required: bool = True


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_STR = {"type": "string"}
_JOB = ("the job", "Job")
_BAD = ("invalid body or parameter; `errors` names the field", "Error")
_MISSING = ("no job has this id", "Error")
_CONFLICT = ("the job's state or lease does not allow this", "Error")
_SCHEDULE = ("the schedule", "Schedule")
_NO_SCHEDULE = ("no schedule has this id", "Error")
_BAD_SCHEDULE = (
    "invalid body, cron expression, time zone or interval; `errors` names the field",
    "Error",
)
_WINDOW = _query(
    "window",
    "seconds back from the newest sample, up to a day (default: the last hour)",
    {"type": "number", "maximum": stats.MAX_WINDOW_S},
)
_POINTS = _query(
    "points",
    f"points at most, thinned evenly (default {stats.DEFAULT_POINTS})",
    {"type": "integer", "minimum": 2, "maximum": stats.MAX_POINTS},
)
_TYPES_LIMIT = {"type": "integer", "minimum": 1, "maximum": stats.MAX_TYPES}
_NAMES_LIMIT = {"type": "integer", "minimum": 1, "maximum": stats.MAX_NAMES}
_FAILING_LIMIT = {"type": "integer", "minimum": 1, "maximum": stats.MAX_FAILING}


def _required(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": True, "schema": _STR}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/push",
        "Push one JobInfoBase or an array, applied whole or not at all",
        request="PushBody",
        responses={"202": ("accepted", "PushAccepted"), "400": _BAD},
        parameters=(
            _query("source", f"source label (default `{DEFAULT_PUSH_SOURCE}`)", _STR),
            _query(
                "lostAfter",
                "seconds an open job of this source may go unreported before it counts lost"
                " (running) or is forgotten (waiting); the exporter's own setting for the"
                " source wins",
                {"type": "number", "minimum": MIN_LOST_AFTER_S, "maximum": MAX_LOST_AFTER_S},
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/jobinfo",
        "Every tracked job, in JobInfoBase shape",
        responses={"200": ("the jobs", "TrackedJobs")},
        parameters=(_query("source", "only this source", _STR),),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/tracked",
        "Jobs of scraped and pushed sources as their latest runs left them, a page at a time",
        responses={"200": ("a page", "TrackedPage"), "400": _BAD},
        parameters=(
            _query("source", "only this source", _STR),
            _query("type", "only jobs of this type", _STR),
            _query("name", "only jobs of this name", _STR),
            _query("status", "only jobs in this status", {"enum": list(TRACKED_STATUSES)}),
            _query("q", "part of an id or a name, any case", {"type": "string", "maxLength": 200}),
            _query(
                "order",
                "`newest` (default) or `oldest` start first",
                {"enum": ["newest", "oldest"]},
            ),
            _query(
                "limit",
                "page size (default 100)",
                {"type": "integer", "minimum": 1, "maximum": MAX_TRACKED_PAGE},
            ),
            _query("cursor", "`next` of the previous page", _STR),
        ),
        write=False,
    ),
    Operation(
        "post",
        "/api/v1/jobs",
        "Create a job, pending and due now",
        request="CreateJob",
        responses={
            "201": ("the new job", "Job"),
            "200": ("the job this Idempotency-Key made within the last 24 h", "Job"),
            "400": _BAD,
            "409": (
                "the Idempotency-Key came with another request, or the job it made was"
                " deleted (a resend never makes a second job while the key holds)",
                "Error",
            ),
            "429": ("as many jobs are pending as --max-pending-jobs allows", "Error"),
        },
        parameters=(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "description": "Resending a create with the same key within 24 h makes no "
                "second job: it answers 200 with the first one.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            },
        ),
    ),
    Operation(
        "get",
        "/api/v1/jobs",
        "List jobs, newest first (or oldest first), a page at a time",
        responses={"200": ("a page", "JobPage"), "400": _BAD},
        parameters=(
            _query(
                "order",
                "`newest` first (the default) or `oldest` first; the cursor pages on in it",
                {"enum": ["newest", "oldest"], "default": "newest"},
            ),
            _query("status", "only jobs in this status", {"enum": list(JobStatus.ALL)}),
            _query("type", "only jobs of this type", _STR),
            _query("name", "only jobs of this name", _STR),
            _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            _query("cursor", "`nextCursor` of the previous page", _STR),
        ),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/jobs/{id}",
        "One job",
        responses={"200": _JOB, "404": _MISSING},
        parameters=(_ID,),
        write=False,
    ),
    Operation(
        "delete",
        "/api/v1/jobs/{id}",
        "Delete a completed, failed or cancelled job (its counts stay)",
        responses={
            "204": ("deleted", None),
            "404": _MISSING,
            "409": ("the job is pending or running", "Error"),
        },
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/retry",
        "Retry every failed job (of a type and name, when given) now, in batches",
        request="BulkFilter",
        body_required=False,
        responses={
            "200": ("how many jobs were retried", "Retried"),
            "429": ("--max-pending-jobs leaves room for none of them", "Error"),
        },
    ),
    Operation(
        "post",
        "/api/v1/jobs/cancel",
        "Cancel every pending job (of a type and name, when given), in batches",
        request="BulkFilter",
        body_required=False,
        responses={"200": ("how many jobs were cancelled", "Cancelled")},
    ),
    Operation(
        "post",
        "/api/v1/jobs/lease",
        "Lease the oldest due job; 204 when none is due",
        request="LeaseRequest",
        responses={"200": ("the job, now running", "Job"), "204": ("none is due", None)},
    ),
    Operation(
        "post",
        "/api/v1/jobs/{id}/heartbeat",
        "Extend the worker's lease",
        request="HeartbeatRequest",
        responses={"200": _JOB, "400": _BAD, "404": _MISSING, "409": _CONFLICT},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{id}/complete",
        "Complete the worker's run",
        request="CompleteRequest",
        responses={"200": _JOB, "400": _BAD, "404": _MISSING, "409": _CONFLICT},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{id}/fail",
        "Fail the worker's run; retryable ones are retried",
        request="FailRequest",
        responses={"200": _JOB, "400": _BAD, "404": _MISSING, "409": _CONFLICT},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{id}/retry",
        "Retry a failed job now (no body needed)",
        responses={"200": _JOB, "404": _MISSING, "409": _CONFLICT},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{id}/cancel",
        "Cancel a pending job, waiting to run or for a retry (no body needed)",
        responses={"200": ("the job, now cancelled", "Job"), "404": _MISSING, "409": _CONFLICT},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/schedules",
        "Create a schedule (recurring job): cron or interval",
        request="CreateSchedule",
        responses={
            "201": ("the new schedule", "Schedule"),
            "400": _BAD_SCHEDULE,
            "409": ("--max-schedules schedules exist already", "Error"),
        },
    ),
    Operation(
        "get",
        "/api/v1/schedules",
        "Every schedule, oldest first",
        responses={"200": ("the schedules", "SchedulePage")},
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/schedules/{id}",
        "One schedule",
        responses={"200": _SCHEDULE, "404": _NO_SCHEDULE},
        parameters=(_ID,),
        write=False,
    ),
    Operation(
        "patch",
        "/api/v1/schedules/{id}",
        "Edit a schedule: only the fields given change; a new timetable fires next after now",
        request="EditSchedule",
        responses={"200": _SCHEDULE, "400": _BAD_SCHEDULE, "404": _NO_SCHEDULE},
        parameters=(_ID,),
    ),
    Operation(
        "delete",
        "/api/v1/schedules/{id}",
        "Delete a schedule (its jobs stay)",
        responses={"204": ("deleted", None), "404": _NO_SCHEDULE},
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/schedules/{id}/pause",
        "Pause a schedule: no fires until resumed",
        responses={
            "200": _SCHEDULE,
            "404": _NO_SCHEDULE,
            "409": ("the schedule is paused already", "Error"),
        },
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/schedules/{id}/resume",
        "Resume a paused schedule from now (fires due while paused are not run)",
        responses={
            "200": _SCHEDULE,
            "404": _NO_SCHEDULE,
            "409": ("the schedule is active already", "Error"),
        },
        parameters=(_ID,),
    ),
    Operation(
        "post",
        "/api/v1/schedules/{id}/run",
        "Create the schedule's job now, paused or not",
        responses={"201": ("the new job", "Job"), "404": _NO_SCHEDULE},
        parameters=(_ID,),
    ),
    # The built-in dashboard's chart data (README: The dashboard).
    Operation(
        "get",
        "/api/v1/stats/summary",
        "All jobs over the last hour, as chart columns",
        responses={"200": ("totals and series", "SummaryStats"), "400": _BAD},
        parameters=(_WINDOW, _POINTS),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/stats/types",
        "One series per job type, the busiest first",
        responses={"200": ("a series per type", "TypesStats"), "400": _BAD},
        parameters=(_WINDOW, _POINTS, _query("limit", "types at most", _TYPES_LIMIT)),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/stats/names",
        "Job functions that have history, busiest first",
        responses={"200": ("the functions", "NameList"), "400": _BAD},
        parameters=(
            _query("q", "part of the name", _STR),
            _query("type", "only this type", _STR),
            _query("limit", "functions at most", _NAMES_LIMIT),
        ),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/stats/name",
        "One job function's series",
        responses={
            "200": ("its series", "NameStats"),
            "400": _BAD,
            "404": ("no history for that function", "Error"),
        },
        parameters=(_required("source"), _required("type"), _required("name"), _WINDOW, _POINTS),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/stats/durations",
        "Each job function's p50, p95 and p99 run time (seconds) from its duration histogram",
        responses={"200": ("one entry per function with runs", "DurationTable"), "400": _BAD},
        parameters=tuple(
            _query(f, f"only this {f}", {"type": "string", "maxLength": durations.MAX_TEXT})
            for f in ("source", "type", "name")
        ),
        write=False,
    ),
    Operation(
        "get",
        "/api/v1/stats/failing",
        "Job functions with the most failed and lost runs in the window",
        responses={"200": ("the functions, most failures first", "FailingStats"), "400": _BAD},
        parameters=(
            _WINDOW,
            _query("limit", f"functions at most (default {stats.DEFAULT_FAILING})", _FAILING_LIMIT),
        ),
        write=False,
    ),
)

_SCHEMA_TYPES: dict[str, Any] = {
    "CreateJob": schemas.CreateJob,
    "LeaseRequest": schemas.LeaseRequest,
    "HeartbeatRequest": schemas.HeartbeatRequest,
    "CompleteRequest": schemas.CompleteRequest,
    "FailRequest": schemas.FailRequest,
    "CreateSchedule": schemas.CreateSchedule,
    "EditSchedule": schemas.EditSchedule,
    "Schedule": schemas.Schedule,
    "SchedulePage": schemas.SchedulePage,
    "Job": schemas.Job,
    "JobPage": schemas.JobPage,
    "BulkFilter": schemas.BulkFilter,
    "Retried": schemas.Retried,
    "Cancelled": schemas.Cancelled,
    "PushAccepted": schemas.PushAccepted,
    "PushBody": JobInfo | list[JobInfo],
    "TrackedJobs": list[schemas.TrackedJob],
    "TrackedPage": schemas.TrackedPage,
    "Error": schemas.Error,
    **stats_schemas.SCHEMAS,
    "DurationTable": durations.DurationTable,
}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (3.1 because msgspec emits JSON Schema 2020-12)."""
    names = list(_SCHEMA_TYPES)
    top, components = msgspec.json.schema_components(
        [_SCHEMA_TYPES[name] for name in names], ref_template=REF
    )
    aliases = dict(zip(names, top, strict=True))  # a name to its schema or $ref
    for name, schema in aliases.items():
        if "$ref" not in schema or schema["$ref"] != REF.format(name=name):
            components.setdefault(name, schema)  # unions and lists get a name of their own
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "job-exporter",
            "version": __version__,
            "description": "Push ingestion and a small durable job API (with recurring "
            "schedules) whose every step shows "
            "in the Prometheus metrics at /metrics. Errors are JSON: "
            '{"error": "...", "errors": [{"field": "...", "message": "..."}]}. '
            "Timestamps are epoch milliseconds.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    if op.parameters:
        out["parameters"] = list(op.parameters)
    if op.request:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": {"$ref": REF.format(name=op.request)}}},
        }
    responses = dict(op.responses)
    if op.write:
        out["security"] = [{"bearer": []}, {}]  # only when a token is configured
        responses["401"] = ("missing or wrong bearer token (when one is configured)", "Error")
        if op.request:
            responses.setdefault("400", _BAD)
            responses["413"] = ("body larger than the configured cap", "Error")
            responses["415"] = ("body not sent as application/json", "Error")
    out["responses"] = {
        status: _response(description, schema)
        for status, (description, schema) in sorted(responses.items())
    }
    return out


def _response(description: str, schema: str | None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name=schema)}}},
    }


_OPERATION_IDS = {
    ("post", "/api/v1/push"): "pushJobs",
    ("get", "/api/v1/jobinfo"): "listTrackedJobs",
    ("get", "/api/v1/tracked"): "pageTrackedJobs",
    ("post", "/api/v1/jobs"): "createJob",
    ("get", "/api/v1/jobs"): "listJobs",
    ("get", "/api/v1/jobs/{id}"): "getJob",
    ("post", "/api/v1/jobs/lease"): "leaseJob",
    ("post", "/api/v1/jobs/{id}/heartbeat"): "heartbeatJob",
    ("post", "/api/v1/jobs/{id}/complete"): "completeJob",
    ("post", "/api/v1/jobs/{id}/fail"): "failJob",
    ("post", "/api/v1/jobs/{id}/retry"): "retryJob",
    ("post", "/api/v1/jobs/{id}/cancel"): "cancelJob",
    ("delete", "/api/v1/jobs/{id}"): "deleteJob",
    ("post", "/api/v1/jobs/retry"): "retryFailedJobs",
    ("post", "/api/v1/jobs/cancel"): "cancelPendingJobs",
    ("post", "/api/v1/schedules"): "createSchedule",
    ("get", "/api/v1/schedules"): "listSchedules",
    ("get", "/api/v1/schedules/{id}"): "getSchedule",
    ("patch", "/api/v1/schedules/{id}"): "editSchedule",
    ("delete", "/api/v1/schedules/{id}"): "deleteSchedule",
    ("post", "/api/v1/schedules/{id}/pause"): "pauseSchedule",
    ("post", "/api/v1/schedules/{id}/resume"): "resumeSchedule",
    ("post", "/api/v1/schedules/{id}/run"): "runSchedule",
    ("get", "/api/v1/stats/summary"): "statsSummary",
    ("get", "/api/v1/stats/types"): "statsByType",
    ("get", "/api/v1/stats/names"): "statsNames",
    ("get", "/api/v1/stats/name"): "statsByName",
    ("get", "/api/v1/stats/durations"): "statsDurations",
    ("get", "/api/v1/stats/failing"): "statsFailing",
}


def _operation_id(op: Operation) -> str:
    return _OPERATION_IDS[(op.method, op.path)]


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return json_response(document())


@blueprint.get("/docs")
def docs() -> Response:
    return Response(render_docs(document()), content_type="text/html; charset=utf-8")


def render_docs(doc: dict[str, Any]) -> str:
    """A self-contained HTML page: every operation, then every schema."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(doc['info']['title'])} API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{font-family:ui-monospace,monospace;font-size:13px}"
        "pre{background:#f4f4f4;padding:.6rem;overflow:auto}.m{font-weight:bold;"
        "text-transform:uppercase;display:inline-block;width:4rem}section{border-top:1px "
        "solid #ddd;padding:.4rem 0}</style></head><body>",
        f"<h1>{esc(doc['info']['title'])} API <small>{esc(doc['info']['version'])}</small></h1>",
        f"<p>{esc(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a></p>",
        "<h2>Operations</h2>",
    ]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parts.append(
                f"<section id='{esc(op['operationId'])}'><h3><span class='m'>{esc(method)}</span>"
                f"<code>{esc(path)}</code></h3><p>{esc(op['summary'])}</p>"
            )
            for param in op.get("parameters", []):
                parts.append(
                    f"<div>{esc(param['in'])} <code>{esc(param['name'])}</code>: "
                    f"{esc(param.get('description', ''))}</div>"
                )
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                parts.append(f"<div>body: <a href='#schema-{esc(ref)}'>{esc(ref)}</a></div>")
            parts.append("<ul>")
            for status, response in op["responses"].items():
                content = response.get("content")
                link = ""
                if content:
                    ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                    link = f" (<a href='#schema-{esc(ref)}'>{esc(ref)}</a>)"
                parts.append(f"<li><b>{esc(status)}</b> {esc(response['description'])}{link}</li>")
            parts.append("</ul></section>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        text = json.dumps(schema, indent=2, sort_keys=True)
        parts.append(
            f"<section id='schema-{esc(name)}'><h3>{esc(name)}</h3><pre>{esc(text)}</pre></section>"
        )
    parts.append("</body></html>")
    return "".join(parts)
