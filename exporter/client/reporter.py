"""Push job events to the exporter from a background thread, never blocking the app.

Events wait in a bounded queue; a thread sends them in batches to `POST /api/v1/push`. When
the exporter is down the thread retries with capped exponential backoff and jitter, and the
oldest events are dropped (and counted) once the queue is full. Resending a batch whose
answer was lost counts nothing twice: the exporter remembers jobs by source and id.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import requests

from exporter.client.tracking import JobTracking

log = logging.getLogger(__name__)


class JobReporter(JobTracking):
    def __init__(
        self,
        url: str,
        source: str = "push",
        *,
        token: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        timeout: float = 5.0,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(clock)
        self.push_url = f"{url.rstrip('/')}/api/v1/push"
        self.source = source
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.dropped = 0  # events lost to a full queue
        self.rejected = 0  # events the exporter refused (a 4xx: resending cannot help)
        self.sent = 0
        self._session = session or requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._queue: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._changed = threading.Condition()
        self._closing = False
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="job-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, item: dict[str, Any]) -> None:
        with self._changed:
            if len(self._queue) + self._in_flight >= self.max_queue:
                if self._queue:
                    self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("job reporter queue full: %d events dropped so far", self.dropped)
                if not self._queue and self._in_flight >= self.max_queue:
                    return
            self._queue.append(item)
            if len(self._queue) >= self.batch_size:
                self._changed.notify_all()

    @property
    def queued(self) -> int:
        with self._changed:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was sent (or refused); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._changed.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (one try each, within `timeout`), then stop the thread."""
        if self._closing:
            return
        if self._failures == 0:  # while the exporter is unreachable, waiting is pointless
            self.flush(timeout)
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._queue and not self._closing:
                    self._changed.wait(self.flush_interval)
                if not self._queue:
                    if self._closing:
                        return
                    continue
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
                self._in_flight = len(batch)
            outcome = self._send(batch)
            with self._changed:
                self._in_flight = 0
                if outcome == "retry":
                    self._requeue(batch)
                self._changed.notify_all()
                closing = self._closing
            if outcome == "retry":
                if closing:
                    return  # the app is exiting and the exporter is unreachable: give up
                self._back_off()

    def _send(self, batch: list[dict[str, Any]]) -> str:
        try:
            response = self._session.post(
                self.push_url, params={"source": self.source}, json=batch, timeout=self.timeout
            )
        except requests.RequestException as error:
            return self._failed(f"exporter unreachable: {error}")
        if response.status_code in (408, 429) or response.status_code >= 500:
            return self._failed(f"exporter answered {response.status_code}")
        if response.status_code >= 400:
            self.rejected += len(batch)
            log.error(
                "exporter refused %d job events (%d): %s",
                len(batch),
                response.status_code,
                response.text[:500],
            )
            return "rejected"
        if self._failures:
            log.info("job reporter reached the exporter again")
        self._failures = 0
        self.sent += len(batch)
        return "sent"

    def _failed(self, reason: str) -> str:
        if self._failures == 0:
            log.warning("job reporter: %s; retrying with backoff", reason)
        self._failures += 1
        return "retry"

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        """Put a failed batch back in front, keeping the bound by dropping the oldest."""
        self._queue.extendleft(reversed(batch))
        while len(self._queue) > self.max_queue:
            self._queue.popleft()
            self.dropped += 1

    def _back_off(self) -> None:
        delay = min(self.retry_cap, self.retry_base * 2 ** min(self._failures - 1, 16))
        delay *= random.uniform(0.5, 1.0)
        with self._changed:
            if not self._closing:
                self._changed.wait(delay)
