"""The history sampler and its rings: exact rates from cumulative totals, bounded memory.

A fake store hands the sampler snapshots the test writes, and a manual clock moves time, so
every point can be checked exactly and nothing sleeps.
"""

from __future__ import annotations

import math
import tracemalloc

import pytest

from exporter.clock import ManualClock
from exporter.model.counts import CountKind
from exporter.stats.history import SUMMARY, HistoryLimits, HistorySampler, totals_of
from exporter.stats.ring import Tier, Window
from exporter.store import Snapshot, StoreError
from exporter.store.base import RunningStats
from tests.helpers.data import START_MS

HOUR = Window(3600, 2000)


class FakeStore:
    """Counts per (source, type, name) that tests set; every change bumps the version."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
        self.running: dict[tuple[str, str, str], RunningStats] = {}
        self.version = 0
        self.broken = False

    def add(self, key: tuple[str, str, str], family: str, label: str = "", value: float = 1):
        series = self.counts.setdefault(key, {})
        series[(family, label)] = series.get((family, label), 0.0) + value
        self.version += 1

    def set_running(self, key: tuple[str, str, str], count: int) -> None:
        self.running[key] = RunningStats(count, START_MS)
        self.version += 1

    def snapshot(self) -> Snapshot:
        if self.broken:
            raise StoreError("disk on fire")
        copy = {key: dict(values) for key, values in self.counts.items()}
        return Snapshot(self.version, copy, {}, dict(self.running), {})


EMAIL = ("app", "TASK", "send_email")
RESIZE = ("app", "TASK", "resize_image")
HOOK = ("app", "HTTP", "POST /hook")


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def sampler(store: FakeStore, clock: ManualClock) -> HistorySampler:
    return HistorySampler(store, clock)  # type: ignore[arg-type]


def test_totals_sum_every_family_per_view(store: FakeStore):
    store.add(EMAIL, CountKind.STARTED, value=5)
    store.add(EMAIL, CountKind.FINISHED, "completed", 3)
    store.add(EMAIL, CountKind.FINISHED, "failed", 1)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "1.0", 3)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "+Inf", 1)
    store.add(EMAIL, CountKind.DURATION_SUM, "", 12.5)
    store.add(HOOK, CountKind.STARTED, value=2)
    store.add(HOOK, CountKind.FINISHED, "lost", 1)
    store.add(HOOK, CountKind.PENDING, value=4)
    store.set_running(EMAIL, 1)
    summary, per_type, per_name = totals_of(store.snapshot())
    # running, pending, started, completed, failed, lost, duration sum, duration count
    assert per_name[EMAIL] == [1, 0, 5, 3, 1, 0, 12.5, 4]
    assert per_name[HOOK] == [0, 4, 2, 0, 0, 1, 0, 0]
    assert per_type == {"TASK": per_name[EMAIL], "HTTP": per_name[HOOK]}
    assert summary == [1, 4, 7, 3, 1, 1, 12.5, 4]


def test_rates_per_minute_come_from_the_clock_not_from_sampling(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)  # the store is not empty: what comes next is new
    sampler.sample()
    store.add(EMAIL, CountKind.STARTED, value=10)
    store.add(EMAIL, CountKind.FINISHED, "completed", 4)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "5.0", 4)
    store.add(EMAIL, CountKind.DURATION_SUM, "", 10)
    store.set_running(EMAIL, 6)
    clock.advance(30)  # six 5 s steps missed: the rate still covers the real 30 s
    sampler.sample()
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["t"] == [START_MS, START_MS + 30_000]
    assert series["started"] == [None, 20.0]  # 10 jobs in half a minute, not 11
    assert series["completed"] == [None, 8.0]
    assert series["failed"] == [None, 0.0]
    assert series["running"] == [0, 6]
    assert series["avgDuration"] == [None, 2.5]


def test_a_second_sample_in_the_same_step_replaces_the_first(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    sampler.sample()
    clock.advance(5)
    store.add(EMAIL, CountKind.STARTED, value=1)
    sampler.sample()
    clock.advance(2)  # same 5 s slot: the newest point moves instead of adding one
    store.add(EMAIL, CountKind.STARTED, value=6)
    sampler.sample()
    series = sampler.series(sampler.types, "TASK", HOUR)
    assert series["t"] == [START_MS, START_MS + 7_000]
    assert series["started"] == [None, 60.0]  # 7 jobs in 7 s


def test_a_function_that_appears_later_has_zero_history_not_a_gap(sampler, store, clock):
    store.add(EMAIL, CountKind.STARTED, value=100)  # there before the sampler: its past is unknown
    sampler.sample()
    clock.advance(30)
    store.add(EMAIL, CountKind.STARTED, value=3)
    store.add(
        RESIZE, CountKind.STARTED, value=3
    )  # new since the last sample: it had no counts then
    sampler.sample()
    old = sampler.series(sampler.names, EMAIL, HOUR)
    new = sampler.series(sampler.names, RESIZE, HOUR)
    assert old["started"] == [None, 6.0]
    assert new["started"] == [None, 6.0]
    assert new["running"] == [0, 0]


def test_what_an_empty_store_finds_first_is_no_burst(sampler, store, clock):
    sampler.sample()  # nothing yet: a first start, or the demo before its first scrape
    clock.advance(5)
    store.add(EMAIL, CountKind.STARTED, value=300)  # found by the first scrape: started long before
    store.set_running(EMAIL, 4)
    sampler.sample()
    clock.advance(5)
    store.add(EMAIL, CountKind.STARTED, value=2)
    sampler.sample()
    summary = sampler.series(sampler.summary, SUMMARY, HOUR)
    task = sampler.series(sampler.types, "TASK", HOUR)
    email = sampler.series(sampler.names, EMAIL, HOUR)  # 30 s slots: t0 and t5 share one
    assert summary["started"] == task["started"] == [None, None, 24.0]
    assert email["started"] == [None, 24.0]
    summary = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert summary["running"] == [0, 4, 4]  # gauges are known all along


def test_thinning_keeps_the_newest_point_and_every_counted_job(sampler, store, clock):
    for _ in range(721):
        store.add(EMAIL, CountKind.STARTED, value=2)
        sampler.sample()
        clock.advance(5)
    full = sampler.series(sampler.summary, SUMMARY, Window(3600, 2000))
    thin = sampler.series(sampler.summary, SUMMARY, Window(3600, 50))
    assert len(full["t"]) == 721 and len(thin["t"]) <= 50
    assert thin["t"][-1] == full["t"][-1]
    # Each thinned point's rate covers the samples before it: the jobs add up exactly.
    times, rates = thin["t"], thin["started"]
    pairs = zip(rates[1:], times[1:], times[:-1], strict=True)
    counted = sum(rate * (t - before) / 60_000 for rate, t, before in pairs)
    assert counted == pytest.approx(2 * (times[-1] - times[0]) / 5_000)  # 2 jobs every 5 s
    assert all(rate == pytest.approx(24.0) for rate in thin["started"][1:])


def test_the_window_and_the_hour_bound_what_is_kept(sampler, store, clock):
    for _ in range(1000):  # more than an hour of 5 s samples
        sampler.sample()
        clock.advance(5)
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert len(series["t"]) == 721
    assert series["t"][-1] - series["t"][0] == 3600_000
    last_ten_minutes = sampler.series(sampler.summary, SUMMARY, Window(600, 2000))
    assert len(last_ten_minutes["t"]) == 121
    assert sampler.summary.span_s >= 3600 and sampler.names.span_s >= 3600


def test_names_are_sampled_every_thirty_seconds_with_a_fresh_newest_point(sampler, store, clock):
    for _ in range(12):  # one minute of 5 s ticks
        store.add(EMAIL, CountKind.STARTED, value=1)
        sampler.sample()
        clock.advance(5)
    # START_MS lies 20 s into a 30 s slot: the slots end at +10 s, +40 s and +70 s.
    series = sampler.series(sampler.names, EMAIL, HOUR)
    assert series["t"] == [START_MS + 5_000, START_MS + 35_000, START_MS + 55_000]
    assert series["started"] == [None, 12.0, 12.0]


def test_the_clock_going_back_is_ignored_until_it_catches_up(sampler, store, clock):
    sampler.sample()
    clock.advance(-60)
    store.add(EMAIL, CountKind.STARTED)
    sampler.sample()
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["t"] == [START_MS]


def test_an_unreadable_store_skips_the_sample(sampler, store, clock):
    sampler.sample()
    store.broken = True
    clock.advance(5)
    assert sampler.sample() is False
    assert sampler.series(sampler.summary, SUMMARY, HOUR)["t"] == [START_MS]


def test_a_full_tier_evicts_only_a_function_idle_for_the_whole_window(store, clock):
    sampler = HistorySampler(store, clock, HistoryLimits(max_names=2))  # type: ignore[arg-type]
    store.add(EMAIL, CountKind.STARTED)
    store.add(RESIZE, CountKind.STARTED)
    sampler.sample()
    clock.advance(30)
    store.add(HOOK, CountKind.STARTED)
    store.add(EMAIL, CountKind.STARTED)
    sampler.sample()
    assert sampler.series(sampler.names, HOOK, HOUR) is None
    assert sampler.names.untracked == 1
    for _ in range(125):  # RESIZE sits still for over an hour; EMAIL keeps moving
        clock.advance(30)
        store.add(EMAIL, CountKind.STARTED)
        sampler.sample()
    assert set(sampler.names.tracked()) == {EMAIL, HOOK}
    hook = sampler.series(sampler.names, HOOK, HOUR)
    assert hook["running"][0] is None and hook["running"][-1] == 0  # its past is unknown
    assert set(hook["started"]) == {None, 0.0}  # and no made-up burst when it got a ring
    rows, total = sampler.name_list()
    assert [row["name"] for row in rows] == ["send_email", "POST /hook"] and total == 2


def test_name_list_filters_by_text_and_type(sampler, store):
    store.add(EMAIL, CountKind.STARTED, value=3)
    store.add(RESIZE, CountKind.STARTED, value=9)
    store.add(HOOK, CountKind.STARTED, value=1)
    sampler.sample()
    rows, total = sampler.name_list()
    assert total == 3
    assert [row["name"] for row in rows] == ["resize_image", "send_email", "POST /hook"]
    assert sampler.name_list("EMAIL")[0][0]["name"] == "send_email"
    assert [row["name"] for row in sampler.name_list(job_type="HTTP")[0]] == ["POST /hook"]
    assert sampler.name_list(limit=1) == ([rows[0]], 3)


def test_totals_past_what_four_byte_floats_hold_still_give_exact_rates(sampler, store, clock):
    """Slots keep each total's growth, not the total: a source that counted billions of
    jobs still gets rates exact to the job."""
    store.add(EMAIL, CountKind.STARTED, value=3_000_000_001)
    store.add(EMAIL, CountKind.DURATION_SUM, value=9_876_543.125)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "+Inf", 2_000_000_000)
    sampler.sample()
    clock.advance(60)
    store.add(EMAIL, CountKind.STARTED, value=7)
    store.add(EMAIL, CountKind.DURATION_SUM, value=0.375)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "+Inf", 3)
    sampler.sample()
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["started"] == [None, 7.0]
    assert series["avgDuration"] == [None, 0.125]
    assert sampler.summary.latest(SUMMARY)[2] == 3_000_000_008  # newest totals, exact


def test_values_past_two_bytes_are_kept_exactly_and_replaced_in_their_slot(sampler, store, clock):
    """Slots keep counts in 2 bytes; larger values (100,000 running, 70,000 started in one
    step) go aside, and a later sample of the same slot replaces them either way."""
    store.add(EMAIL, CountKind.STARTED, value=10)
    sampler.sample()
    clock.advance(30)
    store.add(EMAIL, CountKind.STARTED, value=70_000)
    store.set_running(EMAIL, 100_000)
    sampler.sample()
    series = sampler.series(sampler.names, EMAIL, HOUR)
    assert series["started"] == [None, 140_000.0] and series["running"] == [0, 100_000]
    clock.advance(5)  # the same 30 s slot: smaller values now
    store.set_running(EMAIL, 3)
    sampler.sample()
    series = sampler.series(sampler.names, EMAIL, HOUR)
    assert series["running"] == [0, 3]
    assert series["started"] == [None, pytest.approx(70_000 / (35 / 60))]


def test_two_thousand_functions_for_an_hour_stay_under_7_megabytes(clock):
    store = FakeStore()
    keys = [("app", f"TYPE{i % 20}", f"job_{i}") for i in range(2000)]
    for key in keys:
        store.add(key, CountKind.STARTED)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sampler = HistorySampler(store, clock)  # type: ignore[arg-type]
        for step in range(3):  # rings are allocated whole, so a few samples fill the memory
            for key in keys[step % 7 :: 7]:
                store.counts[key][(CountKind.STARTED, "")] += 1
            store.version += 1
            sampler.sample()
            clock.advance(30)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(sampler.names.tracked()) == 2000 and len(sampler.types.tracked()) == 20
    assert used < 7 * 1024 * 1024, f"{used / 1024 / 1024:.1f} MB"


def test_tier_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        Tier(0, 10, 1)
    with pytest.raises(ValueError):
        Tier(5, 1, 1)


def test_counters_going_down_give_no_rate(sampler, store, clock):
    store.add(EMAIL, CountKind.STARTED, value=10)
    sampler.sample()
    clock.advance(5)
    store.counts[EMAIL][(CountKind.STARTED, "")] = 2  # a different store was put in place
    store.version += 1
    sampler.sample()
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["started"] == [None, None]
    assert not any(isinstance(v, float) and math.isnan(v) for v in series["running"])
