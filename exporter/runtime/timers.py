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
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# How long stopping waits for work in progress: a scrape or sweep takes milliseconds, and
# one waiting on a source that hangs (up to its timeout) or a store that does must not hold
# the exit past the 2 s the process is given after SIGTERM (the threads are daemons).
STOP_WAIT_S = 1.0
# How long cancelling one piece of work (a reload dropping a source) waits for its run in
# progress; the process keeps running, so a scrape gets up to its timeout.
CANCEL_WAIT_S = 30.0


@dataclass
class _Work:
    name: str
    interval_s: float
    run: Callable[[], object]
    first_now: bool
    cancelled: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None  # once started


class Timers:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._work: dict[str, _Work] = {}
        self._started = False

    def every(
        self, name: str, interval_s: float, run: Callable[[], object], first_now: bool = False
    ) -> None:
        """Run `run` every `interval_s` seconds once started (at once if started already);
        at once first if `first_now`. Names are unique: they are what `cancel` takes."""
        if interval_s <= 0:
            raise ValueError(f"{name}: interval must be positive, not {interval_s}")
        work = _Work(name, interval_s, run, first_now)
        with self._lock:
            if name in self._work:
                raise ValueError(f"{name}: already running")
            self._work[name] = work
            if self._started:
                self._launch(work)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for work in self._work.values():
                self._launch(work)

    def cancel(self, name: str) -> None:
        """No more runs of `name`; a run in progress finishes first (up to CANCEL_WAIT_S)."""
        with self._lock:
            work = self._work.pop(name)
        self._join([work], CANCEL_WAIT_S)

    def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """No new runs; runs in progress finish (up to `wait_s` in all). False when one is
        still running: what it uses must then be left open."""
        with self._lock:
            work, self._work = list(self._work.values()), {}
            self._started = False
        return self._join(work, wait_s)

    def _launch(self, work: _Work) -> None:
        thread = threading.Thread(target=self._loop, args=(work,), name=work.name, daemon=True)
        work.thread = thread
        thread.start()

    def _join(self, works: list[_Work], wait_s: float) -> bool:
        """Whether every run in progress finished within `wait_s`."""
        for work in works:
            work.cancelled.set()
        deadline = self._monotonic() + wait_s
        finished = True
        for work in works:
            if work.thread is None:
                continue
            work.thread.join(max(0.0, deadline - self._monotonic()))
            if work.thread.is_alive():
                log.warning("%s still running after %g s; not waiting for it", work.name, wait_s)
                finished = False
        return finished

    def _loop(self, work: _Work) -> None:
        now = self._monotonic()
        next_at = now if work.first_now else now + work.interval_s
        overrunning = False
        while not work.cancelled.wait(max(0.0, next_at - self._monotonic())):
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
