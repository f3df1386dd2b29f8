"""Schedules fire at the right instants, exactly once, and follow their missed-fire policy.

Time is a ManualClock moved by the test; the scheduler's sweep is called directly, as the
runtime's one-second sweep would, so no test waits for real minutes to pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from exporter.clock import ManualClock
from exporter.config import Settings
from exporter.jobs.schedules import (
    ScheduleInvalid,
    ScheduleSpec,
    Timing,
    due_instants,
)
from exporter.model.queue import QueueQuery
from exporter.model.schedules import MisfirePolicy, ScheduleConflict, UnknownSchedule
from exporter.runtime.process import Runtime
from tests.helpers.waiting import wait_until

MINUTE_MS = 60_000


def at(*parts: int) -> float:
    """An instant in epoch ms from UTC calendar parts."""
    return datetime(*parts, tzinfo=UTC).timestamp() * 1000


def utc(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def runtime(store_url: str) -> Iterator[Runtime]:
    """A runtime on each kind of store, not started: the test sweeps when it chooses."""
    runtime = Runtime(Settings(store=store_url), clock=ManualClock(at(2026, 1, 1)))
    yield runtime
    runtime.stop()


def jobs_of(runtime: Runtime, name: str | None = None):
    jobs, _ = runtime.queue.list(QueueQuery(name=name, limit=1000))
    return jobs


# --- time arithmetic across DST changes ---------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        # Berlin springs forward at 02:00 CET on 29 March 2026 (01:00 UTC): 02:30 does not
        # exist that day, so the fire comes at the end of the gap, once.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at(2026, 3, 27, 12),
            ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"],
        ),
        # Berlin falls back at 03:00 CEST on 25 October 2026 (01:00 UTC): 02:30 happens
        # twice and fires once, at its first occurrence.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at(2026, 10, 24, 12),
            ["2026-10-25 00:30", "2026-10-26 01:30", "2026-10-27 01:30"],
        ),
        # Hourly across spring forward: every real hour, no hour twice.
        (
            "0 * * * *",
            "Europe/Berlin",
            at(2026, 3, 28, 23, 30),
            ["2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00", "2026-03-29 03:00"],
        ),
        # Hourly across fall back: the repeated 02:00 fires once.
        (
            "0 * * * *",
            "Europe/Berlin",
            at(2026, 10, 24, 22, 30),
            ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 02:00", "2026-10-25 03:00"],
        ),
        # 09:00 New York keeps its wall time: 14:00 UTC in EST, 13:00 UTC in EDT.
        (
            "0 9 * * *",
            "America/New_York",
            at(2026, 3, 6, 12),
            ["2026-03-06 14:00", "2026-03-07 14:00", "2026-03-08 13:00", "2026-03-09 13:00"],
        ),
    ],
)
def test_cron_fire_instants_across_dst(cron: str, zone: str, start: float, expected: list[str]):
    timing = Timing(cron, None, zone, start)
    assert [utc(fire) for fire in due_instants(timing, start, len(expected))] == expected


def test_a_swept_cron_schedule_fires_at_the_right_instants_across_dst(tmp_path):
    """The whole path: a clock moved a minute at a time across both Berlin changes, the
    sweep creating jobs, each job's fire instant recorded by the schedule."""
    clock = ManualClock(at(2026, 3, 28, 12))
    runtime = Runtime(Settings(store=f"sqlite:///{tmp_path / 's.db'}"), clock=clock)
    try:
        schedule = runtime.schedules.create(
            ScheduleSpec("CRON", "nightly", cron="30 2 * * *", timezone="Europe/Berlin")
        )
        fired = []
        for day_start in (at(2026, 3, 28, 12), at(2026, 10, 24, 12)):
            clock.set_ms(day_start)
            runtime.schedules.resume(runtime.schedules.pause(schedule.id).id)  # from now on
            for _ in range(2 * 24 * 60):
                clock.advance(60)
                if runtime.schedules.sweep():
                    fired.append(utc(runtime.schedules.get(schedule.id).last_fire_ms))
        assert fired == [
            "2026-03-29 01:00",
            "2026-03-30 00:30",
            "2026-10-25 00:30",
            "2026-10-26 01:30",
        ]
        assert len(jobs_of(runtime, "nightly")) == 4
        assert runtime.schedules.get(schedule.id).fires_on_time == 4
    finally:
        runtime.stop()


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # Crontab weekdays count from Sunday = 0 (or 7); APScheduler's own count from Monday.
        ("0 9 * * 1", ["Mon 30", "Mon 07", "Mon 14"]),
        ("0 9 * * 0", ["Sun 29", "Sun 06", "Sun 13"]),
        ("0 9 * * 7", ["Sun 29", "Sun 06", "Sun 13"]),
        ("0 9 * * 1-5", ["Tue 24", "Wed 25", "Thu 26"]),
        ("0 9 * * 5-7", ["Fri 27", "Sat 28", "Sun 29"]),
        ("0 9 * * */3", ["Wed 25", "Sat 28", "Sun 29"]),
        ("0 9 * * mon,wed", ["Wed 25", "Mon 30", "Wed 02"]),
        # Both day fields restricted: a day matching either fires (1 December is a Tuesday).
        ("0 9 1 * 1", ["Mon 30", "Tue 01", "Mon 07"]),
        # One of them starting with `*`: both must match (odd days that are Mondays).
        ("0 9 */2 * 1", ["Mon 07", "Mon 21", "Mon 11"]),
    ],
)
def test_crontab_day_rules(cron: str, expected: list[str]):
    start = at(2026, 11, 23, 12)  # a Monday, after 09:00
    fires = due_instants(Timing(cron, None, "UTC", start), start, len(expected))
    assert [datetime.fromtimestamp(f / 1000, UTC).strftime("%a %d") for f in fires] == expected


