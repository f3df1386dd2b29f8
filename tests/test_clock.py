"""The exporter's time line, the watch for wall-clock steps, and the timers that wait on the
monotonic clock (tests/test_faults_clock.py steps a real process's clock)."""

from __future__ import annotations

import logging
import threading

import pytest

from exporter.clock import ClockWatch, ManualClock, SystemClock
from exporter.jobs.schedules import ScheduleSpec
from exporter.runtime.timers import Timers
from tests.helpers.data import START_MS


def test_the_system_time_line_starts_at_the_wall_clock_and_never_goes_back():
    clock = SystemClock()
    readings = [clock.now_ms() for _ in range(1000)]
    assert readings == sorted(readings)
    assert abs(clock.now_ms() - clock.wall_ms()) < 1000


def test_a_step_is_said_once_with_its_size_and_once_when_it_is_undone(caplog):
    clock = ManualClock(START_MS)
    watch = ClockWatch(clock)
    caplog.set_level(logging.WARNING, logger="exporter.clock")
    assert not watch.check()
    clock.step(-3600)
    assert watch.check()
    assert watch.step_s == -3600
    clock.advance(10)  # time goes on; the wall clock keeps its distance
    assert not watch.check()
    clock.step(0.4)  # slewed a little: no step
    assert not watch.check()
    clock.step(3599.6)
    assert watch.check()
    assert watch.step_s == 0
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "stepped back by 3600.0 s" in messages[0]
    assert "agrees" in messages[1]


def test_a_run_that_outlasts_its_interval_is_followed_at_once_and_said_once(caplog):
    caplog.set_level(logging.INFO, logger="exporter.runtime.timers")
    release = threading.Event()
    runs: list[int] = []
    done = threading.Event()

    def work() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            release.wait(timeout=5)  # the first runs hang (a slow source)
        if len(runs) == 6:
            done.set()

    timers = Timers()
    timers.every("scrape of source slow", 0.05, work, first_now=True)
    timers.start()
    try:
        threading.Timer(0.3, release.set).start()
        assert done.wait(timeout=10)
    finally:
        timers.stop()
    messages = [record.getMessage() for record in caplog.records]
    overran = [m for m in messages if "longer than its" in m]
    assert len(overran) == 1 and "scrape of source slow" in overran[0]
    assert any("keeps its 0.05 s interval again" in m for m in messages)


def test_work_that_raises_is_logged_and_runs_again(caplog):
    calls = threading.Semaphore(0)

    def broken() -> None:
        calls.release()
        raise RuntimeError("bug")

    timers = Timers()
    timers.every("history sample", 0.01, broken, first_now=True)
    timers.start()
    try:
        assert calls.acquire(timeout=5) and calls.acquire(timeout=5)
    finally:
        timers.stop()
    assert any("history sample failed" in r.getMessage() for r in caplog.records)


def test_a_non_positive_interval_is_refused():
    with pytest.raises(ValueError, match="interval"):
        Timers().every("x", 0, lambda: None)


def spec(**fields) -> ScheduleSpec:
    return ScheduleSpec(type="TASK", name="nightly", **fields)


def test_cron_follows_the_wall_clock_and_intervals_the_time_line(make_exporter, clock):
    runtime = make_exporter({}).runtime
    schedules = runtime.schedules
    cron = schedules.create(spec(cron="*/10 * * * *"))
    every = schedules.create(spec(interval_s=60.0))
    assert schedules.sweep() == 0
    clock.step(-3600)  # wall clock an hour back: the cron fire is an hour further off
    clock.advance(61)  # a minute goes by: the interval fires, cron waits
    assert schedules.sweep() == 1
    assert schedules.get(every.id).last_fire_ms is not None
    assert schedules.get(cron.id).last_fire_ms is None
    clock.step(3600 + 600)  # the calendar passes the cron time: it fires
    assert schedules.sweep() >= 1
    assert schedules.get(cron.id).last_fire_ms is not None
