"""The job API's life cycle: create, lease, heartbeat, complete, fail, retry, cancel, delete,
the bulk retry and cancel, lease expiry.

Every step is a pure transition (current job -> new job and count deltas, per
docs/contract.md §2 for `source="api"`, and for a completed job its schedule's success)
that the store applies inside one transaction, so a job's state and its counts never
disagree and a refused step (409) writes nothing. Time comes from the injected clock and the
backoff's jitter from an injected random source, so tests move time instead of sleeping. No
Flask and no SQL here.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from exporter.clock import Clock
from exporter.config import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PENDING_JOBS,
)
from exporter.model.counts import Buckets, CountDeltas, CountKind, Outcome, RetryTrigger, observe
from exporter.model.exemplars import ExemplarBoard, ExemplarDeltas
from exporter.model.queue import (
    API_SOURCE,
    IDEMPOTENCY_WINDOW_MS,
    CreateKey,
    JobStatus,
    QueueBatch,
    QueueChange,
    QueueJob,
    QueueQuery,
    Transition,
)
from exporter.model.schedules import ScheduleFire
from exporter.model.tracked import Plan, SourceIndex
from exporter.store import Store
from exporter.tracking.plan import LabelGuard

LEASE_EXPIRED_ERROR = "lease expired"
EXPIRE_BATCH = 500
# Jobs a bulk retry or cancel changes per transaction: each transaction stays short (a lease
# or a create waits for at most one batch) and its rows few, however many jobs match.
BULK_BATCH = 200


class UnknownJob(LookupError):
    """No job has this id (404)."""


class JobConflict(Exception):
    """The job is not in a state that allows this step, or the worker holds no lease (409).

    `field` names the request field at fault: `status` for the job's state, `worker` for a
    lease the worker does not hold.
    """

    def __init__(self, message: str, field: str = "status") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: attempt n waits between half and all of
    min(cap, base * 2**(n-1)), so retries of many jobs failing together spread out, yet
    never come sooner than half the nominal delay nor later than the cap."""

    base_s: float = DEFAULT_BACKOFF_BASE
    cap_s: float = DEFAULT_BACKOFF_CAP

    def delay_ms(self, attempt: int, jitter: float) -> float:
        """The wait after `attempt` failed runs; `jitter` is a uniform draw from [0, 1)."""
        nominal = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        return (nominal / 2 + jitter * nominal / 2) * 1000


@dataclass(frozen=True)
class QueuePolicy:
    backoff: Backoff = field(default_factory=Backoff)
    default_max_attempts: int = DEFAULT_MAX_ATTEMPTS
    default_lease_s: float = DEFAULT_LEASE_SECONDS
    buckets: Buckets = field(default_factory=Buckets)
    max_pending: int = DEFAULT_MAX_PENDING_JOBS  # creates beyond: QueueFull


class QueueFull(Exception):
    """As many jobs are pending as the policy allows (429): a runaway producer or a
    thousand one-second schedules fill the store no further."""


# The pending count is read from the store at most this often; creates in between are
# added to it, and finished leases only show at the next read (so the cap errs on the
# side of refusing, by at most a second's worth of leases).
PENDING_READ_EVERY_S = 1.0


# --- pure transitions ------------------------------------------------------------------


def start_run(job: QueueJob, worker: str, now_ms: float, lease_s: float, buckets: Buckets):
    """Lease a due pending job: a run starts; queue wait is observed on the first start only."""
    counts = CountDeltas()
    exemplars: ExemplarDeltas = {}
    counts[(*job.series, CountKind.STARTED, "")] += 1
    counts[(*job.series, CountKind.PENDING, "")] -= 1
    if job.attempts == 0:
        wait_s = (now_ms - job.created_ms) / 1000
        observe(
            counts,
            buckets,
            job.series,
            CountKind.QUEUE_WAIT_BUCKET,
            CountKind.QUEUE_WAIT_SUM,
            wait_s,
            job_id=job.id,
            at_ms=now_ms,
            exemplars=exemplars,
        )
    leased = replace(
        job,
        status=JobStatus.RUNNING,
        attempts=job.attempts + 1,
        worker=worker,
        started_ms=now_ms,
        finished_ms=None,
        next_attempt_ms=None,
        lease_expires_ms=now_ms + lease_s * 1000,
    )
    return QueueChange(leased, counts, exemplars=exemplars)