# --- definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ScheduleSpec("T", "n", cron="61 * * * *"), "cron"),
        (ScheduleSpec("T", "n", cron="* * *"), "cron"),
        (ScheduleSpec("T", "n", cron="0 0 30 2 *"), "cron"),  # 30 February never comes
        (ScheduleSpec("T", "n", cron="0 0 * * 8"), "cron"),
        (ScheduleSpec("T", "n", cron="* * * * * *"), "cron"),
        (ScheduleSpec("T", "n", cron="@daily"), "cron"),
        (ScheduleSpec("T", "n", cron="* * * * *", timezone="Mars/Olympus"), "timezone"),
        (ScheduleSpec("T", "n", cron="* * * * *", timezone="../../etc/passwd"), "timezone"),
        (ScheduleSpec("T", "n", interval_s=0.5), "intervalSeconds"),
        (ScheduleSpec("T", "n"), "cron"),
        (ScheduleSpec("T", "n", cron="* * * * *", interval_s=60), "cron"),
    ],
)
def test_invalid_definitions_name_their_field(tmp_path, spec: ScheduleSpec, field: str):
    runtime = Runtime(Settings(store=f"sqlite:///{tmp_path / 's.db'}"), clock=ManualClock())
    try:
        with pytest.raises(ScheduleInvalid) as raised:
            runtime.schedules.create(spec)
        assert raised.value.field == field
        assert runtime.schedules.list() == []
    finally:
        runtime.stop()


# --- missed fires: a restart after a gap ----------------------------------------------------


def restart(runtime: Runtime, store_url: str, clock: ManualClock) -> Runtime:
    """A new process on the same store, after the old one stopped."""
    runtime.stop()
    return Runtime(Settings(store=store_url), clock=clock)


def test_a_restart_after_a_gap_runs_a_missed_schedule_once(store_url: str):
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url, schedule_misfire_grace=60), clock=clock)
    schedule = runtime.schedules.create(ScheduleSpec("TASK", "sync", interval_s=300))
    clock.advance(300)
    assert runtime.schedules.sweep() == 1  # on time
    clock.advance(3600 + 100)  # down: fires at +10 min ... +65 min missed, the last 100 s ago
    runtime = restart(runtime, store_url, clock)
    try:
        assert runtime.schedules.sweep() == 1  # run once, late
        assert runtime.schedules.sweep() == 0
        after = runtime.schedules.get(schedule.id)
        assert (after.fires_on_time, after.fires_late, after.fires_skipped) == (1, 1, 11)
        # The late fire is the latest missed instant; the next is still on the timetable.
        assert after.last_fire_ms == at(2026, 1, 1) + 65 * MINUTE_MS
        assert after.next_fire_ms == at(2026, 1, 1) + 70 * MINUTE_MS
        assert after.next_fire_ms > clock.now_ms()
        assert len(jobs_of(runtime, "sync")) == 2
        clock.set_ms(after.next_fire_ms + 1000)
        assert runtime.schedules.sweep() == 1  # back on time
        assert runtime.schedules.get(schedule.id).fires_on_time == 2
    finally:
        runtime.stop()


