"""The Celery app the integration tests start real workers on (`celery -A tests.apps.celery_tasks`).

Like a user's app module, it builds the app and instruments it at import. The broker and
the exporter come from the environment the test gives the worker process:
`TEST_CELERY_BROKER`, `TEST_EXPORTER_URL`, `TEST_FLUSH_INTERVAL` (seconds between the
reporter's sends; a long one leaves delivery to the flush at shutdown) and `TEST_NO_SPOOL`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

from exporter.integrations.celery import instrument

WAIT_LIMIT_S = 120  # no task of these waits longer, whatever the test does

app = Celery("tests.apps.celery_tasks", broker=os.environ["TEST_CELERY_BROKER"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)
instrument(
    app,
    os.environ["TEST_EXPORTER_URL"],
    source="celery",
    flush_interval=float(os.environ.get("TEST_FLUSH_INTERVAL", "0.05")),
    # Heartbeats every 2 s ask the exporter for lostAfter=6: a killed run is lost in seconds,
    # not the default's 45 (3 x 15 s), which the client's own tests check.
    heartbeat_interval=float(os.environ.get("TEST_HEARTBEAT_INTERVAL", "2")),
    # Without the client's spool, what a process did not send itself is lost: tests of the
    # integration's own flushes turn it off.
    spool_dir=False if os.environ.get("TEST_NO_SPOOL") else None,
)


class Boom(Exception):
    """The failure the tests expect to read back as the run's error."""


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def stamped(n: int) -> int:
    """`add` under another name, for the test of the publish-time header."""
    return n


@app.task
def fail(message: str) -> None:
    raise Boom(message)


@app.task(bind=True, max_retries=5)
def flaky(self, fail_times: int) -> int:
    """Fails (and asks for a retry, the usual way) `fail_times` times, then succeeds."""
    try:
        if self.request.retries < fail_times:
            raise Boom(f"attempt {self.request.retries + 1} failed")
    except Boom as exc:
        raise self.retry(exc=exc, countdown=0) from exc
    return self.request.retries


@app.task(bind=True, max_retries=1)
def retry_later(self, message: str) -> None:
    """Fails, and its one retry is due in ten minutes: long after the test has looked."""
    try:
        raise Boom(message)
    except Boom as exc:
        raise self.retry(exc=exc, countdown=600) from exc


@app.task
def hold(folder: str, name: str) -> int:
    """Runs until `folder/name.release` exists. Writes its process id to `name.started` first,
    so the test knows it runs, and where (to kill that pool process)."""
    return _hold(Path(folder), name)


@app.task
def victim(folder: str, name: str) -> int:
    """`hold` under another name: the task whose pool process a test kills."""
    return _hold(Path(folder), name)


def _hold(base: Path, name: str) -> int:
    (base / f"{name}.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not (base / f"{name}.release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was never released")
        time.sleep(0.01)  # a task that runs slowly on purpose
    return os.getpid()
