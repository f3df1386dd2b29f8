"""What both integrations share: one reporter per process, and the fields of a run's events.

A pool child forked from a worker must not use the reporter its parent made (that one's
sending thread did not survive the fork), so the reporter is made lazily and remade whenever
the process id changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from typing import Any

from exporter.client import JobReporter

log = logging.getLogger(__name__)

MAX_ID = 200
MAX_NAME = 200
MAX_TYPE = 100
MAX_ERROR = 4000  # docs/contract.md §1

SHUTDOWN_FLUSH_S = 2.0  # a stopping worker waits this long at most for its events to go out
# Before a retry's message goes out, its `retrying` is sent, so that the next run's events
# (from another process, perhaps) cannot reach the exporter first. Bounded, and skipped for a
# while after one such wait timed out, so an unreachable exporter slows no retry for long.
RETRY_FLUSH_S = 1.0
RETRY_FLUSH_BACKOFF_S = 30.0


class ProcessReporter:
    """A `JobReporter` per process, made on first use in that process."""

    def __init__(self, url: str, source: str, token: str | None, options: dict[str, Any]):
        self.url = url
        self.source = source
        self.token = token
        self.options = options
        self._lock = threading.Lock()
        self._reporter: JobReporter | None = None
        self._pid = 0
        self._flush_timed_out_at = -RETRY_FLUSH_BACKOFF_S

    def get(self) -> JobReporter:
        reporter = self._reporter
        if reporter is not None and self._pid == os.getpid():
            return reporter
        with self._lock:
            if self._reporter is None or self._pid != os.getpid():
                # The inherited reporter (if any) belongs to the parent: leave it untouched.
                self._reporter = JobReporter(
                    self.url, self.source, token=self.token, **self.options
                )
                self._pid = os.getpid()
            return self._reporter

    def emit(self, item: dict[str, Any]) -> None:
        try:
            self.get().emit(item)
        except Exception:  # reporting must never break a task
            log.exception("job-exporter: could not queue a job event")

    def forget(self) -> None:
        """Drop an inherited reporter without touching it (right after a fork)."""
        with self._lock:
            if self._pid != os.getpid():
                self._reporter = None

    def flush(self, timeout: float = SHUTDOWN_FLUSH_S) -> bool:
        """Send what this process queued, bounded; a process that reported nothing waits not."""
        reporter = self._reporter
        if reporter is None or self._pid != os.getpid():
            return True
        try:
            return reporter.flush(timeout)
        except Exception:
            log.exception("job-exporter: flushing job events failed")
            return False

    def flush_before_retry(self) -> None:
        """Wait (bounded) until the events queued so far were sent, unless such a wait timed
        out recently: the exporter is then likely down, and retries must not crawl."""
        if time.monotonic() - self._flush_timed_out_at < RETRY_FLUSH_BACKOFF_S:
            return
        if not self.flush(RETRY_FLUSH_S):
            self._flush_timed_out_at = time.monotonic()

    def close(self, timeout: float = SHUTDOWN_FLUSH_S) -> None:
        with self._lock:
            reporter, self._reporter = self._reporter, None
            mine = self._pid == os.getpid()
        if reporter is not None and mine:
            reporter.close(timeout)


def now_ms() -> float:
    return round(time.time() * 1000, 3)


def clipped(value: object, limit: int, fallback: str) -> str:
    text = str(value) if value not in (None, "") else fallback
    return text[:limit]


def error_text(exc: BaseException | None, fallback: str = "failed") -> str:
    """The last line Python prints for an exception (`Type: message`), within the limit."""
    if exc is None:
        return fallback
    try:
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    except Exception:
        line = type(exc).__name__
    return (line or type(exc).__name__)[:MAX_ERROR]


def run_item(
    job_id: str,
    name: str,
    job_type: str,
    start_ms: float,
    status: str,
    attempt: int,
    enqueue_ms: float | None = None,
) -> dict[str, Any]:
    """A run's event; `enqueue_ms` is clamped to the start, since another machine's clock
    ahead of ours would otherwise make the item (and its whole batch) invalid."""
    item: dict[str, Any] = {
        "id": job_id[:MAX_ID],
        "name": clipped(name, MAX_NAME, "unknown"),
        "startTimestamp": start_ms,
        "backgroundJobType": clipped(job_type, MAX_TYPE, "default"),
        "isFinished": status in ("completed", "failed"),
        "status": status,
        "attempt": max(1, attempt),
    }
    if enqueue_ms is not None:
        item["enqueueTimestamp"] = min(enqueue_ms, start_ms)
    return item


def finished(item: dict[str, Any], status: str, error: str | None = None) -> dict[str, Any]:
    """The final event of the run that `item` started: `completed`, `failed`, or `retrying`
    (which ends the run too, docs/contract.md §2, so it carries the finish time as well)."""
    done = dict(item)
    done.update(
        isFinished=status in ("completed", "failed"),
        status=status,
        finishTimestamp=max(now_ms(), item["startTimestamp"]),
    )
    if error is not None:
        done["error"] = error[:MAX_ERROR]
    return done
