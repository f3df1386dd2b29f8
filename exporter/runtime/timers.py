"""Periodic work (scrapes, sweeps, history samples), each on a thread of its own that waits
on the monotonic clock.

APScheduler computes its next run from the wall clock and sleeps on the monotonic one, so a
wall clock stepped back an hour stopped every scrape for that hour. Here a wait is only ever
"this many seconds from now" on a clock that cannot step. A run that outlasts its interval
is followed by the next at once (missed runs are not made up), said once when it starts
overrunning and once when it keeps time again, with the work's name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# How long stopping waits for work in progress: a scrape or sweep takes milliseconds, and
# one waiting on a source that hangs (up to its timeout) or a store that does must not hold
# the exit past the 2 s the process is given after SIGTERM (the threads are daemons).
STOP_WAIT_S = 1.0


@dataclass(frozen=True)
class _Work:
    name: str
    interval_s: float
    run: Callable[[], object]
    first_now: bool


class Timers:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._work: list[_Work] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def every(
        self, name: str, interval_s: float, run: Callable[[], object], first_now: bool = False
    ) -> None:
        """Run `run` every `interval_s` seconds once started; at once first if `first_now`."""
        if interval_s <= 0:
            raise ValueError(f"{name}: interval must be positive, not {interval_s}")
        self._work.append(_Work(name, interval_s, run, first_now))

    def start(self) -> None:
        for work in self._work:
            thread = threading.Thread(target=self._loop, args=(work,), name=work.name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """No new runs; runs in progress finish (up to `wait_s` in all). False when one is
        still running: what it uses must then be left open."""
        self._stopping.set()
        deadline = self._monotonic() + wait_s
        stopped = True
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._monotonic()))
            if thread.is_alive():
                log.warning("%s still running after %g s; not waiting for it", thread.name, wait_s)
                stopped = False
        self._threads.clear()
        return stopped

    def _loop(self, work: _Work) -> None:
        now = self._monotonic()
        next_at = now if work.first_now else now + work.interval_s
        overrunning = False
        while not self._stopping.wait(max(0.0, next_at - self._monotonic())):
            started = self._monotonic()
            try:
                work.run()
            except Exception:  # work catches its own faults; this is a bug, and loud
                log.exception("%s failed", work.name)
            finished = self._monotonic()
            next_at += work.interval_s
            if next_at < finished:
                if not overrunning:
                    log.warning(
                        "%s took %.1f s, longer than its %g s interval: it runs again at once, "
                        "and runs it missed are not made up",
                        work.name,
                        finished - started,
                        work.interval_s,
                    )
                    overrunning = True
                next_at = finished
            elif overrunning:
                log.info("%s keeps its %g s interval again", work.name, work.interval_s)
                overrunning = False
