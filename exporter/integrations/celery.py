"""Celery tasks as job runs (docs/contract.md §6), from Celery's own signals.

    from exporter.integrations.celery import instrument
    instrument(app, "http://exporter:9188", source="celery")

Call it in the module that defines the app, so the producers and every worker (prefork,
`solo`, `threads`) run it. What each signal becomes:

- `before_task_publish` (in the producer): `pending`, and a message header with the publish
  time, which the worker sends as `enqueueTimestamp`.
- `task_prerun`: `running`, attempt `request.retries + 1`.
- A retry: `retrying`, with the exception being handled as `error`. It is sent when the task
  republishes itself (`before_task_publish` in the worker), before the next delivery, a new
  run with a higher attempt, can start in another pool process or thread (`task_retry` fires
  only after that); and it is flushed, bounded, so it reaches the exporter first.
- `task_success`: `completed`; `task_failure`: `failed` with the exception as `error`.

Every handler runs in the process that executes the task, and acts only on runs it saw
start there. When a prefork pool child is killed mid-task, Celery raises `WorkerLostError`
in the *parent* process and sends `task_failure` there; that process never ran the task, so
the handler does nothing. The child's last `running` event stops being refreshed by the
reporter's heartbeats, and the exporter counts the run `lost` once it goes stale (within a
minute), which a `failed` from the parent would contradict.

Events are queued, never sent from a task's own thread; a pool child flushes what it queued
when it exits (`worker_process_shutdown`), and a solo or threads worker at `worker_shutdown`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals  # type: ignore[import-untyped]

from exporter.integrations.common import (
    SHUTDOWN_FLUSH_S,
    ProcessReporter,
    error_text,
    finished,
    now_ms,
    run_item,
)

log = logging.getLogger(__name__)

ENQUEUED_HEADER = "job_exporter_enqueued_ms"
DEFAULT_QUEUE = "celery"
RETRY_REQUESTED = "retry requested"

_SIGNALS = (
    ("before_task_publish", "_published"),
    ("task_prerun", "_started"),
    ("task_retry", "_retried"),
    ("task_success", "_succeeded"),
    ("task_failure", "_failed"),
    ("task_postrun", "_ended"),
    ("worker_process_init", "_forked"),
    ("worker_process_shutdown", "_process_exiting"),
    ("worker_shutdown", "_worker_stopping"),
)


@dataclass
class Instrumentation:
    """The signal handlers of one instrumented app; `close()` disconnects them."""

    app: Celery
    reporter: ProcessReporter
    # Runs started in this process and not yet reported ended, by (task id, attempt): a
    # threads pool may start a retry's next delivery before the first run's retry signal.
    runs: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def connect(self) -> None:
        for signal, handler in _SIGNALS:
            getattr(signals, signal).disconnect(dispatch_uid=self._uid(signal))
            getattr(signals, signal).connect(
                getattr(self, handler), weak=False, dispatch_uid=self._uid(signal)
            )

    def close(self, timeout: float = SHUTDOWN_FLUSH_S) -> None:
        for signal, _ in _SIGNALS:
            getattr(signals, signal).disconnect(dispatch_uid=self._uid(signal))
        self.reporter.close(timeout)

    def _uid(self, signal: str) -> str:
        return f"job-exporter:{signal}:{id(self.app)}"

    def _ours(self, task: Any) -> bool:
        return getattr(task, "app", None) is self.app

    # -- producer side -------------------------------------------------------------------

    def _published(
        self,
        sender: Any = None,
        body: Any = None,
        routing_key: str | None = None,
        headers: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if headers is None:
            return
        info = headers if "task" in headers else body if isinstance(body, dict) else {}
        task_id = info.get("id")
        if not task_id:
            return
        enqueued = now_ms()
        # A retry's message keeps the original publish time (Celery copies custom headers).
        enqueued = headers.setdefault(ENQUEUED_HEADER, enqueued)
        retries = int(info.get("retries") or 0)
        if retries > 0:
            # A task republishing itself for a retry, from inside its run: end that run now,
            # before its next delivery can start anywhere (task_retry comes only after).
            if self._end(str(task_id), retries - 1, "retrying", _handled_error()):
                self.reporter.flush_before_retry()
            return
        name = info.get("task") or sender or "unknown"
        self.reporter.emit(
            run_item(
                str(task_id),
                str(name),
                routing_key or DEFAULT_QUEUE,
                enqueued,
                "pending",
                1,
                enqueued,
            )
        )

    # -- worker side ---------------------------------------------------------------------

    def _started(self, sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if not self._ours(sender) or task_id is None:
            return
        request = sender.request
        attempt = int(request.retries or 0) + 1
        enqueued = getattr(request, ENQUEUED_HEADER, None)
        item = run_item(
            str(task_id),
            str(getattr(request, "shadow", None) or sender.name),
            _queue(request),
            now_ms(),
            "running",
            attempt,
            float(enqueued) if isinstance(enqueued, int | float) else None,
        )
        self.runs[(str(task_id), attempt)] = item
        self.reporter.emit(item)

    def _retried(
        self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any
    ) -> None:
        """Usually the run ended already, when its retry was published; this is for retries
        whose message went out some other way (retry_on_worker_lost, from the parent)."""
        if request is None or not self._ours(sender):
            return
        exc = getattr(reason, "exc", None)
        error = error_text(exc) if exc is not None else str(reason or "retry")
        self._end(request.id, request.retries, "retrying", error)

    def _succeeded(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            request = sender.request
            self._end(request.id, request.retries, "completed")

    def _failed(
        self,
        sender: Any = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        # In a prefork parent (WorkerLostError, hard time limit) no run of ours is known:
        # `_end` finds nothing and the run is left to the exporter's lost rule.
        if not self._ours(sender) or task_id is None:
            return
        self._end(task_id, sender.request.retries, "failed", error_text(exception))

    def _ended(
        self,
        sender: Any = None,
        task_id: str | None = None,
        state: str | None = None,
        retval: Any = None,
        **_: Any,
    ) -> None:
        """A run that ended some other way (Ignore, Reject) ends here, as Celery saw it."""
        if not self._ours(sender) or task_id is None:
            return
        if state == "IGNORED":
            self._end(task_id, sender.request.retries, "completed")
        else:
            error = error_text(retval) if isinstance(retval, BaseException) else str(state)
            self._end(task_id, sender.request.retries, "failed", error)

    def _end(
        self, task_id: str, retries: int | None, status: str, error: str | None = None
    ) -> bool:
        """Report the end of the run (task id, attempt) if it started here; True if it did."""
        item = self.runs.pop((str(task_id), int(retries or 0) + 1), None)
        if item is None:
            return False
        self.reporter.emit(finished(item, status, error))
        return True

    # -- process life --------------------------------------------------------------------

    def _forked(self, **_: Any) -> None:
        self.runs.clear()
        self.reporter.forget()

    def _process_exiting(self, **_: Any) -> None:
        self.reporter.flush(SHUTDOWN_FLUSH_S)

    def _worker_stopping(self, **_: Any) -> None:
        self.reporter.flush(SHUTDOWN_FLUSH_S)


def instrument(
    app: Celery,
    url: str,
    source: str = "celery",
    token: str | None = None,
    **reporter_options: Any,
) -> Instrumentation:
    """Report this app's tasks to the exporter at `url`; `reporter_options` go to
    `JobReporter`. Calling it again for the same app replaces the earlier handlers."""
    instrumentation = Instrumentation(app, ProcessReporter(url, source, token, reporter_options))
    instrumentation.connect()
    return instrumentation


def _handled_error() -> str:
    """The exception being handled while a retry is published (`self.retry(exc=exc)` in an
    `except` block, or `autoretry_for`); Celery's Retry carries it only after publishing."""
    exc = sys.exc_info()[1]
    return error_text(exc) if exc is not None else RETRY_REQUESTED


def _queue(request: Any) -> str:
    """The queue the task was delivered on: the routing key for direct exchanges (Redis,
    RabbitMQ's default), the delivery's queue name where the transport gives one."""
    info = getattr(request, "delivery_info", None) or {}
    return str(info.get("queue") or info.get("routing_key") or DEFAULT_QUEUE)