def check_lease(job: QueueJob, worker: str, now_ms: float) -> None:
    """Raise JobConflict unless `worker` holds a live lease on `job`."""
    if job.status != JobStatus.RUNNING:
        raise JobConflict(f"job {job.id} is {job.status}, not running")
    if job.worker != worker:
        raise JobConflict(f"job {job.id} is leased to another worker, not {worker!r}", "worker")
    if job.lease_expires_ms is not None and job.lease_expires_ms < now_ms:
        raise JobConflict(f"the lease of {worker!r} on job {job.id} has expired", "worker")


def extend_lease(job: QueueJob, worker: str, now_ms: float, lease_s: float) -> QueueChange:
    check_lease(job, worker, now_ms)
    return QueueChange(replace(job, lease_expires_ms=now_ms + lease_s * 1000))


def complete_run(
    job: QueueJob, worker: str, result: bytes | None, now_ms: float, buckets: Buckets
) -> QueueChange:
    """The run completes; a job a schedule fired is that schedule's latest success."""
    check_lease(job, worker, now_ms)
    counts, exemplars = _finish_counts(job, Outcome.COMPLETED, now_ms, buckets)
    done = replace(
        job, status=JobStatus.COMPLETED, result=result, finished_ms=now_ms, lease_expires_ms=None
    )
    return QueueChange(done, counts, schedule_success_ms=now_ms, exemplars=exemplars)


def fail_run(
    job: QueueJob,
    worker: str,
    error: str,
    retryable: bool,
    now_ms: float,
    policy: QueuePolicy,
    jitter: float,
) -> QueueChange:
    """The run fails (counted `failed`); with attempts left and `retryable`, it is requeued."""
    check_lease(job, worker, now_ms)
    counts, exemplars = _finish_counts(job, Outcome.FAILED, now_ms, policy.buckets)
    failed = replace(job, last_error=error, finished_ms=now_ms, lease_expires_ms=None)
    if retryable and job.attempts < job.max_attempts:
        return replace(_requeue(failed, counts, now_ms, policy, jitter), exemplars=exemplars)
    return QueueChange(replace(failed, status=JobStatus.FAILED), counts, exemplars=exemplars)


def expire_lease(job: QueueJob, now_ms: float, policy: QueuePolicy, jitter: float) -> QueueChange:
    """A lease ran out: the run ends `lost` (no duration: nobody knows when it stopped)."""
    if (
        job.status != JobStatus.RUNNING
        or job.lease_expires_ms is None
        or job.lease_expires_ms >= now_ms
    ):
        return QueueChange(job)  # a worker finished or extended it meanwhile
    counts = CountDeltas()
    counts[(*job.series, CountKind.FINISHED, Outcome.LOST)] += 1
    lost = replace(job, last_error=LEASE_EXPIRED_ERROR, finished_ms=now_ms, lease_expires_ms=None)
    if job.attempts < job.max_attempts:
        return _requeue(lost, counts, now_ms, policy, jitter)
    return QueueChange(replace(lost, status=JobStatus.FAILED), counts)


def manual_retry(job: QueueJob, now_ms: float) -> QueueChange:
    """A failed job goes back to pending, due now; it gets one more attempt."""
    if job.status != JobStatus.FAILED:
        raise JobConflict(f"job {job.id} is {job.status}; only failed jobs can be retried")
    counts = CountDeltas()
    counts[(*job.series, CountKind.RETRIES, RetryTrigger.MANUAL)] += 1
    counts[(*job.series, CountKind.PENDING, "")] += 1
    pending = replace(
        job, status=JobStatus.PENDING, worker=None, next_attempt_ms=now_ms, lease_expires_ms=None
    )
    return QueueChange(pending, counts)


