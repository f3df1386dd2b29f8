"""`/metrics` bytes, rendered once per change and reused (gzip included) until the next.

Prometheus scrapes far more often than most job lists change; between changes a scrape
costs a dictionary lookup instead of a rendering of every series.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Hashable

from prometheus_client.exposition import choose_encoder

from exporter.metrics.text import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render, render_into
from exporter.metrics.view import MetricsView


class MetricsPage:
    def __init__(self, current: Callable[[], tuple[Hashable, Callable[[], MetricsView]]]) -> None:
        self._current = current  # the cache key and a builder of the view it stands for
        self._lock = threading.Lock()
        self._key: Hashable | None = None
        self._rendered: dict[tuple[bool, bool], bytes] = {}

    def render(self, accept: str | None, gzip_ok: bool) -> tuple[bytes, str]:
        """The body (gzipped when `gzip_ok`) and its content type, chosen from `accept`."""
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
        if cached is not None:
            return cached, content_type
        body = _gzipped(view(), openmetrics) if gzip_ok else render(view(), openmetrics)
        with self._lock:
            if self._key == key:
                self._rendered[slot] = body
        return body, content_type


def _gzipped(view: MetricsView, openmetrics: bool) -> bytes:
    """The page gzipped piece by piece as it is rendered, never whole in plain text."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    out: list[bytes] = []
    render_into(lambda piece: out.append(compressor.compress(piece)), view, openmetrics)
    out.append(compressor.flush())
    return b"".join(out)
