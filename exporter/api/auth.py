"""Bearer tokens with roles, checked before any view runs so no route can forget them.

`--api-token` may do everything; `--worker-token` only what a worker does (push, lease,
heartbeat, complete, fail); `--viewer-token` only read, when reads are closed with
`--api-token-reads`. With any token set, every non-GET request under `/api/` needs one
whose role allows it: 401 without a valid token, 403 with one whose role does not. The
API's own description, `/metrics` and the health endpoints stay open.

`verdict` is the one definition of that rule: the server's edge (exporter/runtime/edge.py)
applies it to a request's headers before its body is read, and the check below applies it
again to every request that reaches Flask.
"""

from __future__ import annotations

import hmac
import re

from flask import Flask, request

from exporter.api.errors import error_response
from exporter.config import Settings

API_PREFIX = "/api/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS_OPEN = frozenset({"/api/openapi.json", "/api/docs"})
# What a worker does: report jobs, and take, keep and finish leases.
WORKER_WRITES = re.compile(r"/api/v1/(push|jobs/lease|jobs/[^/]+/(heartbeat|complete|fail))/?")

# What a refused request is told, by Flask and by the edge alike.
UNAUTHORIZED_MESSAGE = "a valid bearer token is required"
UNAUTHORIZED_ERRORS = ({"field": "Authorization", "message": "expected: Bearer <token>"},)
FORBIDDEN_MESSAGE = "this token's role may not do this (see --api-token, --worker-token)"
FORBIDDEN_ERRORS = ({"field": "Authorization", "message": "a token of another role"},)
WWW_AUTHENTICATE = 'Bearer realm="job-exporter"'


def token_required(method: str, path: str, settings: Settings) -> bool:
    """Whether a request with this method and (Flask's) path must carry a token."""
    if not settings.tokens_set:
        return False
    if not path.startswith(API_PREFIX) or path in ALWAYS_OPEN:
        return False
    return method not in READ_METHODS or settings.api_token_reads


def verdict(method: str, path: str, authorization: str, settings: Settings) -> int | None:
    """None when the request may go on; 401 without a valid token where one is needed,
    403 with a token whose role does not allow it."""
    if not token_required(method, path, settings):
        return None
    role = _role(authorization, settings)
    if role is None:
        return 401
    if role == "api":
        return None
    if method in READ_METHODS:
        return None if role == "viewer" else 403
    return None if role == "worker" and WORKER_WRITES.fullmatch(path) else 403


def _role(authorization: str, settings: Settings) -> str | None:
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = given.strip().encode()
    found = None
    for role, expected in (
        ("api", settings.api_token),
        ("worker", settings.worker_token),
        ("viewer", settings.viewer_token),
    ):  # every one compared, in constant time, whichever matches
        if expected is not None and hmac.compare_digest(token, expected.encode()):
            found = role
    return found


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.tokens_set:
        return

    @app.before_request
    def require_token():
        refused = verdict(
            request.method, request.path, request.headers.get("Authorization", ""), settings
        )
        if refused is None:
            return None
        if refused == 403:
            return error_response(403, FORBIDDEN_MESSAGE, [dict(e) for e in FORBIDDEN_ERRORS])
        response = error_response(401, UNAUTHORIZED_MESSAGE, [dict(e) for e in UNAUTHORIZED_ERRORS])
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response
