"""Serve an app's own in-process jobs as a JobInfoBase endpoint, for apps that would rather
be scraped than push.

Running jobs stay listed until they finish; finished ones stay for `keep_finished_s` (keep
it above two scrape intervals, or the exporter may count a job lost before seeing it end).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from exporter.client.tracking import JobTracking


class InProcessJobs(JobTracking):
    def __init__(
        self,
        *,
        keep_finished_s: float = 300.0,
        max_finished: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.keep_finished_ms = keep_finished_s * 1000
        self.max_finished = max_finished
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def emit(self, item: dict[str, Any]) -> None:
        with self._lock:
            if item["isFinished"]:
                self._running.pop(item["id"], None)
                self._finished[item["id"]] = item
                self._finished.move_to_end(item["id"])
            else:
                self._running[item["id"]] = item
            self._evict(self.now_ms())

    def jobs(self) -> list[dict[str, Any]]:
        """The JobInfoBase list an exporter scrapes."""
        with self._lock:
            self._evict(self.now_ms())
            return [*self._running.values(), *self._finished.values()]

    def init_app(self, app: Any, path: str = "/jobs", endpoint: str = "job_exporter_jobs") -> None:
        """Serve `jobs()` at `path` on a Flask app."""
        from flask import jsonify

        app.add_url_rule(path, endpoint, lambda: jsonify(self.jobs()))

    def _evict(self, now_ms: float) -> None:
        finished = self._finished
        while finished:
            oldest = next(iter(finished.values()))
            too_old = now_ms - oldest["finishTimestamp"] > self.keep_finished_ms
            if not too_old and len(finished) <= self.max_finished:
                break
            finished.popitem(last=False)
