"""The demo's job-API traffic: a producer creating jobs in bursts and a few workers running
them, so every job metric moves (pending, running, started, finished by outcome, retries by
trigger, duration, queue wait). Small on purpose: a client library's Worker replaces it.

Threads call the queue in-process; they wait on an Event, so `stop()` ends them at once.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

from exporter.queue import JobConflict, JobQueue
from exporter.queue_records import FAILED, QueueQuery
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
ABANDON_RATIO = 0.02  # runs a worker walks away from: their lease expires, counted lost
BURST_EVERY_S = 4.0
IDLE_WAIT_S = 0.3


class DemoCrew:
    """One producer and `workers` workers over `queue`, until `stop()`.

    `pace` scales every wait, run time and lease (a test runs the demo 20 times faster).
    """

    def __init__(
        self, queue: JobQueue, workers: int = 3, seed: int | None = None, pace: float = 1.0
    ) -> None:
        self.queue = queue
        self.workers = workers
        self.pace = pace
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        targets = [("demo-producer", self._produce)] + [
            (f"demo-worker-{n}", self._work) for n in range(1, self.workers + 1)
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _produce(self, _name: str) -> None:
        number = 0
        while not self._stop.wait(self._rng.uniform(0.5, 1.5) * BURST_EVERY_S * self.pace):
            try:
                for _ in range(self._rng.randint(1, 10)):
                    number += 1
                    kind = self._rng.choice(KINDS)
                    self.queue.create(kind.type, kind.name, b'{"n": %d}' % number)
                if self._rng.random() < 0.5:  # now and then, someone retries a failure
                    failed, _ = self.queue.list(QueueQuery(status=FAILED, limit=1))
                    if failed:
                        self.queue.retry(failed[0].id)
            except (StoreError, JobConflict) as error:
                log.debug("demo producer: %s", error)

    def _work(self, name: str) -> None:
        kinds = {(kind.type, kind.name): kind for kind in KINDS}
        lease_s = LEASE_SECONDS * self.pace
        while not self._stop.is_set():
            try:
                job = self.queue.lease(name, lease_s=lease_s)
            except StoreError as error:
                log.debug("%s: %s", name, error)
                job = None
            if job is None:
                self._stop.wait(IDLE_WAIT_S * self.pace)
                continue
            kind = kinds.get((job.type, job.name), KINDS[0])
            typical_s = self._rng.lognormvariate(0, 0.6) * kind.median_s * self.pace
            seconds = min(lease_s * 0.8, typical_s)
            if self._stop.wait(seconds):
                return  # shutting down: the lease expires and the run counts lost
            if self._rng.random() < ABANDON_RATIO:
                continue
            try:
                if self._rng.random() < kind.failure_ratio:
                    retryable = self._rng.random() < kind.retryable_ratio
                    self.queue.fail(job.id, name, "demo failure", retryable)
                else:
                    self.queue.complete(job.id, name, b'{"ok": true}')
            except (StoreError, JobConflict) as error:
                log.debug("%s: %s", name, error)
