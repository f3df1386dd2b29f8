"""Runs, retries and waits of scraped and pushed jobs (docs/contract.md §2), one job at a time.

The planner's short path covers a job's first run starting and finishing, which is nearly
every job. What the extension fields can say beyond that goes here: a job waiting to run
(`pending`) or for a retry (`retrying`), a later `attempt` (a new run, the previous one
ended failed if nobody said so), an `error`, a queue wait. Each job's state steps through
what one observation says, counting as it goes, and is written back as a whole row.

Every run counted started is counted finished exactly once, so `running` (started minus
finished) stays exact; each attempt gives at most one retry and one failed finish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.model.counts import Buckets, CountKind, Outcome, RetryTrigger, observe
from exporter.model.jobinfo import JobInfo
from exporter.model.tracked import (
    PENDING,
    RETRY,
    RUNS,
    FinishRow,
    JobUpdate,
    MissingRow,
    OpenJob,
    Plan,
    Series,
    SourceIndex,
    Touch,
    run_state,
)

# LabelGuard.labels: the (type, name) series a job counts under.
Labeller = Callable[[SourceIndex, Plan, str, str], Series]
CLEAR = ""  # JobUpdate.error that clears the stored error (None keeps it)

# What an observation says, from its status (or isFinished when it has none).
_FINISHED = ("completed", "failed")


def _kind(job: JobInfo) -> str:
    status = job.status
    if status is not None:
        return status
    return "completed" if job.is_finished else "running"


@dataclass(slots=True)
class _State:
    """One job's row while an observation steps it on."""

    start_ms: float
    finish_ms: float | None
    finished_at_ms: float | None
    outcome: str | None
    attempt: int
    waiting: int
    enqueue_ms: float | None
    error: str | None
    since_ms: float  # what OpenJob.start_ms holds: the run's start, or when it was queued


