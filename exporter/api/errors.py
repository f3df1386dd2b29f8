"""Every error answers JSON as docs/contract.md §4 says: `{"error": ..., "errors": [...]}`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from exporter.store import StoreError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by a view to answer a 4xx (or 503) in the contract's shape and stop there."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def error_response(status: int, message: str, errors: list[dict[str, Any]] | None = None):
    response = jsonify({"error": message, "errors": errors or []})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.message, error.errors)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = error_response(error.code or 500, error.description or error.name)
        for header, value in error.get_headers():
            if header.lower() not in ("content-type", "content-length"):
                response.headers[header] = value
        return response

    @app.errorhandler(StoreError)
    def store_unavailable(error: StoreError):
        """503 with the fault's word: what the database said (and where it is) is in the
        log, once per change (store/health.py), not in answers to any client."""
        return error_response(
            503,
            f"the store is unavailable ({error.fault}); this request was not acknowledged: "
            "send it again once /readyz says ready",
        )

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unexpected error while serving a request")
        return error_response(500, "internal error; the exporter's log has the details")
