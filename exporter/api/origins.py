"""Browser pages of other origins: their writes refused, the dashboard never framed, and
CORS for the origins the operator allows (`--cors-origin`).

With no token set, any page a visitor opens could otherwise post to the exporter from the
visitor's browser: a plain HTML form needs no preflight, and `retry`, `pause`, `resume` and
`run` take an empty body. Browsers say where a request comes from (`Origin`, and
`Sec-Fetch-Site` for the rest), so a write that a page of another origin sent is a 403
unless that origin is allowed; programs (curl, the client, workers) send neither header and
are not affected. Every answer forbids framing, so a "Run now" cannot be clicked inside
another site's frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from exporter.api.errors import error_response
from exporter.config import DEFAULT_PORTS, origin_of

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a page of an allowed origin may send (the API's own headers) and read.
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSED_HEADERS = "Retry-After, Location"
PREFLIGHT_MAX_AGE_S = 600


def _netloc(origin: str) -> str:
    """host[:port] of an origin, for comparing with the Host header (a proxy that ends TLS
    changes the scheme the exporter sees, never the host the browser asked for)."""
    return origin.split("://", 1)[1]


def _host() -> str:
    host = request.host.lower()
    for port in DEFAULT_PORTS.values():
        host = host.removesuffix(f":{port}")
    return host


# Sent with every answer, appended by a WSGI wrapper: Flask's header setters scan and
# validate on each call, which cost every request more than the whole check below.
FRAMING_HEADERS = [
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
]
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def init_app(app: Flask, allowed: tuple[str, ...]) -> None:
    allowed_origins = frozenset(allowed)

    def cross_origin(given: str | None) -> str | None:
        """The origin of a page of another site that sent this request, if one did."""
        if given is not None:
            origin = origin_of(given)
            if origin is None:  # "null": a sandboxed frame, a file, a redirect
                return given
            return None if _netloc(origin) == _host() else origin
        site = request.environ.get("HTTP_SEC_FETCH_SITE")
        if site in _FOREIGN_SITES:
            return f"a {site} page"
        return None

    @app.before_request
    def refuse_foreign_writes() -> Response | None:
        environ = request.environ
        given = environ.get("HTTP_ORIGIN")
        if given is None and "HTTP_SEC_FETCH_SITE" not in environ:
            return None  # a program, not a browser page: most requests end here
        origin = cross_origin(given)
        if origin is None or origin in allowed_origins:
            if origin is not None and request.method == "OPTIONS":
                return _preflight(Response(status=204))
            return None
        if request.method in READ_METHODS:
            return None  # answered, but without CORS headers the page cannot read it
        return error_response(
            403,
            f"writes from pages of another origin ({origin}) are refused; "
            "allow that origin with --cors-origin",
            [{"field": "Origin", "message": "not an allowed origin"}],
        )

    @app.after_request
    def cors_headers(response: Response) -> Response:
        given = request.environ.get("HTTP_ORIGIN")
        if given is not None and (origin := origin_of(given)) in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin or ""
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response.vary.add("Origin")
        return response

    app.wsgi_app = _forbid_framing(app.wsgi_app)  # type: ignore[method-assign,assignment]


def _forbid_framing(wsgi: WSGIApplication) -> WSGIApplication:
    def framed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *info: Any) -> Any:
            headers.extend(FRAMING_HEADERS)
            return start_response(status, headers, *info)

        return wsgi(environ, start)

    return framed


def _preflight(response: Response) -> Response:
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response
