"""`/metrics`, `/healthz` and `/readyz`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from exporter.api.errors import error_response
from exporter.runtime.process import current_runtime
from exporter.store.health import StoreFault

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    gzip_ok = "gzip" in request.headers.get("Accept-Encoding", "")
    body, content_type = current_runtime().metrics_page.render(
        request.headers.get("Accept"), gzip_ok
    )
    response = Response(body, content_type=content_type)
    if gzip_ok:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept, Accept-Encoding"
    return response


@blueprint.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    """Ready while the store answers a read within the reader's budget and its last
    operations worked; the fault's word otherwise (what the database said is in the log)."""
    runtime = current_runtime()
    _, fresh = runtime.collector.reader.read()
    state = runtime.store.health.state()
    if fresh and state.up:
        return jsonify({"status": "ready"})
    fault = state.fault or StoreFault.TIMEOUT  # a read still waiting has not failed yet
    response = error_response(503, f"the store is unavailable ({fault})")
    response.headers["Retry-After"] = "1"
    return response
