"""`/metrics`, `/healthz` and `/readyz`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from exporter.api.errors import error_response
from exporter.runtime.process import current_runtime
from exporter.store import StoreError

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
    try:
        current_runtime().store.ping()
    except StoreError as error:
        return error_response(503, f"store unavailable: {error}")
    return jsonify({"status": "ready"})
