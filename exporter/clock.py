"""Time as an injected dependency, so tests and benchmarks move it instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> float:
        """Wall-clock time in epoch milliseconds."""
        ...


class SystemClock:
    def now_ms(self) -> float:
        return time.time() * 1000


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: float = 1_700_000_000_000) -> None:
        self._now_ms = float(start_ms)
        self._lock = threading.Lock()

    def now_ms(self) -> float:
        with self._lock:
            return self._now_ms

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now_ms += seconds * 1000

    def set_ms(self, now_ms: float) -> None:
        with self._lock:
            self._now_ms = float(now_ms)