def cancel_pending(job: QueueJob, now_ms: float) -> QueueChange:
    """A pending job (due, or waiting for a retry) is taken off the queue: it leaves the
    pending count and is counted cancelled; it never ran again, so no run finishes."""
    if job.status != JobStatus.PENDING:
        raise JobConflict(f"job {job.id} is {job.status}; only pending jobs can be cancelled")
    counts = CountDeltas()
    counts[(*job.series, CountKind.PENDING, "")] -= 1
    counts[(*job.series, CountKind.CANCELLED, "")] += 1
    cancelled = replace(
        job,
        status=JobStatus.CANCELLED,
        worker=None,
        finished_ms=now_ms,
        next_attempt_ms=None,
        lease_expires_ms=None,
    )
    return QueueChange(cancelled, counts)


def check_deletable(job: QueueJob) -> QueueChange:
    """A finished job (completed, failed, cancelled) may be deleted; its counts stay."""
    if job.status not in JobStatus.FINISHED:
        raise JobConflict(
            f"job {job.id} is {job.status}; only completed, failed or cancelled jobs can be deleted"
        )
    return QueueChange(job)


def _finish_counts(
    job: QueueJob, outcome: str, now_ms: float, buckets: Buckets
) -> tuple[CountDeltas, ExemplarDeltas]:
    """The run's finish and its duration, with the job as its bucket's exemplar."""
    counts = CountDeltas()
    exemplars: ExemplarDeltas = {}
    counts[(*job.series, CountKind.FINISHED, outcome)] += 1
    seconds = (now_ms - (job.started_ms or now_ms)) / 1000
    observe(
        counts,
        buckets,
        job.series,
        CountKind.DURATION_BUCKET,
        CountKind.DURATION_SUM,
        seconds,
        job_id=job.id,
        at_ms=now_ms,
        exemplars=exemplars,
    )
    return counts, exemplars


def _requeue(
    job: QueueJob, counts: CountDeltas, now_ms: float, policy: QueuePolicy, jitter: float
) -> QueueChange:
    counts[(*job.series, CountKind.RETRIES, RetryTrigger.AUTOMATIC)] += 1
    counts[(*job.series, CountKind.PENDING, "")] += 1
    due = now_ms + policy.backoff.delay_ms(job.attempts, jitter)
    return QueueChange(
        replace(job, status=JobStatus.PENDING, worker=None, next_attempt_ms=due), counts
    )


# --- the queue -------------------------------------------------------------------------


