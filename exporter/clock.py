"""Time as an injected dependency, so tests and benchmarks move it instead of sleeping.

The exporter keeps its own time line: the wall clock as it read at start, carried forward
by a clock that never steps (CLOCK_BOOTTIME, which also counts a suspended machine's
sleep). Every stamp and deadline it keeps (leases, lost-after, retention, backoff, history,
scrape times) is on that line, so an NTP step, `date -s` or a VM's clock correction moves
no deadline and makes no duration negative. Only cron schedules read the wall clock as it
is now, since "every day at 02:00" means the calendar. A step shows as the difference
between the two (`job_exporter_clock_step_seconds`, logged once per change); a restart
adopts the wall clock again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)


def _steady_s() -> float:
    """Seconds on a clock that never steps and keeps counting through a suspend."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Clock(Protocol):
    def now_ms(self) -> float:
        """The exporter's time line, in epoch milliseconds: stamps and deadlines."""
        ...

    def wall_ms(self) -> float:
        """The system's wall clock right now, in epoch milliseconds: the calendar."""
        ...


class SystemClock:
    def __init__(self) -> None:
        self._origin_ms = time.time() * 1000
        self._origin_steady_s = _steady_s()

    def now_ms(self) -> float:
        return self._origin_ms + (_steady_s() - self._origin_steady_s) * 1000

    def wall_ms(self) -> float:
        return time.time() * 1000


class ManualClock:
    """A clock that moves only when told to; `step` moves the wall clock alone."""

    def __init__(self, start_ms: float = 1_700_000_000_000) -> None:
        self._now_ms = float(start_ms)
        self._wall_offset_ms = 0.0
        self._lock = threading.Lock()

    def now_ms(self) -> float:
        with self._lock:
            return self._now_ms

    def wall_ms(self) -> float:
        with self._lock:
            return self._now_ms + self._wall_offset_ms

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now_ms += seconds * 1000

    def set_ms(self, now_ms: float) -> None:
        with self._lock:
            self._now_ms = float(now_ms)

    def step(self, seconds: float) -> None:
        """What an NTP step or `date -s` does: the wall clock jumps, time goes on."""
        with self._lock:
            self._wall_offset_ms += seconds * 1000


# A difference this small between the wall clock and the time line is not a step.
STEP_TOLERANCE_MS = 1000.0


class ClockWatch:
    """Finds steps of the wall clock away from the exporter's time line; `step_s` is how
    far the wall clock is from the line (0 until it steps), changed only by a step."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.step_s = 0.0

    def check(self) -> bool:
        """True when the wall clock stepped (or came back) since the last check; logged."""
        step_ms = self.clock.wall_ms() - self.clock.now_ms()
        if abs(step_ms - self.step_s * 1000) < STEP_TOLERANCE_MS:
            return False
        moved_s = step_ms / 1000 - self.step_s
        self.step_s = step_ms / 1000 if abs(step_ms) >= STEP_TOLERANCE_MS else 0.0
        if self.step_s == 0.0:
            log.warning("the wall clock agrees with the exporter's time line again")
        else:
            log.warning(
                "the wall clock stepped %s by %.1f s; deadlines, stamps and timers keep to "
                "the exporter's own time line, now %.1f s from the wall clock (cron schedules "
                "follow the wall clock; a restart adopts it)",
                "forward" if moved_s > 0 else "back",
                abs(moved_s),
                self.step_s,
            )
        return True
