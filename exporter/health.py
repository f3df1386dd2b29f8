"""The exporter's own view of each source's last scrape: in memory, per process.

Gauges (up, last duration, last success) describe this process's scrapes, so they are not
stored; counters of faults are stored with the job counts so they survive restarts too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SourceHealth:
    up: bool | None = None  # None until the first scrape finished
    reason: str | None = None  # the fault of the last failed scrape
    last_duration_s: float | None = None
    last_success_ms: float | None = None
    # Whether this replica scrapes the source (holds its lease); None until first asked.
    # A replica that stands by serves none of the gauges above for it.
    owned: bool | None = None


class HealthBoard:
    """Thread-safe per-source health; `version` changes whenever anything here does."""

    def __init__(self, sources: list[str]) -> None:
        self._lock = threading.Lock()
        self._sources = {name: SourceHealth() for name in sources}
        self.version = 0
        self.clock_step_s = 0.0  # the wall clock's distance from the exporter's time line

    def sources(self) -> dict[str, SourceHealth]:
        with self._lock:
            return dict(self._sources)

    def record_success(self, source: str, duration_s: float, now_ms: float) -> bool:
        """Record a good scrape; True when the source was not up before (worth a log line)."""
        return self._record(source, True, None, duration_s, now_ms)

    def record_failure(self, source: str, reason: str, duration_s: float) -> bool:
        """Record a failed scrape; True when this is a change of state or of reason."""
        return self._record(source, False, reason, duration_s, None)

    def record_owned(self, source: str, owned: bool) -> None:
        """This replica took the source's lease (owned) or stands by; a replica that loses
        a source forgets its last scrape, which another replica's gauges now describe."""
        with self._lock:
            before = self._sources.get(source, SourceHealth())
            after = replace(before, owned=True) if owned else SourceHealth(owned=False)
            self._sources[source] = after
            self.version += 1

    def add(self, source: str) -> None:
        with self._lock:
            self._sources.setdefault(source, SourceHealth())
            self.version += 1

    def remove(self, source: str) -> None:
        with self._lock:
            self._sources.pop(source, None)
            self.version += 1

    def record_clock_step(self, step_s: float) -> None:
        with self._lock:
            self.clock_step_s = step_s
            self.version += 1

    def _record(
        self, source: str, up: bool, reason: str | None, duration_s: float, now_ms: float | None
    ) -> bool:
        with self._lock:
            before = self._sources.get(source, SourceHealth())
            after = replace(before, up=up, reason=reason, last_duration_s=duration_s)
            if now_ms is not None:
                after = replace(after, last_success_ms=now_ms)
            self._sources[source] = after
            self.version += 1
            return (before.up, before.reason) != (up, reason)