def test_a_restart_after_a_gap_skips_missed_fires_of_a_skip_schedule(store_url: str):
    clock = ManualClock(at(2026, 1, 1, 7))
    runtime = Runtime(Settings(store=store_url), clock=clock)
    schedule = runtime.schedules.create(
        ScheduleSpec(
            "CRON", "report", cron="0 9 * * *", timezone="Europe/Paris", misfire=MisfirePolicy.SKIP
        )
    )
    clock.set_ms(at(2026, 1, 4, 7, 30))  # three 09:00 (08:00 UTC) fires missed
    runtime = restart(runtime, store_url, clock)
    try:
        assert runtime.schedules.sweep() == 0
        after = runtime.schedules.get(schedule.id)
        assert (after.fires_on_time, after.fires_late, after.fires_skipped) == (0, 0, 3)
        assert utc(after.next_fire_ms) == "2026-01-04 08:00"
        assert jobs_of(runtime, "report") == []
        clock.set_ms(at(2026, 1, 4, 8, 0, 5))
        assert runtime.schedules.sweep() == 1
    finally:
        runtime.stop()


def test_fires_within_the_misfire_grace_all_run_on_time(store_url: str):
    """A sweep that comes a little late (a busy replica, a short restart) is not a miss."""
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url, schedule_misfire_grace=60), clock=clock)
    try:
        runtime.schedules.create(
            ScheduleSpec("TASK", "tick", interval_s=10, misfire=MisfirePolicy.SKIP)
        )
        clock.advance(55)  # fires at +10 ... +50: each less than 60 s late
        assert runtime.schedules.sweep() == 5
        assert runtime.schedules.list()[0].fires == (5, 0, 0, 0)
    finally:
        runtime.stop()


# --- several replicas -----------------------------------------------------------------------


def sweep_together(replicas: list[Runtime]) -> list[int]:
    """Every replica sweeps at once (released together by a barrier); jobs each created."""
    start = threading.Barrier(len(replicas))
    created = [0] * len(replicas)

    def sweep(n: int) -> None:
        start.wait()
        created[n] = replicas[n].schedules.sweep()

    threads = [threading.Thread(target=sweep, args=(n,)) for n in range(len(replicas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return created


@pytest.mark.slow
def test_two_replicas_on_one_postgresql_create_exactly_one_job_per_fire(postgres_cluster):
    url = postgres_cluster.new_database()
    clock = ManualClock(at(2026, 1, 1))
    replicas = [Runtime(Settings(store=url), clock=clock) for _ in range(2)]
    try:
        ids = [
            replicas[n % 2].schedules.create(ScheduleSpec("TASK", f"s{n}", interval_s=10)).id
            for n in range(4)
        ]
        fires = 25
        for _ in range(fires):
            clock.advance(10)
            created = sweep_together(replicas)
            assert sum(created) == len(ids)  # between them, one job per schedule's fire
        jobs = jobs_of(replicas[0])
        assert len(jobs) == fires * len(ids)
        for schedule_id in ids:
            assert replicas[1].schedules.get(schedule_id).fires == (fires, 0, 0, 0)
        metrics = replicas[1].collector.view()
        assert sum(row.fires[0] for row in metrics.schedules) == fires * len(ids)
        pending = sum(series.pending for series in metrics.series)
        assert pending == fires * len(ids)  # the job counts agree with the jobs
    finally:
        for replica in replicas:
            replica.stop()


def test_a_fire_already_taken_writes_nothing(store_url: str):
    """The key decides, not the schedule's next fire: a replica with a stale view of the
    schedule (it read it before another replica fired) creates no second job."""
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url), clock=clock)
    try:
        schedule = runtime.schedules.create(ScheduleSpec("TASK", "once", interval_s=60))
        clock.advance(60)
        assert runtime.schedules.sweep() == 1
        before = runtime.store.snapshot().series
        assert runtime.schedules._fire_due(schedule, clock.now_ms()) == 0  # stale copy
        assert len(jobs_of(runtime, "once")) == 1
        assert runtime.store.snapshot().series == before
    finally:
        runtime.stop()


# --- life cycle -----------------------------------------------------------------------------


def test_pause_resume_run_now_delete_and_last_success(store_url: str):
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url), clock=clock)
    scheduler, queue = runtime.schedules, runtime.queue
    try:
        schedule = scheduler.create(ScheduleSpec("TASK", "job", interval_s=60))
        scheduler.pause(schedule.id)
        with pytest.raises(ScheduleConflict):
            scheduler.pause(schedule.id)
        clock.advance(600)
        assert scheduler.sweep() == 0  # paused: nothing fires, nothing is owed later
        job = scheduler.run_now(schedule.id)  # run now works while paused
        assert scheduler.get(schedule.id).fires == (0, 0, 0, 1)
        assert scheduler.get(schedule.id).last_job_id == job.id
        resumed = scheduler.resume(schedule.id)
        assert resumed.next_fire_ms == at(2026, 1, 1) + 11 * MINUTE_MS  # on the old grid
        with pytest.raises(ScheduleConflict):
            scheduler.resume(schedule.id)
        clock.advance(60)
        assert scheduler.sweep() == 1
        assert scheduler.get(schedule.id).last_success_ms is None
        leased = queue.lease("w1")
        assert leased is not None and leased.id == job.id
        clock.advance(5)
        queue.complete(job.id, "w1")
        assert scheduler.get(schedule.id).last_success_ms == clock.now_ms()
        scheduler.delete(schedule.id)
        assert scheduler.list() == []
        assert len(jobs_of(runtime, "job")) == 2  # its jobs stay
        with pytest.raises(UnknownSchedule):
            scheduler.run_now(schedule.id)
    finally:
        runtime.stop()