class JobQueue:
    """The job API's operations over a store; safe to call from many threads."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: QueuePolicy | None = None,
        guard: LabelGuard | None = None,
        rng: random.Random | None = None,
        exemplars: ExemplarBoard | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or QueuePolicy()
        self.guard = guard or LabelGuard()
        # Runs' durations and waits, the latest per bucket (docs/monitoring.md, "Exemplars").
        if exemplars is None:
            exemplars = ExemplarBoard(self.policy.buckets.labels)
        self.exemplars = exemplars
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()  # random.Random is not documented thread-safe
        self._labels: SourceIndex | None = None
        self._labels_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending_read_at = -math.inf  # monotonic seconds
        self._pending = 0  # as last read, plus the creates since

    def create(
        self,
        job_type: str,
        name: str,
        payload: bytes | None = None,
        max_attempts: int | None = None,
        *,
        fire: Callable[[str], ScheduleFire] | None = None,
        key: tuple[str, str] | None = None,
    ) -> QueueJob:
        """A new pending job, due now; `pending` +1 in the same transaction.

        `fire` (given the new job's id) is the schedule fire this job is for: the store
        records it in the same transaction and raises FireTaken, writing nothing, when that
        fire already has its job. `key` is an Idempotency-Key and a digest of the request:
        while it holds (IDEMPOTENCY_WINDOW_MS), the job it first made is returned and
        nothing is written (KeyReused when the digest differs). QueueFull when
        `max_pending` jobs are pending.
        """
        return self.create_once(job_type, name, payload, max_attempts, fire=fire, key=key)[0]

    def create_once(
        self,
        job_type: str,
        name: str,
        payload: bytes | None = None,
        max_attempts: int | None = None,
        *,
        fire: Callable[[str], ScheduleFire] | None = None,
        key: tuple[str, str] | None = None,
    ) -> tuple[QueueJob, bool]:
        """`create`, and whether the job is new (False: the one `key` made before)."""
        now_ms = self.clock.now_ms()
        self._make_room()
        claim = None
        if key is not None:
            claim = CreateKey(key[0], key[1], now_ms - IDEMPOTENCY_WINDOW_MS)
        with self._labels_lock:  # the guard's admitted series must not race
            index = self._label_index()
            plan = Plan()
            series = self.guard.labels(index, plan, job_type, name)
            job = QueueJob(
                id=uuid.uuid4().hex,
                type=job_type,
                name=name,
                label_type=series[0],
                label_name=series[1],
                status=JobStatus.PENDING,
                payload=payload,
                result=None,
                attempts=0,
                max_attempts=max_attempts or self.policy.default_max_attempts,
                last_error=None,
                worker=None,
                created_ms=now_ms,
                started_ms=None,
                finished_ms=None,
                next_attempt_ms=now_ms,
                lease_expires_ms=None,
            )
            counts = plan.counts  # holds the folded-jobs count when the guard folded
            counts[(*series, CountKind.PENDING, "")] += 1
            recorded = None if fire is None else fire(job.id)
            created = self.store.queue_insert(QueueChange(job, counts), recorded, claim)
            index.admit(plan.new_series)
        return created, created.id == job.id

    def _make_room(self) -> None:
        with self._pending_lock:
            now = time.monotonic()
            if now - self._pending_read_at >= PENDING_READ_EVERY_S:
                self._pending = self.store.queue_pending()
                self._pending_read_at = now
            if self._pending >= self.policy.max_pending:
                raise QueueFull(
                    f"{self._pending} jobs are pending, as many as --max-pending-jobs allows"
                )
            self._pending += 1

    def get(self, job_id: str) -> QueueJob:
        job = self.store.queue_get(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def list(self, query: QueueQuery) -> tuple[list[QueueJob], int | None]:
        """One page and the cursor of the next (None on the last page)."""
        jobs = self.store.queue_list(replace(query, limit=query.limit + 1))
        if len(jobs) > query.limit:
            jobs = jobs[: query.limit]
            return jobs, jobs[-1].seq
        return jobs, None

    def lease(
        self, worker: str, types: Sequence[str] | None = None, lease_s: float | None = None
    ) -> QueueJob | None:
        """The oldest due pending job (of `types`, if given), now running for `worker`."""
        now_ms = self.clock.now_ms()
        seconds = lease_s or self.policy.default_lease_s
        buckets = self.policy.buckets
        witness = _Witness(lambda job: start_run(job, worker, now_ms, seconds, buckets))
        leased = self.store.queue_lease(list(types) if types else None, now_ms, witness)
        if leased is not None:
            witness.record(self.exemplars)
        return leased

    def heartbeat(self, job_id: str, worker: str, lease_s: float | None = None) -> QueueJob:
        now_ms = self.clock.now_ms()
        seconds = lease_s or self.policy.default_lease_s
        return self._update(job_id, lambda job: extend_lease(job, worker, now_ms, seconds))

    def complete(self, job_id: str, worker: str, result: bytes | None = None) -> QueueJob:
        now_ms = self.clock.now_ms()
        buckets = self.policy.buckets
        return self._update(job_id, lambda job: complete_run(job, worker, result, now_ms, buckets))

    def fail(self, job_id: str, worker: str, error: str, retryable: bool) -> QueueJob:
        now_ms = self.clock.now_ms()
        jitter = self._draw()
        return self._update(
            job_id,
            lambda job: fail_run(job, worker, error, retryable, now_ms, self.policy, jitter),
        )

    def retry(self, job_id: str) -> QueueJob:
        now_ms = self.clock.now_ms()
        return self._update(job_id, lambda job: manual_retry(job, now_ms))

    def cancel(self, job_id: str) -> QueueJob:
        now_ms = self.clock.now_ms()
        return self._update(job_id, lambda job: cancel_pending(job, now_ms))

    def delete(self, job_id: str) -> None:
        """Remove a finished job; JobConflict for a pending or running one. Its counts
        stay, and an Idempotency-Key that made it still holds: a resend of that create
        gets KeyOrphaned (409) until the key expires, rather than a second job."""
        if self.store.queue_delete(job_id, check_deletable) is None:
            raise UnknownJob(job_id)

    def retry_all(self, job_type: str | None = None, name: str | None = None) -> int:
        """Manually retry every failed job (of `job_type` and `name`, when given), as
        `retry` does each: one manual retry counted and `pending` +1 per job, atomically
        with its change, `BULK_BATCH` jobs per transaction. Returns how many.

        `--max-pending-jobs` bounds it: the pending count is read once before, and only as
        many jobs as leave room under the cap are retried (oldest first); the others stay
        failed, for a later retry. QueueFull when none could be retried for want of room.
        """
        room = self.policy.max_pending - self.store.queue_pending()
        now_ms = self.clock.now_ms()
        retried = self._in_batches(
            JobStatus.FAILED, job_type, name, lambda job: manual_retry(job, now_ms), room
        )
        if retried == 0 and self.store.queue_batch(
            QueueBatch(JobStatus.FAILED, job_type, name, limit=1), lambda job: QueueChange(job)
        ):
            raise QueueFull(
                f"{self.policy.max_pending} or more jobs are pending, as many as"
                " --max-pending-jobs allows; no failed job was retried"
            )
        return retried

    def cancel_all(self, job_type: str | None = None, name: str | None = None) -> int:
        """Cancel every pending job (of `job_type` and `name`, when given), as `cancel`
        does each, `BULK_BATCH` jobs per transaction; jobs a lease holds at that moment
        are passed over (they are running). Returns how many."""
        now_ms = self.clock.now_ms()
        return self._in_batches(
            JobStatus.PENDING, job_type, name, lambda job: cancel_pending(job, now_ms)
        )

    def _in_batches(
        self,
        status: str,
        job_type: str | None,
        name: str | None,
        transition: Transition,
        most: float = math.inf,
    ) -> int:
        """Apply `transition` to at most `most` jobs of `status` (and `job_type`, `name`),
        oldest first, `BULK_BATCH` a transaction; returns how many it changed."""
        done = 0
        after_seq = 0
        while done < most:
            limit = int(min(BULK_BATCH, most - done))
            batch = QueueBatch(status, job_type, name, after_seq, limit)
            jobs = self.store.queue_batch(batch, transition)
            done += len(jobs)
            if len(jobs) < limit:
                break
            after_seq = jobs[-1].seq
        return done

    def expire_leases(self) -> int:
        """End every run whose lease ran out as `lost`; returns how many. Never raises for
        an empty queue, so a timer can call it every second."""
        now_ms = self.clock.now_ms()
        expired = 0
        while True:
            jobs = self.store.queue_expire(
                now_ms,
                lambda job: expire_lease(job, now_ms, self.policy, self._draw()),
                EXPIRE_BATCH,
            )
            expired += len(jobs)
            if len(jobs) < EXPIRE_BATCH:
                return expired

    def prune(self, retention_ms: float) -> int:
        """Forget completed, failed and cancelled jobs finished longer ago than the retention period
        (their counts stay, as for sources); returns how many."""
        now_ms = self.clock.now_ms()
        return self.store.queue_prune(now_ms - retention_ms, now_ms - IDEMPOTENCY_WINDOW_MS)

    def _update(self, job_id: str, transition) -> QueueJob:
        witness = _Witness(transition)
        job = self.store.queue_update(job_id, witness)
        if job is None:
            raise UnknownJob(job_id)
        witness.record(self.exemplars)
        return job

    def _label_index(self) -> SourceIndex:
        if self._labels is None:
            index = SourceIndex(API_SOURCE)
            index.admit(self.store.queue_series())
            self._labels = index
        return self._labels

    def _draw(self) -> float:
        """One jitter draw from the injected random source (a seeded or stub one in tests)."""
        with self._rng_lock:
            return self._rng.random()


class _Witness:
    """A transition that remembers the change it made last (a store may run it again when
    it retries a transaction), so its exemplars are recorded once that change is committed,
    never for a change the store refused or rolled back."""

    def __init__(self, transition: Transition) -> None:
        self.transition = transition
        self.change: QueueChange | None = None

    def __call__(self, job: QueueJob) -> QueueChange:
        self.change = None
        self.change = self.transition(job)
        return self.change

    def record(self, board: ExemplarBoard) -> None:
        if self.change is not None:
            board.record(API_SOURCE, self.change.exemplars)
