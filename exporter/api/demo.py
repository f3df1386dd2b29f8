"""`GET /demo/jobs`: the built-in mock source, served over HTTP and scraped like any app."""

from __future__ import annotations

import msgspec
from flask import Blueprint, Flask, Response, current_app

from exporter.clock import Clock
from exporter.sources.mock import MockJobSource

blueprint = Blueprint("demo", __name__)
EXTENSION = "job_exporter_mock"


def init_app(app: Flask, clock: Clock) -> None:
    app.extensions[EXTENSION] = MockJobSource(clock)
    app.register_blueprint(blueprint)


@blueprint.get("/demo/jobs")
def demo_jobs() -> Response:
    source: MockJobSource = current_app.extensions[EXTENSION]
    return Response(msgspec.json.encode(source.jobs()), content_type="application/json")
