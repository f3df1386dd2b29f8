"""Parts of the app turned off (`--no-job-api`, `--no-page`): their paths answer a JSON 404
that says so, rather than one that leaves the client wondering whether it mistyped."""

from __future__ import annotations

from flask import Blueprint

from exporter.api.errors import error_response

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

# Each part's paths: a prefix stands for itself and everything under it.
JOB_API_PREFIXES = ("/api/v1/jobs", "/api/v1/schedules")
PAGE_PATHS = ("/",)
PAGE_PREFIXES = ("/ui", "/api/v1/stats")  # the page's files, and the chart data it reads


def turned_off(
    name: str, message: str, prefixes: tuple[str, ...], paths: tuple[str, ...] = ()
) -> Blueprint:
    blueprint = Blueprint(name, __name__)

    def answer(rest: str = ""):
        return error_response(404, message)

    rules = [*paths, *prefixes, *(f"{prefix}/<path:rest>" for prefix in prefixes)]
    for number, rule in enumerate(rules):
        blueprint.add_url_rule(rule, f"off_{number}", answer, methods=METHODS)
    return blueprint


def job_api_off() -> Blueprint:
    return turned_off(
        "job_api_off", "the job API is turned off here (--no-job-api)", JOB_API_PREFIXES
    )


def page_off() -> Blueprint:
    return turned_off(
        "page_off", "the built-in page is turned off here (--no-page)", PAGE_PREFIXES, PAGE_PATHS
    )
