"""Schedules (recurring jobs): create, list, inspect, pause, resume, run now, delete.

Thin, as the job API: parse and check the request, call the scheduler, encode its answer.
A definition the scheduler cannot keep (a bad cron expression or time zone, an interval out
of range) is a 400 naming the field, never a 500.
"""

from __future__ import annotations

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
