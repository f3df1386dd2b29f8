"""The optional bearer token, checked before any view runs so no route can forget it.

With `api_token` set, every non-GET request under `/api/` needs `Authorization: Bearer
<token>` (401 otherwise); with `api_token_reads` too, so does every GET under `/api/` except
the API's own description. `/metrics` and the health endpoints stay open.

`token_required` and `token_accepted` are the one definition of that rule: the server's
edge (exporter/runtime/edge.py) applies them to a request's headers before its body is read,
and the check below applies them again to every request that reaches Flask.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from exporter.api.errors import error_response
from exporter.config import Settings

API_PREFIX = "/api/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS_OPEN = frozenset({"/api/openapi.json", "/api/docs"})

# What a refused request is told, by Flask and by the edge alike.
UNAUTHORIZED_MESSAGE = "a valid bearer token is required"
UNAUTHORIZED_ERRORS = ({"field": "Authorization", "message": "expected: Bearer <token>"},)
WWW_AUTHENTICATE = 'Bearer realm="job-exporter"'


def token_required(method: str, path: str, settings: Settings) -> bool:
    """Whether a request with this method and (Flask's) path must carry the token."""
    if settings.api_token is None:
        return False
    if not path.startswith(API_PREFIX) or path in ALWAYS_OPEN:
        return False
    return method not in READ_METHODS or settings.api_token_reads


def token_accepted(authorization: str, settings: Settings) -> bool:
    """Whether an `Authorization` header's value carries the configured token."""
    if settings.api_token is None:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.api_token.encode()
    )


def init_app(app: Flask, settings: Settings) -> None:
    if settings.api_token is None:
        return

    @app.before_request
    def require_token():
        if not token_required(request.method, request.path, settings):
            return None
        if token_accepted(request.headers.get("Authorization", ""), settings):
            return None
        response = error_response(401, UNAUTHORIZED_MESSAGE, [dict(e) for e in UNAUTHORIZED_ERRORS])
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response
