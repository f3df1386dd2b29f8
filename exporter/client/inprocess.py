"""Serve an app's own in-process jobs as a JobInfoBase endpoint, for apps that would rather
be scraped than push.

Running jobs stay listed until they finish; finished ones stay for `keep_finished_s` (keep
it above two scrape intervals, or the exporter may count a job lost before seeing it end).

Under a server of several processes (gunicorn `-w 3`) each scrape reaches one of them, so
each must list every process's jobs: give `shared_dir` (or `$JOB_EXPORTER_MULTIPROC_DIR`),
a folder all of them can write, and the jobs live there (`shared.py`) instead of in memory.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporter.client.shared import ENV_DIR, SharedJobs
from exporter.client.tracking import JobTracking

log = logging.getLogger(__name__)


class InProcessJobs(JobTracking):
    def __init__(
        self,
        *,
        keep_finished_s: float = 300.0,
        max_finished: int = 10_000,
        shared_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.keep_finished_ms = keep_finished_s * 1000
        self.max_finished = max_finished
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        folder = shared_dir or os.environ.get(ENV_DIR)
        self._shared = SharedJobs(Path(folder)) if folder else None
        self._creator_pid = os.getpid()
        self._warned_pid = 0

    def emit(self, item: dict[str, Any]) -> None:
        if self._shared is not None:
            try:
                self._shared.put(item, self.now_ms(), self.keep_finished_ms, self.max_finished)
            except (OSError, sqlite3.Error) as error:  # reporting must never break a job
                log.error("in-process jobs: could not record job %s: %s", item.get("id"), error)
            return
        self._check_fork()
        with self._lock:
            if item["isFinished"]:
                self._running.pop(item["id"], None)
                self._finished[item["id"]] = item
                self._finished.move_to_end(item["id"])
            else:
                self._running[item["id"]] = item
            self._evict(self.now_ms())

    def jobs(self) -> list[dict[str, Any]]:
        """The JobInfoBase list an exporter scrapes. A shared store that cannot be read
        raises: a failed scrape changes no count, an empty list would count jobs lost."""
        if self._shared is not None:
            return self._shared.jobs(self.now_ms(), self.keep_finished_ms, self.max_finished)
        self._check_fork()
        with self._lock:
            self._evict(self.now_ms())
            return [*self._running.values(), *self._finished.values()]

    def init_app(self, app: Any, path: str = "/jobs", endpoint: str = "job_exporter_jobs") -> None:
        """Serve `jobs()` at `path` on a Flask app."""
        from flask import jsonify

        app.add_url_rule(path, endpoint, lambda: jsonify(self.jobs()))

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._creator_pid and pid != self._warned_pid:
            self._warned_pid = pid
            log.warning(
                "in-process jobs: running in a forked process (pid %d) with no shared folder, "
                "so each scrape sees only one process's jobs; set shared_dir or %s",
                pid,
                ENV_DIR,
            )

    def _evict(self, now_ms: float) -> None:
        finished = self._finished
        while finished:
            oldest = next(iter(finished.values()))
            too_old = now_ms - oldest.get("finishTimestamp", now_ms) > self.keep_finished_ms
            if not too_old and len(finished) <= self.max_finished:
                break
            finished.popitem(last=False)
