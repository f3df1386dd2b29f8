"""Whether the store works, as every operation finds it, said once per change.

The one place that knows the store is failing: every read and write reports here, so
`/readyz`, `job_exporter_store_up` and the log agree, and an outage of a thousand failed
operations is two log lines (when it starts and when it ends), not a thousand. While the
store is unreachable, operations fail at once instead of each waiting out its timeout
(which would hold every request thread); one probe at a time is let through to find out
when it is back. A fault that makes the data untrustworthy (the file deleted, replaced or
corrupted) is fatal: writes stay refused until a restart, because acknowledging them would
lose them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.store.base import StoreDown

log = logging.getLogger(__name__)


class StoreFault:
    """Why the store failed: one word each, for `/readyz`, the log and tests."""

    UNAVAILABLE = "unavailable"  # cannot connect, or the connection broke
    TIMEOUT = "timeout"  # no answer in time: hung, or a lock held too long
    DISK_FULL = "disk_full"
    READ_ONLY = "read_only"
    CORRUPT = "corrupt"  # the file is not a sound database any more
    REPLACED = "replaced"  # the file was deleted, moved or replaced under the process
    ERROR = "error"  # anything else the database refused

    # While one of these holds, operations fail fast; one probe at a time tries for real.
    TRANSIENT = frozenset({UNAVAILABLE, TIMEOUT})
    # These hold until a restart: the data on disk is not the data written.
    FATAL = frozenset({CORRUPT, REPLACED})


# While the store is unreachable, let one operation through this often to see if it is back.
PROBE_EVERY_S = 1.0


@dataclass(frozen=True)
class StoreState:
    up: bool
    fault: str | None = None  # a StoreFault, while down
    message: str | None = None  # what the database said, while down
    down_since: float | None = None  # monotonic seconds
    errors: int = 0  # failed operations since start


class StoreHealth:
    """Thread-safe; `ok` costs one attribute read while the store is up."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._up = True
        self._fault: str | None = None
        self._message: str | None = None
        self._down_since: float | None = None
        self._failed_while_down = 0
        self._probe_at = 0.0
        self._probing = False
        self._from_write = False  # whether a write met the fault (a read cannot end it)
        self.errors = 0
        self.version = 0  # changes whenever the state does (for the /metrics cache)

    @property
    def needs_probe(self) -> bool:
        """Down with a fault only a write can end (or reach): the runtime probes."""
        return not self._up and not self.fatal

    def state(self) -> StoreState:
        with self._lock:
            return StoreState(self._up, self._fault, self._message, self._down_since, self.errors)

    @property
    def up(self) -> bool:
        return self._up

    @property
    def fatal(self) -> bool:
        return self._fault in StoreFault.FATAL

    def admit(self, write: bool) -> bool:
        """Before an operation: raise StoreDown while the store is known to be unreachable
        (and, for writes, while a fatal fault holds), except for one probe a second.
        Returns True when this operation is that probe."""
        if self._up:
            return False
        with self._lock:
            fault = self._fault
            if fault in StoreFault.FATAL and write:
                raise StoreDown(f"store refuses writes ({fault}): {self._message}", fault)
            if fault not in StoreFault.TRANSIENT:
                return False  # a disk full or a refused statement: try each one for real
            if self._from_write and not write and fault != StoreFault.UNAVAILABLE:
                return False  # reads do not wait for a write lock
            now = self._monotonic()
            if self._probing or now < self._probe_at:
                raise StoreDown(f"store {fault}: {self._message}", fault or StoreFault.ERROR)
            self._probing = True
            self._probe_at = now + PROBE_EVERY_S
            return True

    def ok(self, probe: bool = False, *, write: bool) -> None:
        """After an operation that worked. A read does not end a fault that writes met (a
        full disk, a lock held, a read-only file), only one of reaching the store."""
        if probe:
            with self._lock:
                self._probing = False
        if self._up or self.fatal:
            return
        with self._lock:
            if self._up or self._fault in StoreFault.FATAL:
                return
            if not write and self._from_write and self._fault != StoreFault.UNAVAILABLE:
                return
            down_s = self._monotonic() - (self._down_since or 0.0)
            log.warning(
                "store is back after %.1f s (%d operation(s) failed meanwhile)",
                down_s,
                self._failed_while_down,
            )
            self._up, self._fault, self._message, self._down_since = True, None, None, None
            self._failed_while_down = 0
            self.version += 1

    def failed(self, fault: str, message: str, probe: bool = False, *, write: bool) -> None:
        """After an operation that failed; logs when the store goes down or the fault
        changes, never again for the same fault."""
        with self._lock:
            if probe:
                self._probing = False
            self.errors += 1
            self.version += 1
            if self._fault in StoreFault.FATAL and fault not in StoreFault.FATAL:
                self._failed_while_down += 1
                return  # a fatal fault stays what it is until the restart
            changed = self._up or fault != self._fault
            if self._up:
                self._down_since = self._monotonic()
                self._failed_while_down = 0
            self._up, self._fault, self._message = False, fault, message
            self._from_write = write
            self._failed_while_down += 1
            if fault in StoreFault.TRANSIENT:
                self._probe_at = self._monotonic() + PROBE_EVERY_S
        if changed:
            if fault in StoreFault.FATAL:
                log.error("store fault (%s): %s; writes refused until a restart", fault, message)
            else:
                log.error("store failing (%s): %s", fault, message)
