"""`/metrics` bytes: the job and health families rendered once per change and reused (gzip
included) until the next, and the process families (metrics/process.py) appended fresh to
every answer.

Prometheus scrapes far more often than most job lists change; between changes a scrape
costs a dictionary lookup and the few hundred bytes of process metrics instead of a
rendering of every series. A gzipped answer is the cached compressed bytes, flushed to a
byte boundary, followed by the fresh tail compressed by a copy of the compressor that wrote
them: one gzip stream, whose trailer counts every byte.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder

from exporter.metrics.process import EOF_LINE
from exporter.metrics.text import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render_into
from exporter.metrics.view import MetricsView

GZIP_LEVEL = 5


def _nothing(openmetrics: bool) -> bytes:
    return b""


@dataclass(frozen=True)
class _Rendered:
    """One variant of the cached part: its bytes, and for gzip the compressor after them."""

    body: bytes
    compressor: zlib._Compress | None

    def answer(self, tail: bytes) -> list[bytes]:
        if self.compressor is None:
            return [self.body, tail]
        compressor = self.compressor.copy()  # the cached one stays where the body ends
        return [self.body, compressor.compress(tail) + compressor.flush()]


class MetricsPage:
    def __init__(
        self,
        current: Callable[[], tuple[Hashable, Callable[[], MetricsView]]],
        fresh: Callable[[bool], bytes] = _nothing,
    ) -> None:
        self._current = current  # the cache key and a builder of the view it stands for
        self._fresh = fresh  # families rendered for every answer (OpenMetrics or not)
        self._lock = threading.Lock()
        self._key: Hashable | None = None
        self._rendered: dict[tuple[bool, bool], _Rendered] = {}

    def render(self, accept: str | None, gzip_ok: bool) -> tuple[list[bytes], str]:
        """The body in pieces (gzipped when `gzip_ok`) and its content type, chosen from
        `accept`. The first piece is the cached part, the same bytes until a change."""
        _, negotiated = choose_encoder(accept or "")  # prometheus_client's own negotiation
        openmetrics = negotiated.startswith("application/openmetrics-text")
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        key, view = self._current()
        slot = (openmetrics, gzip_ok)
        with self._lock:
            if key != self._key:
                self._rendered.clear()
                self._key = key
            cached = self._rendered.get(slot)
        if cached is None:
            cached = _render(view(), openmetrics, gzip_ok)
            with self._lock:
                if self._key == key:
                    self._rendered[slot] = cached
        tail = self._fresh(openmetrics)
        return cached.answer(tail + EOF_LINE if openmetrics else tail), content_type


def _render(view: MetricsView, openmetrics: bool, gzip_ok: bool) -> _Rendered:
    """The view's page without its closing `# EOF`, gzipped piece by piece as it is
    rendered when asked (never whole in plain text)."""
    compressor = None
    if gzip_ok:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    held: list[bytes] = []  # the latest piece, kept back: it ends with the `# EOF`

    def add(piece: bytes) -> None:
        out.append(compressor.compress(piece) if compressor else piece)

    def hold(piece: bytes) -> None:
        if held:
            add(held.pop())
        held.append(piece)

    render_into(hold, view, openmetrics)
    last = held.pop() if held else b""
    if openmetrics and last.endswith(EOF_LINE):
        last = last[: -len(EOF_LINE)]
    add(last)
    if compressor is not None:
        out.append(compressor.flush(zlib.Z_SYNC_FLUSH))  # the tail follows on a byte boundary
    return _Rendered(b"".join(out), compressor)
