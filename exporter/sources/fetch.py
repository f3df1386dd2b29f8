"""One bounded HTTP GET of a source's jobs endpoint, with faults named by reason.

`requests` read timeouts bound each socket read, not the whole body, so a source that
trickles a byte at a time is also cut off by a total deadline; the body is read as it arrives
and abandoned as soon as it passes the size cap (after gzip decoding, so a small bomb cannot
slip through). Redirects are followed by hand, and only to the same host and port unless
`FetchLimits.redirects_elsewhere` allows any: a source's answer must not make the exporter
reach a host its configuration never named (docs/contract.md §8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import HTTPError, ReadTimeoutError

from exporter.model.counts import ScrapeErrorReason

CHUNK_BYTES = 1 << 20
MAX_CONNECT_TIMEOUT = 3.0  # a source that takes longer to accept is down, not slow
MAX_REDIRECTS = 10  # redirects followed for one fetch before it fails as http_status
REDIRECTS_ELSEWHERE = False  # whether a redirect may lead to another host or port
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(Exception):
    """A failed scrape; `reason` is one of the scrape error reasons of docs/contract.md §3."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_bytes: int
    redirects_elsewhere: bool = REDIRECTS_ELSEWHERE
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def within(
        cls, timeout: float, max_bytes: int, *, redirects_elsewhere: bool = REDIRECTS_ELSEWHERE
    ) -> FetchLimits:
        """One timeout bounds the whole fetch, as Prometheus's scrape timeout does: a source
        trickling one byte at a time is cut off as surely as one that never answers."""
        return cls(
            min(MAX_CONNECT_TIMEOUT, timeout),
            timeout,
            timeout,
            max_bytes,
            redirects_elsewhere=redirects_elsewhere,
        )


def fetch(session: requests.Session, url: str, limits: FetchLimits) -> bytearray:
    """The response body, or FetchError with reason connection, timeout, http_status or
    too_large. Decoding the body (and `invalid_json`) is the caller's business."""
    deadline = time.monotonic() + limits.total_timeout
    try:
        with _follow(session, url, limits, deadline) as response:
            if not 200 <= response.status_code < 300:
                raise FetchError(
                    ScrapeErrorReason.HTTP_STATUS, f"HTTP {response.status_code} from {url}"
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(
                    ScrapeErrorReason.TOO_LARGE,
                    f"{declared} bytes declared, cap {limits.max_bytes}",
                )
            # An unencoded body's size is known: its buffer is made whole at once (mapped,
            # past 8 MiB) instead of grown through the heap, leaving nothing behind there.
            plain = "Content-Encoding" not in response.headers
            expected = int(declared) if plain and declared.isdigit() else 0
            return _read_body(response, limits.max_bytes, deadline, expected)
    except FetchError:
        raise
    except requests.Timeout as error:
        raise FetchError(ScrapeErrorReason.TIMEOUT, str(error)) from error
    except requests.ConnectionError as error:
        # A read timeout while streaming the body surfaces as a ConnectionError.
        if _is_read_timeout(error):
            raise FetchError(ScrapeErrorReason.TIMEOUT, str(error)) from error
        raise FetchError(ScrapeErrorReason.CONNECTION, str(error)) from error
    except ReadTimeoutError as error:
        raise FetchError(ScrapeErrorReason.TIMEOUT, str(error)) from error
    except (requests.RequestException, HTTPError) as error:
        raise FetchError(ScrapeErrorReason.CONNECTION, str(error)) from error


def _follow(
    session: requests.Session, url: str, limits: FetchLimits, deadline: float
) -> requests.Response:
    """The response at the end of the redirects from `url`, each one checked before it is
    followed; FetchError (http_status) for one that leads elsewhere when that is not
    allowed, or for too many."""
    current = url
    for hop in range(limits.max_redirects + 1):
        if hop and time.monotonic() > deadline:
            raise FetchError(ScrapeErrorReason.TIMEOUT, "redirects not done within the timeout")
        response = session.get(
            current,
            timeout=(limits.connect_timeout, limits.read_timeout),
            stream=True,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
        target = session.get_redirect_target(response)
        if target is None:
            return response
        response.close()
        status = response.status_code
        following = urljoin(current, target)
        origin = _origin(following)
        if origin is None or (not limits.redirects_elsewhere and origin != _origin(current)):
            raise FetchError(
                ScrapeErrorReason.HTTP_STATUS,
                f"HTTP {status} from {current} redirects to another host or port "
                f"({following}); not followed, as redirects elsewhere are not allowed",
            )
        current = following
    raise FetchError(
        ScrapeErrorReason.HTTP_STATUS, f"more than {limits.max_redirects} redirects from {url}"
    )


def _origin(url: str) -> tuple[str, int | None] | None:
    """(host, port) of a URL, the port filled in from the scheme; None when unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    return ((parts.hostname or "").lower(), port)


def _read_body(
    response: requests.Response, max_bytes: int, deadline: float, expected: int
) -> bytearray:
    """Read what has arrived, piece by piece (`read1`), so the deadline and the cap are
    checked as data comes in rather than after a 1 MiB buffer finally fills. The pieces go
    into one buffer, `expected` bytes from the start and grown past that if need be, so a
    large body is never held twice (pieces and their join)."""
    body = bytearray(expected)
    filled = 0
    while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
        end = filled + len(chunk)
        if end > max_bytes:
            raise FetchError(
                ScrapeErrorReason.TOO_LARGE, f"body passed the cap of {max_bytes} bytes"
            )
        if time.monotonic() > deadline:
            raise FetchError(
                ScrapeErrorReason.TIMEOUT, "body not complete within the total timeout"
            )
        body[filled:end] = chunk  # in place while it fits, growing the buffer past it
        filled = end
    del body[filled:]  # a body shorter than declared
    return body


def _is_read_timeout(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ReadTimeoutError | TimeoutError):
            return True
        if any(isinstance(arg, ReadTimeoutError) for arg in current.args):
            return True
        current = current.__cause__ or current.__context__
    return False
