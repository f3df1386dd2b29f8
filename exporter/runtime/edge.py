"""Waitress's edge: refuse a request from its headers alone, answer every refusal in JSON.

Waitress reads a whole request (spooling a large body to a temporary file) before a thread
and Flask see it, so a limit checked in Flask is checked too late: a 100 MiB push without a
token was on disk before its 401. Here the parser asks a `Gate` about each request with a
body as soon as its headers are in, and the channel stops reading a connection once its request is
refused; waitress's own refusals (413 over the body cap, 400, 431, 501) keep their status
and answer the contract's `{"error": ..., "errors": [...]}` instead of a text page.

A connection costs no thread while it sends: waitress hands a request to a thread only when
it is whole, so a client sending a byte a second holds a socket and a parser, no more.
"""

from __future__ import annotations

import json
import logging
import resource
from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_address
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask
from waitress.utilities import Error, RequestEntityTooLarge

log = logging.getLogger(__name__)


class Refusal(Error):
    """An answer given at the edge, already in the contract's terms."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        errors: Sequence[Mapping[str, Any]] = (),
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.errors = [dict(error) for error in errors]
        self.headers = list(headers)


# (method, path as Flask sees it, headers as waitress keys them: AUTHORIZATION, ...) to a
# refusal, or None to let the request be read and served.
Gate = Callable[[str, str, Mapping[str, str]], Refusal | None]


def body_too_large(max_body_bytes: int) -> Refusal:
    return Refusal(
        413,
        "Request Entity Too Large",
        f"the request body is over the limit of {max_body_bytes} bytes",
        [{"field": "body", "message": f"at most {max_body_bytes} bytes"}],
    )


class EdgeParser(HTTPRequestParser):
    """Waitress's parser, asking the gate once the headers are in; a refused request is
    complete at once, its body unread and no `100 Continue` sent for it."""

    gate: Gate = staticmethod(lambda method, path, headers: None)
    max_body_bytes = 0

    def received(self, data: bytes) -> int:
        given = len(data)
        if self.body_rcv is not None:
            # Waitress checks a chunked body's size after storing what it was given: give it
            # no more than the cap has room for, so not one read more is stored.
            room = self.adj.max_request_body_size - self.body_bytes_received
            if 0 < room < given:
                data = data[:room]
        in_headers = not self.headers_finished
        consumed = super().received(data)
        if in_headers and self.headers_finished and not self.empty:
            self._ask_gate()
        if self.error is None:
            return consumed
        if isinstance(self.error, RequestEntityTooLarge):
            self.error = body_too_large(self.max_body_bytes)
        self.expect_continue = False
        return given  # the connection closes after the answer: the rest is not parsed

    def _ask_gate(self) -> None:
        # A malformed request is answered as such; one too large may still need its 401.
        if self.error is not None and not isinstance(self.error, RequestEntityTooLarge):
            return
        # Without a body there is nothing to save: Flask answers it, with all it knows
        # (a CORS preflight, the 403 for a page of another origin, CORS headers on a 401).
        if self.body_rcv is None:
            return
        path = "/" + getattr(self, "path", "").lstrip("/")  # werkzeug's request.path
        refusal = type(self).gate(str(self.command), path, self.headers)
        if refusal is not None:
            self.error = refusal
            self.completed = True


class JsonErrorTask(ErrorTask):
    """Every answer waitress gives itself, in the contract's JSON shape."""

    def execute(self) -> None:
        request: Any = self.request  # a parser (the stubs say an Error)
        error: Error = request.error
        refusal = error if isinstance(error, Refusal) else None
        body = json.dumps(
            {"error": error.body, "errors": refusal.errors if refusal else []}
        ).encode()
        self.status = f"{error.code} {error.reason}"
        headers = [("Content-Type", "application/json"), *(refusal.headers if refusal else [])]
        self.response_headers = [*self.response_headers, *headers]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class EdgeChannel(HTTPChannel):
    """Stops reading a connection once its latest request is refused: nothing of the body
    that follows is read, buffered or spooled while the answer waits for a thread."""

    parser_class = EdgeParser
    error_task_class = JsonErrorTask

    def readable(self) -> bool:
        latest = self.requests[-1:]  # one read: a task thread may empty the list meanwhile
        refused = bool(latest) and latest[0].error is not None
        return bool(super().readable()) and not refused


def channel_class(gate: Gate, max_body_bytes: int) -> type[HTTPChannel]:
    """An EdgeChannel whose parser asks `gate` and refuses bodies over `max_body_bytes`."""
    parser = type(
        "GatedParser",
        (EdgeParser,),
        {"gate": staticmethod(gate), "max_body_bytes": max_body_bytes},
    )
    return type("GatedChannel", (EdgeChannel,), {"parser_class": parser})


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (every connection is a descriptor);
    the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, error)
            return soft
        return hard
    return soft


def is_loopback(host: str) -> bool:
    """Whether a bound address is reachable only from this machine."""
    try:
        return ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"
