"""Schedules (recurring jobs): create, list, inspect, edit, pause, resume, run now, delete.

Thin, as the job API: parse and check the request, call the scheduler, encode its answer.
A definition the scheduler cannot keep (a bad cron expression or time zone, an interval out
of range) is a 400 naming the field, never a 500.
"""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Blueprint, Response

from exporter.api import schemas
from exporter.api.bodies import raw_json_body, read_json
from exporter.api.errors import error_response
from exporter.api.jobs import capped_json
from exporter.api.responses import job_out, json_response, schedule_out
from exporter.jobs.schedules import ScheduleInvalid, ScheduleSpec
from exporter.model.schedules import ScheduleConflict, UnknownSchedule
from exporter.runtime.process import current_runtime

blueprint = Blueprint("schedules", __name__, url_prefix="/api/v1/schedules")


@blueprint.errorhandler(ScheduleInvalid)
def invalid(error: ScheduleInvalid):
    return error_response(400, "the schedule is invalid", [_field(error.field, str(error))])


@blueprint.errorhandler(UnknownSchedule)
def unknown(error: UnknownSchedule):
    message = f"no schedule has id {error.args[0]!r}"
    return error_response(404, message, [_field("id", "unknown schedule")])


@blueprint.errorhandler(ScheduleConflict)
def conflict(error: ScheduleConflict):
    return error_response(409, str(error), [_field(error.field, str(error))])


@blueprint.post("")
def create() -> Response:
    body = read_json(schemas.CreateSchedule)
    spec = ScheduleSpec(
        type=body.type,
        name=body.name,
        payload=capped_json(body.payload, "payload"),
        cron=body.cron,
        interval_s=body.interval_seconds,
        timezone=body.timezone,
        misfire=body.misfire,
        max_attempts=body.max_attempts,
    )
    schedule = current_runtime().schedules.create(spec)
    response = json_response(schedule_out(schedule), 201)
    response.headers["Location"] = f"{blueprint.url_prefix}/{schedule.id}"
    return response


@blueprint.get("")
def list_schedules() -> Response:
    schedules = current_runtime().schedules.list()
    return json_response(schemas.SchedulePage([schedule_out(one) for one in schedules]))


@blueprint.get("/<schedule_id>")
def get(schedule_id: str) -> Response:
    return json_response(schedule_out(current_runtime().schedules.get(schedule_id)))


# The body's fields as the scheduler's Schedule names them.
_EDIT_FIELDS = {
    "type": "type",
    "name": "name",
    "payload": "payload",
    "cron": "cron",
    "interval_seconds": "interval_s",
    "timezone": "timezone",
    "misfire": "misfire",
    "max_attempts": "max_attempts",
}


@blueprint.patch("/<schedule_id>")
def edit(schedule_id: str) -> Response:
    """Change some fields of a schedule: 200 with the schedule as it is now.

    PATCH, not PUT: the body names only the fields that change (as a JSON merge patch
    would), so a client changing the name need not resend the timetable, and a field this
    API adds later is not reset by an older client. Giving `cron` switches the schedule to
    cron (its interval is cleared) and `intervalSeconds` the other way; both at once is a
    400. Every field is checked before anything is written: a 400 names the first field
    that is wrong and changes nothing; an unknown id is a 404. A timing change (cron,
    interval, time zone) moves the next fire to the first one after now; a paused schedule
    stays paused; fire counts, last fire and last success stay with the schedule, whose
    metric series then carry its new type and name (docs/api.md).
    """
    body = read_json(schemas.EditSchedule)
    changes: dict[str, Any] = {}
    for field, name in _EDIT_FIELDS.items():
        value = getattr(body, field)
        if value is not msgspec.UNSET:
            changes[name] = value
    if "cron" in changes and "interval_s" in changes:
        raise ScheduleInvalid("cron", "give either cron or intervalSeconds, not both")
    if "cron" in changes:
        changes["interval_s"] = None
    elif "interval_s" in changes:
        changes["cron"] = None
    if "payload" in changes:
        changes["payload"] = capped_json(changes["payload"], "payload")
    schedule = current_runtime().schedules.edit(schedule_id, changes)
    return json_response(schedule_out(schedule))


@blueprint.delete("/<schedule_id>")
def delete(schedule_id: str) -> Response:
    current_runtime().schedules.delete(schedule_id)
    return Response(status=204)


@blueprint.post("/<schedule_id>/pause")
def pause(schedule_id: str) -> Response:
    raw_json_body(required=False)
    return json_response(schedule_out(current_runtime().schedules.pause(schedule_id)))


@blueprint.post("/<schedule_id>/resume")
def resume(schedule_id: str) -> Response:
    raw_json_body(required=False)
    return json_response(schedule_out(current_runtime().schedules.resume(schedule_id)))


@blueprint.post("/<schedule_id>/run")
def run_now(schedule_id: str) -> Response:
    """One job now, outside the timetable: 201 with the job."""
    raw_json_body(required=False)
    job = current_runtime().schedules.run_now(schedule_id)
    response = json_response(job_out(job), 201)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return response


def _field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
