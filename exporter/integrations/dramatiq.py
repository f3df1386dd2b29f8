"""Dramatiq messages as job runs (docs/contract.md §6), from a broker middleware.

    from exporter.integrations.dramatiq import JobExporterMiddleware
    broker.add_middleware(JobExporterMiddleware("http://exporter:9188", source="dramatiq"))

Added in the module that builds the broker, it runs in the producers and in every worker
process. What each hook becomes:

- `before_enqueue` (a first send): `pending`, with the message's own timestamp as
  `enqueueTimestamp`.
- `before_process_message`: `running`, attempt `options["retries"] + 1`.
- `after_process_message` without an exception: `completed`.
- With an exception the outcome depends on the `Retries` middleware, which runs *after*
  this one (Dramatiq calls `after_*` hooks in reverse order of addition), so it is settled
  by what Retries does next: it re-enqueues the message (`before_enqueue` sees the same
  message id: `retrying`, with the exception as `error`), or fails it (`before_nack`:
  `failed`); without Retries the message is acked (`before_ack`: `failed` too).
- `after_skip_message`: a message an earlier middleware skipped (an age limit, say) never
  ran; it is reported as one `failed` run, so it does not stay pending forever.

Events are queued, never sent from an actor's thread; each worker process flushes what it
queued when it shuts down (`after_worker_shutdown`, once its threads have finished).
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.common import q_name

from exporter.integrations.common import (
    SHUTDOWN_FLUSH_S,
    ProcessReporter,
    error_text,
    finished,
    now_ms,
    run_item,
)

SKIPPED = "skipped by a middleware before it ran"
FAILED_BEFORE_RUN = "failed by a middleware before it ran"


class JobExporterMiddleware(dramatiq.Middleware):
    """Reports every message this broker processes, and every first send, as job runs."""

    def __init__(
        self,
        url: str,
        source: str = "dramatiq",
        token: str | None = None,
        **reporter_options: Any,
    ) -> None:
        self.reporter = ProcessReporter(url, source, token, reporter_options)
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, Any]] = {}  # running here, by message id
        self._errors: dict[str, str] = {}  # ended in an exception; outcome not known yet

    # -- producer side, and the Retries middleware's re-enqueue ---------------------------

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int
    ) -> None:
        item, error = self._take_errored(message.message_id)
        if item is not None and error is not None:
            self.reporter.emit(finished(item, "retrying", error))
            self.reporter.flush_before_retry()  # before the next run can start anywhere
            return
        if message.options.get("retries"):
            return  # a retry moved out of the delay queue: its run starts when it runs
        self.reporter.emit(
            run_item(
                message.message_id,
                message.actor_name,
                q_name(message.queue_name),
                float(message.message_timestamp),
                "pending",
                1,
                float(message.message_timestamp),
            )
        )

    # -- worker side ---------------------------------------------------------------------

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        item = run_item(
            message.message_id,
            message.actor_name,
            q_name(message.queue_name),
            now_ms(),
            "running",
            int(message.options.get("retries") or 0) + 1,
            float(message.message_timestamp),
        )
        with self._lock:
            self._runs[message.message_id] = item
        self.reporter.emit(item)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            with self._lock:
                if message.message_id in self._runs:
                    self._errors[message.message_id] = error_text(exception)
            return  # Retries decides next: see before_enqueue, before_ack and before_nack
        item = self._take(message.message_id)
        if item is None:
            return
        if message.failed:
            self.reporter.emit(finished(item, "failed", FAILED_BEFORE_RUN))
        else:
            self.reporter.emit(finished(item, "completed"))

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        item = self._take(message.message_id)
        if item is None:
            item = run_item(
                message.message_id,
                message.actor_name,
                q_name(message.queue_name),
                now_ms(),
                "running",
                int(message.options.get("retries") or 0) + 1,
                float(message.message_timestamp),
            )
        self.reporter.emit(finished(item, "failed", SKIPPED))

    def before_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._fail_if_ended_in_error(message)

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._fail_if_ended_in_error(message)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.reporter.flush(SHUTDOWN_FLUSH_S)

    # -- helpers -------------------------------------------------------------------------

    def _fail_if_ended_in_error(self, message: dramatiq.MessageProxy) -> None:
        item, error = self._take_errored(message.message_id)
        if item is not None and error is not None:
            self.reporter.emit(finished(item, "failed", error))

    def _take(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._errors.pop(message_id, None)
            return self._runs.pop(message_id, None)

    def _take_errored(self, message_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The run and its error, if the run ended in an exception; else nothing is taken."""
        with self._lock:
            error = self._errors.pop(message_id, None)
            if error is None:
                return None, None
            return self._runs.pop(message_id, None), error