class Runs:
    """Steps jobs through their runs for one plan; the planner calls it per job."""

    def __init__(
        self,
        plan: Plan,
        index: SourceIndex,
        labels: Labeller,
        buckets: Buckets,
        now_ms: float,
        pushed: bool,
    ) -> None:
        self.plan = plan
        self.index = index
        self.source = index.source
        self.labels = labels
        self.buckets = buckets
        self.now_ms = now_ms
        self.reported_ms = now_ms if pushed else None

    # --- the three ways in ----------------------------------------------------------------

    def new(self, job_id: str, job: JobInfo, series: Series | None = None) -> None:
        """A job seen for the first time; `series` when the planner has folded its labels."""
        if series is None:
            series = self._series_of(job)
        state = _State(job.start_timestamp, None, None, None, job.attempt, PENDING, None, None, 0.0)
        if _kind(job) == "pending":
            self._wait(series, state, PENDING, job)
        else:
            # Its first run only if it says so: earlier runs nobody saw waited unseen.
            queued = job.enqueue_timestamp if job.attempt == 1 else None
            self._run(series, state, job, queued_since=queued)
        self.plan.inserts.append(
            (
                self.source,
                job_id,
                job.background_job_type,
                job.name,
                *series,
                state.start_ms,
                state.finish_ms,
                state.finished_at_ms,
                state.outcome,
                0,
                state.attempt,
                state.waiting if state.outcome is None else RUNS,
                state.enqueue_ms,
                state.error or None,
                self.reported_ms,
            )
        )
        if state.outcome is None:
            self._keep_open(job_id, series, state)
        else:
            self.plan.new_finished += 1

    def known(self, job_id: str, job: JobInfo, known: OpenJob) -> None:
        """An open job observed again with something the short path does not handle."""
        series = known.series
        state = _State(
            known.start_ms,
            None,
            None,
            None,
            known.attempt,
            known.waiting,
            None,
            None,
            known.start_ms,
        )
        kind = _kind(job)
        attempt = job.attempt
        changed = True
        if attempt < known.attempt:
            changed = False  # an older run's report, come late: nothing new
        elif known.waiting == RUNS:
            if attempt > known.attempt:
                # A later run is reported, and nobody said this one ended: it failed, and
                # a retry was scheduled.
                end = job.start_timestamp if job.start_timestamp >= known.start_ms else None
                self._end_failed(series, state, end, None, job_id)
                self._retry(series)
                self._wait(series, state, RETRY, job)
                self._after_wait(series, state, job, kind)
            elif kind == "retrying":
                self._end_failed(series, state, job.finish_timestamp, job.error, job_id)
                self._retry(series)
                self._wait(series, state, RETRY, job)
            elif kind in _FINISHED:
                self._close(series, state, job, duration_from=known.start_ms)
            else:
                changed = False  # the same run, still under way (or said pending again)
        else:
            changed = self._after_wait(series, state, job, kind)
        if not changed:
            if known.missing:
                self.plan.missing.append(MissingRow(0, self.source, job_id))
            if self.reported_ms is not None:
                self.plan.touches.append(Touch(self.reported_ms, self.source, job_id))
            return
        self._update(job_id, state)
        if state.outcome is None:
            self._keep_open(job_id, series, state)
        else:
            self.plan.closed.append(job_id)

    def revive(self, job_id: str, job: JobInfo) -> None:
        """A finished job reported under a later attempt: it was retried (its finish
        counted no retry), and a new run follows. Its labels are those it was counted
        under, which the guard admitted then."""
        series = self._series_of(job)
        state = _State(
            job.start_timestamp, None, None, None, job.attempt, RETRY, None, None, self.now_ms
        )
        self._retry(series)
        if _kind(job) == "pending":
            self._count(series, CountKind.PENDING, "", 1)
        else:
            self._run(series, state, job, queued_since=None)
        self._update(job_id, state)
        if state.outcome is None:
            self.plan.reopened.append(job_id)
            self._keep_open(job_id, series, state)

    def vanish(self, job_id: str, known: OpenJob) -> None:
        """A job waiting for a run is gone (absent from two scrapes, or not pushed again in
        time). One never started counted nothing and is forgotten: its row goes, so a
        later report of it is a new job. One waiting for a retry has had its runs counted:
        it stays finished as failed, its last run's outcome."""
        self._count(known.series, CountKind.PENDING, "", -1)
        if known.waiting == PENDING:
            self.plan.deletes.append(job_id)
        else:
            finish = FinishRow(Outcome.FAILED, None, self.now_ms, self.source, job_id)
            self.plan.finishes.append(finish)

    # --- steps ----------------------------------------------------------------------------

    def _after_wait(self, series: Series, state: _State, job: JobInfo, kind: str) -> bool:
        """A job waiting for a run (first or next) observed: whether anything changed."""
        if kind == "pending":
            return False
        if kind == "retrying" and state.waiting == RETRY and job.attempt <= state.attempt:
            return False  # the same wait for the same retry
        first = state.waiting == PENDING
        self._count(series, CountKind.PENDING, "", -1)
        if not first and job.attempt <= state.attempt:
            state.attempt += 1  # the app does not number its runs: we do
        else:
            state.attempt = job.attempt
        queued = None
        if first:  # waited since it was queued, or since it was first seen pending
            queued = job.enqueue_timestamp if job.enqueue_timestamp is not None else state.since_ms
        self._run(series, state, job, queued_since=queued)
        return True

    def _run(
        self, series: Series, state: _State, job: JobInfo, *, queued_since: float | None
    ) -> None:
        """A run starts, as `job` says, and goes as far as `job` says. `queued_since` is
        given for a job's first run only: its queue wait is observed once."""
        start = job.start_timestamp
        self._count(series, CountKind.STARTED, "", 1)
        if queued_since is not None:
            wait_s = (start - queued_since) / 1000
            self._observe(
                series, CountKind.QUEUE_WAIT_BUCKET, CountKind.QUEUE_WAIT_SUM, wait_s, job.id
            )
        if job.enqueue_timestamp is not None:
            state.enqueue_ms = job.enqueue_timestamp
        state.start_ms = state.since_ms = start
        state.waiting = RUNS
        state.finish_ms = None
        kind = _kind(job)
        if kind == "retrying":
            self._end_failed(series, state, job.finish_timestamp, job.error, job.id)
            self._retry(series)
            self._wait(series, state, RETRY, job)
        elif kind in _FINISHED:
            # Started and finished between two observations: a duration only if told.
            self._close(series, state, job, duration_from=None)

    def _wait(self, series: Series, state: _State, waiting: int, job: JobInfo) -> None:
        """Now waiting for a run: counted pending until one starts."""
        self._count(series, CountKind.PENDING, "", 1)
        state.waiting = waiting
        if waiting == PENDING:
            queued = job.enqueue_timestamp
            state.enqueue_ms = queued if queued is not None else self.now_ms
            state.since_ms = state.enqueue_ms
        if job.error is not None:
            state.error = job.error

    def _end_failed(
        self, series: Series, state: _State, end_ms: float | None, error: str | None, job_id: str
    ) -> None:
        """The run under way ended failed (a retry follows)."""
        end = end_ms if end_ms is not None else self.now_ms
        self._count(series, CountKind.FINISHED, Outcome.FAILED, 1)
        seconds = (end - state.start_ms) / 1000
        self._observe(series, CountKind.DURATION_BUCKET, CountKind.DURATION_SUM, seconds, job_id)
        state.finish_ms = end
        if error is not None:
            state.error = error

    def _close(
        self, series: Series, state: _State, job: JobInfo, *, duration_from: float | None
    ) -> None:
        """The run under way finished for good, as `job` says."""
        outcome = Outcome.FAILED if job.failed else Outcome.COMPLETED
        self._count(series, CountKind.FINISHED, outcome, 1)
        finish = job.finish_timestamp
        if duration_from is not None:
            end = finish if finish is not None else self.now_ms
            self._observe(
                series,
                CountKind.DURATION_BUCKET,
                CountKind.DURATION_SUM,
                (end - job.start_timestamp) / 1000,
                job.id,
            )
            finish = end
        elif finish is not None:
            self._observe(
                series,
                CountKind.DURATION_BUCKET,
                CountKind.DURATION_SUM,
                (finish - job.start_timestamp) / 1000,
                job.id,
            )
        state.outcome = outcome
        state.finish_ms = finish
        state.finished_at_ms = self.now_ms
        state.error = job.error if outcome == Outcome.FAILED else CLEAR

    # --- counting and writing -------------------------------------------------------------

    def _retry(self, series: Series) -> None:
        self._count(series, CountKind.RETRIES, RetryTrigger.AUTOMATIC, 1)

    def _count(self, series: Series, kind: str, label: str, n: int) -> None:
        self.plan.counts[(*series, kind, label)] += n

    def _observe(
        self, series: Series, bucket: str, total: str, seconds: float, job_id: str
    ) -> None:
        """One observation of `job_id`, its bucket's exemplar once the plan is written."""
        observe(
            self.plan.counts,
            self.buckets,
            series,
            bucket,
            total,
            seconds,
            job_id=job_id,
            at_ms=self.now_ms,
            exemplars=self.plan.exemplars,
        )

    def _series_of(self, job: JobInfo) -> Series:
        labels = self.labels(self.index, self.plan, job.background_job_type, job.name)
        return self.index.canonical(labels)

    def _update(self, job_id: str, state: _State) -> None:
        """The row as `state` has it; an enqueue time or error it does not know is kept."""
        self.plan.updates.append(
            JobUpdate(
                state.start_ms,
                state.finish_ms,
                state.finished_at_ms,
                state.outcome,
                0,
                state.attempt,
                state.waiting if state.outcome is None else RUNS,
                state.enqueue_ms,
                state.error,
                self.reported_ms,
                self.source,
                job_id,
            )
        )

    def _keep_open(self, job_id: str, series: Series, state: _State) -> None:
        run = run_state(state.attempt, state.waiting, self.reported_ms)
        job = OpenJob(series, state.since_ms, 0, 0, run)
        self.plan.new_open.append((job_id, job))
