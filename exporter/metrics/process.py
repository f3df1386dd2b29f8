"""`process_*` and `python_*`: prometheus_client's own process, platform and GC collectors.

Their names and labels are prometheus_client's, as dashboards for Python services expect
them. They change on every scrape (CPU seconds, memory, open files, collections), so they
are not part of the page cached between changes of the store (metrics/page.py): each
request renders them afresh, a few hundred bytes, through prometheus_client's exposition.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

log = logging.getLogger(__name__)

EOF_LINE = b"# EOF\n"


class ProcessMetrics:
    """The three collectors on a registry of their own (never the global one); `proc` and
    `platform` are the collectors' own sources, for tests to point at fixtures."""

    def __init__(self, proc: str = "/proc", platform: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(proc=proc, registry=self.registry)
        PlatformCollector(registry=self.registry, platform=platform)
        GCCollector(registry=self.registry)  # registers itself on CPython only
        self._failed = False

    def render(self, openmetrics: bool = False) -> bytes:
        """The families' text, without OpenMetrics' closing `# EOF` (the page's own last
        line); nothing at all, logged once, if a collector fails: never a failed scrape."""
        try:
            if openmetrics:
                text = generate_openmetrics(self.registry)
                return text[: -len(EOF_LINE)] if text.endswith(EOF_LINE) else text
            text = generate_latest(self.registry)
        except Exception:
            if not self._failed:
                log.exception("process metrics could not be collected; /metrics goes without")
                self._failed = True
            return b""
        self._failed = False
        return text
