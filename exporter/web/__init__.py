"""The built-in dashboard: one HTML page, plain ES modules and a vendored chart library.

Served from package data, so an installed package has it and nothing is built with Node.
The page talks only to this exporter's own JSON API (`/api/v1/...`). Files are revalidated
on every load (`no-cache` with an ETag), so an upgraded exporter never serves a stale page.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

# Not left to the platform's MIME table: a module served as text/plain would not load.
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

blueprint = Blueprint("web", __name__)


def _send(path: str) -> Response:
    mimetype = TYPES.get(Path(path).suffix)
    response = send_from_directory(STATIC, path, max_age=0, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/")
def index() -> Response:
    return _send("index.html")


@blueprint.get("/ui/<path:path>")
def asset(path: str) -> Response:
    """The page's modules, styles and vendored files; a missing one is a JSON 404."""
    return _send(path)
