"""Run job-API jobs: lease, run the handler, complete or fail; stop cleanly on SIGTERM.

The handler runs on its own thread so the worker can extend the lease while it works and
answer a stop signal: a job in hand gets `shutdown_grace` seconds to finish; if it does not,
it is failed back as retryable, so it runs again elsewhere instead of waiting for its lease
to expire. A worker that cannot reach the exporter waits and tries again; it never crashes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


class RetryableError(Exception):
    """Raise from a handler when running the job again may succeed (a timeout, a 503...)."""


class Worker:
    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Handler],
        *,
        name: str | None = None,
        token: str | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 30.0,
        shutdown_grace: float = 10.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        self.api = f"{url.rstrip('/')}/api/v1/jobs"
        self.handlers = dict(handlers)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.shutdown_grace = shutdown_grace
        self.timeout = timeout
        self.completed = 0
        self.failed = 0
        self._session = session or requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._stop = threading.Event()

    def run(self) -> None:
        """Work until `stop()` or SIGTERM/SIGINT (signals are caught on the main thread)."""
        restore = self._catch_signals()
        idle = self.poll_interval
        try:
            while not self._stop.is_set():
                try:
                    worked = self.run_once()
                except requests.RequestException as error:
                    if self._stop.is_set():  # the exporter stopping too (the demo's crew)
                        log.debug("worker %s: stopped, exporter gone: %s", self.name, error)
                        break
                    log.warning("worker %s: exporter unreachable: %s", self.name, error)
                    worked = False
                idle = self.poll_interval if worked else min(idle * 2, self.max_poll_interval)
                if not worked:
                    self._stop.wait(idle)
        finally:
            restore()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> bool:
        """Lease one job and run it; False when none was due."""
        job = self.lease()
        if job is None:
            return False
        self.run_job(job)
        return True

    def lease(self) -> dict[str, Any] | None:
        """Lease the next due job of this worker's types (None when none is due)."""
        body = {
            "worker": self.name,
            "types": sorted(self.handlers),
            "leaseSeconds": self.lease_seconds,
        }
        response = self._post("/lease", body)
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return response.json()

    def run_job(self, job: dict[str, Any]) -> None:
        """Run a leased job's handler, keeping the lease alive, then complete or fail it."""
        outcome: dict[str, Any] = {}
        handler = self.handlers[job["type"]]

        def call() -> None:
            try:
                outcome["result"] = handler(job.get("payload"))
            except BaseException as error:  # the handler's failure is the job's, not ours
                outcome["error"] = error

        runner = threading.Thread(target=call, name=f"job-{job['id']}", daemon=True)
        runner.start()
        heartbeat_every = max(self.lease_seconds / 3, 0.05)
        grace_left = self.shutdown_grace
        while runner.is_alive():
            runner.join(heartbeat_every)
            if not runner.is_alive():
                break
            if self._stop.is_set():
                grace_left -= heartbeat_every
                if grace_left <= 0:
                    self._finish(
                        job,
                        "fail",
                        error="worker shut down before the job finished",
                        retryable=True,
                    )
                    return
            self._heartbeat(job)
        if "error" in outcome:
            error = outcome["error"]
            retryable = isinstance(error, RetryableError)
            self._finish(
                job, "fail", error=f"{type(error).__name__}: {error}"[:2000], retryable=retryable
            )
        else:
            self._finish(job, "complete", result=outcome.get("result"))

    def _finish(self, job: dict[str, Any], verb: str, **body: Any) -> None:
        response = self._post(f"/{job['id']}/{verb}", {"worker": self.name, **body})
        if response.status_code == 409:
            log.warning("worker %s: lost the lease on job %s before it ended", self.name, job["id"])
            return
        response.raise_for_status()
        if verb == "complete":
            self.completed += 1
        else:
            self.failed += 1

    def _heartbeat(self, job: dict[str, Any]) -> None:
        try:
            self._post(
                f"/{job['id']}/heartbeat", {"worker": self.name, "leaseSeconds": self.lease_seconds}
            )
        except requests.RequestException as error:
            log.warning(
                "worker %s: could not extend the lease on %s: %s", self.name, job["id"], error
            )

    def _post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self._session.post(f"{self.api}{path}", json=body, timeout=self.timeout)

    def _catch_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("worker %s: %s received, stopping", self.name, signal.Signals(signum).name)
            self._stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