def test_only_the_schedules_own_jobs_count_as_its_success(store_url: str):
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url), clock=clock)
    try:
        schedule = runtime.schedules.create(ScheduleSpec("TASK", "job", interval_s=60))
        other = runtime.queue.create("TASK", "job")  # same type and name, created by hand
        assert runtime.queue.lease("w1").id == other.id
        runtime.queue.complete(other.id, "w1")
        assert runtime.schedules.get(schedule.id).last_success_ms is None
    finally:
        runtime.stop()


def test_the_number_of_schedules_is_capped(tmp_path):
    runtime = Runtime(
        Settings(store=f"sqlite:///{tmp_path / 's.db'}", max_schedules=2), clock=ManualClock()
    )
    try:
        for n in range(2):
            runtime.schedules.create(ScheduleSpec("T", f"n{n}", interval_s=60))
        with pytest.raises(ScheduleConflict):
            runtime.schedules.create(ScheduleSpec("T", "n2", interval_s=60))
        assert len(runtime.schedules.list()) == 2
    finally:
        runtime.stop()


def test_a_started_runtime_fires_missed_schedules_on_its_first_sweep(tmp_path):
    """Runtime.start() sweeps schedules right away, before the first interval passes."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=url), clock=clock)
    runtime.schedules.create(ScheduleSpec("TASK", "boot", interval_s=300))
    clock.advance(7200 + 100)  # 24 fires missed, the latest 100 s ago
    runtime.stop()
    runtime = Runtime(Settings(store=url, schedule_sweep_interval=3600), clock=clock)
    try:
        runtime.start()
        wait_until(lambda: jobs_of(runtime, "boot"))
        assert len(jobs_of(runtime, "boot")) == 1
        assert runtime.schedules.list()[0].fires == (0, 1, 23, 0)
    finally:
        runtime.stop()


def test_the_oldest_unanswered_fire_is_what_the_overdue_alert_measures(store_url: str):
    """Fires with no completed job keep the oldest instant; a completion clears it; the next
    fire starts it again; a resume starts afresh."""
    clock = ManualClock(at(2026, 1, 1))
    runtime = Runtime(Settings(store=store_url), clock=clock)
    scheduler, queue = runtime.schedules, runtime.queue
    try:
        schedule = scheduler.create(ScheduleSpec("TASK", "beat", interval_s=60))
        assert scheduler.get(schedule.id).unanswered_ms is None
        for _ in range(3):
            clock.advance(60)
            scheduler.sweep()
        first = at(2026, 1, 1) + MINUTE_MS
        assert scheduler.get(schedule.id).unanswered_ms == first
        row = runtime.collector.view().schedules[0]
        assert row.unanswered_s == first / 1000
        job = queue.lease("w1")  # the oldest: the first fire's job
        queue.fail(job.id, "w1", "boom", retryable=False)
        assert scheduler.get(schedule.id).unanswered_ms == first  # a failure answers nothing
        job = queue.lease("w1")
        queue.complete(job.id, "w1")
        assert scheduler.get(schedule.id).unanswered_ms is None
        assert runtime.collector.view().schedules[0].unanswered_s is None
        clock.advance(60)
        scheduler.sweep()
        assert scheduler.get(schedule.id).unanswered_ms == at(2026, 1, 1) + 4 * MINUTE_MS
        scheduler.pause(schedule.id)
        assert scheduler.resume(schedule.id).unanswered_ms is None
    finally:
        runtime.stop()
