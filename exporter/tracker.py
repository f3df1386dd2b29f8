"""Observed jobs to transitions and count changes, per CONTRACT section 2. Pure: no I/O.

The tracker plans against a `SourceIndex` (what the store knows of one source, held in memory
so a 100,000-job scrape needs no per-job store round trip) and returns a `Plan`. The caller
writes the plan to the store in one transaction and only then applies it to the index, so a
failed write leaves both untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.counts import (
    DURATION_BUCKET,
    DURATION_SUM,
    FINISHED,
    FOLDED_JOBS,
    STARTED,
    Buckets,
    observe,
)
from exporter.models import JobInfo
from exporter.records import (
    FinishRow,
    JobRow,
    MissingRow,
    Plan,
    RunningJob,
    Series,
    SourceIndex,
)

OTHER = "__other__"
LOST_AFTER_MISSING_SCRAPES = 2


@dataclass(frozen=True)
class LabelGuard:
    """Caps distinct (type, name) series per source; the rest fold into `__other__`.

    Admitted series stay admitted forever, so a job is always finished under the labels it
    started with. Once full, a job of a known type keeps its type and loses its name; a job
    of a new type loses both, so a source never holds more than `max_series` + types + 1.
    """

    max_series: int = 500

    def labels(self, index: SourceIndex, plan: Plan, job_type: str, name: str) -> Series:
        wanted = (job_type, name)
        if wanted in index.series or wanted in plan.new_series:
            return wanted
        if len(index.series) + len(plan.new_series) < self.max_series:
            plan.admit(wanted)
            return wanted
        plan.counts[("", "", FOLDED_JOBS, "")] += 1
        known_type = job_type in index.types or job_type in plan.new_types
        folded = (job_type, OTHER) if known_type else (OTHER, OTHER)
        if folded not in index.series:
            plan.admit(folded)
        return folded


def dedupe(jobs: Iterable[JobInfo]) -> dict[str, JobInfo]:
    """The same id twice counts once: the last occurrence wins."""
    return {job.id: job for job in jobs}


def plan_changes(
    index: SourceIndex,
    observed: dict[str, JobInfo],
    now_ms: float,
    *,
    complete_list: bool,
    guard: LabelGuard,
    buckets: Buckets,
) -> Plan:
    """Plan the transitions for `observed` (deduplicated by id).

    `complete_list` is true for a scrape, which lists every job the source has, so running
    jobs absent from it can be counted lost; a push lists only what it mentions.
    """
    plan = Plan()
    source = index.source
    counts = plan.counts
    running_get = index.running.get
    finished_ids = index.finished
    for job_id, job in observed.items():
        known = running_get(job_id)
        if known is not None:
            if job.is_finished:
                _finish_known(plan, source, job_id, job, known, now_ms, buckets)
            elif known.missing:
                plan.missing.append(MissingRow(0, source, job_id))
            continue
        if job_id in finished_ids:
            continue  # counted already; whatever it says now, never count it again
        series = guard.labels(index, plan, job.background_job_type, job.name)
        counts[(*series, STARTED, "")] += 1
        outcome = None
        finished_at = None
        if job.is_finished:
            outcome = "failed" if job.failed else "completed"
            finished_at = now_ms
            counts[(*series, FINISHED, outcome)] += 1
            if job.finish_timestamp is not None:
                seconds = (job.finish_timestamp - job.start_timestamp) / 1000
                observe(counts, buckets, series, DURATION_BUCKET, DURATION_SUM, seconds)
        plan.inserts.append(
            JobRow(
                source, job_id, job.background_job_type, job.name, *series,
                job.start_timestamp, job.finish_timestamp, finished_at, outcome, 0, now_ms,
            )
        )  # fmt: skip
    if complete_list:
        _plan_missing(plan, index, observed, now_ms)
    return plan


def _finish_known(
    plan: Plan,
    source: str,
    job_id: str,
    job: JobInfo,
    known: RunningJob,
    now_ms: float,
    buckets: Buckets,
) -> None:
    outcome = "failed" if job.failed else "completed"
    end_ms = job.finish_timestamp if job.finish_timestamp is not None else now_ms
    plan.counts[(*known.series, FINISHED, outcome)] += 1
    seconds = (end_ms - job.start_timestamp) / 1000
    observe(plan.counts, buckets, known.series, DURATION_BUCKET, DURATION_SUM, seconds)
    plan.finishes.append(FinishRow(outcome, end_ms, now_ms, source, job_id))


def _plan_missing(plan: Plan, index: SourceIndex, observed: dict[str, JobInfo], now_ms: float):
    """Running jobs absent from a complete list: lost after two consecutive absences."""
    for job_id in index.running.keys() - observed.keys():
        known = index.running[job_id]
        missing = known.missing + 1
        if missing >= LOST_AFTER_MISSING_SCRAPES:
            plan.counts[(*known.series, FINISHED, "lost")] += 1
            plan.finishes.append(FinishRow("lost", None, now_ms, index.source, job_id))
        else:
            plan.missing.append(MissingRow(missing, index.source, job_id))


def plan_timeouts(index: SourceIndex, started_before_ms: float, now_ms: float) -> Plan:
    """Pushed jobs have no full list to vanish from: one still running that started before
    `started_before_ms` counts as finished, outcome `lost` (CONTRACT section 2)."""
    plan = Plan()
    for job_id, known in index.running.items():
        if known.start_ms < started_before_ms:
            plan.counts[(*known.series, FINISHED, "lost")] += 1
            plan.finishes.append(FinishRow("lost", None, now_ms, index.source, job_id))
    return plan
