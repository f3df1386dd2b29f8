"""The optional bearer token, checked before any view runs so no route can forget it.

With `api_token` set, every non-GET request under `/api/` needs `Authorization: Bearer
<token>` (401 otherwise); with `api_token_reads` too, so does every GET under `/api/` except
the API's own description. `/metrics` and the health endpoints stay open.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from exporter.api.errors import error_response
from exporter.config import Settings

API_PREFIX = "/api/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS_OPEN = frozenset({"/api/openapi.json", "/api/docs"})


def init_app(app: Flask, settings: Settings) -> None:
    if settings.api_token is None:
        return
    expected = settings.api_token.encode()

    @app.before_request
    def require_token():
        path = request.path
        if not path.startswith(API_PREFIX) or path in ALWAYS_OPEN:
            return None
        if request.method in READ_METHODS and not settings.api_token_reads:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return None
        response = error_response(
            401,
            "a valid bearer token is required",
            [{"field": "Authorization", "message": "expected: Bearer <token>"}],
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="job-exporter"'
        return response
