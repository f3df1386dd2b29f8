"""A simulated app's background jobs, as its JobInfoBase endpoint would list them.

Jobs of several types and names start at random (Poisson arrivals), run for a log-normal
time, and complete or fail; a few get stuck for hours and a few vanish while running (so the
`lost` rule shows). Most jobs carry the optional fields: they wait `pending` in a queue
first (`enqueueTimestamp`), say `finishTimestamp` and `status`, and half of their failures
are retried once (`retrying`, then a second `attempt` that completes), with an `error`;
some are plain JobInfoBase. Time comes from the injected clock and randomness from a seed, so the
same seed and clock give the same jobs.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

from exporter.clock import Clock


@dataclass(frozen=True)
class JobKind:
    type: str
    name: str
    per_minute: float
    median_s: float
    failure_ratio: float


QUEUE_WAIT_MEDIAN_S = 3.0
RETRY_MS = 5_000.0  # the backoff before a retried job's second run
RETRY_RATIO = 0.5  # of the failures of jobs that send the optional fields
ERRORS = {
    "HTTP": "TimeoutError: the partner did not answer in 30 s",
    "TASK": "ConnectionError: SMTP server refused the connection",
    "CRON": "OperationalError: database is locked",
}

KINDS = (
    JobKind("HTTP", "POST /webhooks/stripe", 30, 0.8, 0.03),
    JobKind("HTTP", "callback.order_shipped", 20, 1.5, 0.05),
    JobKind("HTTP", "GET /partners/sync", 6, 4.0, 0.12),
    JobKind("TASK", "send_email", 40, 2.0, 0.02),
    JobKind("TASK", "resize_image", 15, 6.0, 0.04),
    JobKind("TASK", "generate_report", 3, 45.0, 0.08),
    JobKind("CRON", "cleanup_sessions", 2, 20.0, 0.01),
    JobKind("CRON", "nightly_backup", 0.5, 120.0, 0.05),
)


@dataclass(slots=True)
class _Job:
    id: str
    kind: JobKind
    start_ms: float
    end_ms: float
    failed: bool
    vanish_ms: float | None
    extended: bool  # sends the optional fields (status, queue wait, attempts, error)
    enqueue_ms: float  # when it was queued: listed pending from then (extended jobs)
    retry_ms: float | None  # a failed first run ended here; a second run starts RETRY_MS on


class MockJobSource:
    """Thread-safe; each call to `jobs()` advances the simulation to the clock's now."""

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int = 1,
        kinds: tuple[JobKind, ...] = KINDS,
        keep_finished_s: float = 300,
        stuck_ratio: float = 0.01,
        vanish_ratio: float = 0.005,
        plain_ratio: float = 0.2,
        max_jobs: int = 5000,
        history_s: float = 120,
    ) -> None:
        self.clock = clock
        self.kinds = kinds
        self.keep_finished_ms = keep_finished_s * 1000
        self.stuck_ratio = stuck_ratio
        self.vanish_ratio = vanish_ratio
        self.plain_ratio = plain_ratio
        self.max_jobs = max_jobs
        self.max_catch_up_ms = history_s * 1000
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []
        self._serial = 0
        self._now_ms = clock.now_ms() - self.max_catch_up_ms
        self._advance(clock.now_ms())

    def jobs(self) -> list[dict[str, Any]]:
        """The JobInfoBase list the simulated app serves now."""
        with self._lock:
            now_ms = self.clock.now_ms()
            self._advance(now_ms)
            return [self._render(job, now_ms) for job in self._jobs if self._listed(job, now_ms)]

    def _advance(self, now_ms: float) -> None:
        start_ms = max(self._now_ms, now_ms - self.max_catch_up_ms)
        span_ms = now_ms - start_ms
        if span_ms > 0:
            for kind in self.kinds:
                arrivals = self._poisson(kind.per_minute * span_ms / 60_000)
                for _ in range(arrivals):
                    if len(self._jobs) >= self.max_jobs:
                        break
                    self._jobs.append(
                        self._new_job(kind, start_ms + self._random.random() * span_ms)
                    )
        self._now_ms = max(self._now_ms, now_ms)
        self._jobs = [job for job in self._jobs if self._kept(job, now_ms)]

    def _new_job(self, kind: JobKind, arrival_ms: float) -> _Job:
        """A job that arrives (is queued) at `arrival_ms`; one with the optional fields
        starts after a queue wait, a plain one at once."""
        rng = self._random
        self._serial += 1
        seconds = rng.lognormvariate(math.log(kind.median_s), 0.6)
        if rng.random() < self.stuck_ratio:
            seconds = rng.uniform(3, 8) * 3600  # stuck: running for hours
        extended = rng.random() >= self.plain_ratio
        wait_ms = rng.lognormvariate(math.log(QUEUE_WAIT_MEDIAN_S), 0.8) * 1000
        start_ms = arrival_ms + wait_ms if extended else arrival_ms
        vanish_ms = None
        if rng.random() < self.vanish_ratio:
            vanish_ms = start_ms + seconds * 1000 * rng.uniform(0.2, 0.8)
        failed = rng.random() < kind.failure_ratio
        end_ms = float(int(start_ms + seconds * 1000))
        retry_ms = None
        if extended and failed and vanish_ms is None and rng.random() < RETRY_RATIO:
            retry_ms = float(int(start_ms + seconds * 500))  # halfway: the first run fails
            end_ms = retry_ms + RETRY_MS + (end_ms - retry_ms)
            failed = False  # the second run completes
        return _Job(
            id=f"{kind.type.lower()}-{self._serial:07d}-{rng.getrandbits(32):08x}",
            kind=kind,
            start_ms=float(int(start_ms)),
            end_ms=end_ms,
            failed=failed,
            vanish_ms=vanish_ms,
            extended=extended,
            enqueue_ms=float(int(arrival_ms)),
            retry_ms=retry_ms,
        )

    def _listed(self, job: _Job, now_ms: float) -> bool:
        return job.enqueue_ms <= now_ms and (job.vanish_ms is None or now_ms < job.vanish_ms)

    def _kept(self, job: _Job, now_ms: float) -> bool:
        if job.vanish_ms is not None and now_ms >= job.vanish_ms:
            return False
        return now_ms < job.end_ms + self.keep_finished_ms

    @staticmethod
    def _render(job: _Job, now_ms: float) -> dict[str, Any]:
        finished = now_ms >= job.end_ms
        item: dict[str, Any] = {
            "id": job.id,
            "name": job.kind.name,
            "startTimestamp": job.start_ms,
            "backgroundJobType": job.kind.type,
            "isFinished": finished,
        }
        if not job.extended:
            return item
        item["enqueueTimestamp"] = job.enqueue_ms
        if now_ms < job.start_ms:
            item.update(startTimestamp=job.enqueue_ms, status="pending")
            return item
        error = ERRORS.get(job.kind.type, "RuntimeError: the job failed")
        if job.retry_ms is not None and now_ms >= job.retry_ms:
            second_start = job.retry_ms + RETRY_MS
            if now_ms < second_start:
                item.update(status="retrying", finishTimestamp=job.retry_ms, error=error)
                return item
            item.update(startTimestamp=second_start, attempt=2)
        if finished:
            item["finishTimestamp"] = job.end_ms
            item["status"] = "failed" if job.failed else "completed"
            if job.failed:
                item["error"] = error
        else:
            item["status"] = "running"
        return item

    def _poisson(self, mean: float) -> int:
        """Knuth's method for small means, a rounded normal beyond (fast enough for a demo)."""
        if mean <= 0:
            return 0
        if mean > 50:
            return max(0, round(self._random.gauss(mean, math.sqrt(mean))))
        limit = math.exp(-mean)
        count, product = 0, self._random.random()
        while product > limit:
            count += 1
            product *= self._random.random()
        return count
