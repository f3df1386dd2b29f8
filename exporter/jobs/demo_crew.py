"""The demo's job-API traffic: a producer creating jobs in bursts, and workers that are the
client library's own `Worker`, reaching the demo over HTTP as any app's workers would.

Between them every job metric moves: pending, running, started, finished by outcome
(a worker now and then walks away from a lease, as a crashed process would, so its run
counts lost), retries by trigger, duration and queue wait.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

import requests

from exporter.client.worker import RetryableError, Worker
from exporter.config import DEMO_WORKERS
from exporter.jobs.queue import JobConflict, JobQueue
from exporter.jobs.schedules import Scheduler, ScheduleSpec
from exporter.model.queue import JobStatus, QueueQuery
from exporter.store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoKind:
    type: str
    name: str
    median_s: float
    failure_ratio: float
    retryable_ratio: float  # of the failures


KINDS = (
    DemoKind("TASK", "charge_card", 0.6, 0.15, 0.8),
    DemoKind("TASK", "send_invoice", 0.3, 0.05, 1.0),
    DemoKind("EXPORT", "build_csv", 2.5, 0.10, 0.3),
    DemoKind("WEBHOOK", "notify_partner", 0.4, 0.25, 0.9),
)
LEASE_SECONDS = 4.0
ABANDON_RATIO = 0.02  # leases a worker walks away from: they expire and count lost
BURST_EVERY_S = 4.0
IDLE_WAIT_S = 0.3


# A recurring job, so the demo shows schedules and their metrics too; its jobs are run by
# the demo workers like any other send_invoice job.
DEMO_SCHEDULE = ScheduleSpec("TASK", "send_invoice", interval_s=30.0)


def ensure_demo_schedule(schedules: Scheduler) -> None:
    """Create the demo's schedule unless the store has schedules already (a demo restarted
    on a kept store, or one where the user made their own)."""
    try:
        if not schedules.list():
            schedules.create(DEMO_SCHEDULE)
    except StoreError as error:
        log.warning("demo schedule not created: %s", error)


class DemoWorker(Worker):
    """A client Worker that now and then abandons a job, as a crashed process would."""

    def __init__(self, url: str, rng: random.Random, **options: Any) -> None:
        self._rng = rng
        super().__init__(url, {kind.type: self._handle for kind in KINDS}, **options)
        self._kinds: dict[object, DemoKind] = {kind.name: kind for kind in KINDS}
        self._pace = options.get("lease_seconds", LEASE_SECONDS) / LEASE_SECONDS

    def run_once(self) -> bool:
        job = self.lease()
        if job is None:
            return False
        if self._rng.random() >= ABANDON_RATIO:
            self.run_job(job)
        return True

    def _handle(self, payload: Any) -> dict[str, bool]:
        kind = self._kinds.get((payload or {}).get("kind"), KINDS[0])
        typical_s = self._rng.lognormvariate(0, 0.6) * kind.median_s * self._pace
        self._stop.wait(min(self.lease_seconds * 0.8, typical_s))
        if self._rng.random() < kind.failure_ratio:
            if self._rng.random() < kind.retryable_ratio:
                raise RetryableError("demo failure (retryable)")
            raise RuntimeError("demo failure")
        return {"ok": True}


class DemoCrew:
    """One producer over `queue` and `workers` client Workers over `url`, until `stop()`.

    `pace` scales every wait, run time and lease (a test runs the demo 20 times faster).
    """

    def __init__(
        self,
        queue: JobQueue,
        url: str,
        workers: int = DEMO_WORKERS,
        seed: int | None = None,
        pace: float = 1.0,
        token: str | None = None,
    ) -> None:
        self.queue = queue
        self.pace = pace
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers = [
            DemoWorker(
                url,
                random.Random(self._rng.random()),
                name=f"demo-worker-{n}",
                token=token,
                lease_seconds=LEASE_SECONDS * pace,
                poll_interval=IDLE_WAIT_S * pace,
                max_poll_interval=2 * IDLE_WAIT_S * pace,
                shutdown_grace=0.5 * pace,
                session=requests.Session(),
            )
            for n in range(1, workers + 1)
        ]

    def start(self) -> None:
        targets = [("demo-producer", self._produce)]
        targets += [(worker.name, worker.run) for worker in self._workers]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.stop()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _produce(self) -> None:
        number = 0
        while not self._stop.wait(self._rng.uniform(0.5, 1.5) * BURST_EVERY_S * self.pace):
            try:
                for _ in range(self._rng.randint(1, 10)):
                    number += 1
                    kind = self._rng.choice(KINDS)
                    payload = b'{"n": %d, "kind": "%s"}' % (number, kind.name.encode())
                    self.queue.create(kind.type, kind.name, payload)
                if self._rng.random() < 0.5:  # now and then, someone retries a failure
                    failed, _ = self.queue.list(QueueQuery(status=JobStatus.FAILED, limit=1))
                    if failed:
                        self.queue.retry(failed[0].id)
            except (StoreError, JobConflict) as error:
                log.debug("demo producer: %s", error)
