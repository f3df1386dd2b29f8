"""The history sampler and its rings: exact rates from cumulative totals, bounded memory.

A fake store hands the sampler snapshots the test writes, and a manual clock moves time, so
every point can be checked exactly and nothing sleeps.
"""

from __future__ import annotations

import math
import random
import sys
import tracemalloc
from array import array

import pytest

from exporter.clock import ManualClock
from exporter.model.counts import Buckets, CountKind
from exporter.stats.history import SUMMARY, HistoryLimits, HistorySampler, totals_of
from exporter.stats.quantiles import quantile
from exporter.stats.ring import FIELDS, Field, Tier, Window
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
    # running, pending, started, completed, failed, lost, duration sum, duration count,
    # then one count per bucket of the default layout (0.1, 0.5, 1, ..., 14400, +Inf)
    no_runs = [0.0] * len(Buckets().bounds)
    email_buckets = [0, 0, 3, *[0] * 9, 1]
    assert per_name[EMAIL] == [1, 0, 5, 3, 1, 0, 12.5, 4, *email_buckets]
    assert per_name[HOOK] == [0, 4, 2, 0, 0, 1, 0, 0, *no_runs]
    assert per_type == {"TASK": per_name[EMAIL], "HTTP": per_name[HOOK]}
    assert summary == [1, 4, 7, 3, 1, 1, 12.5, 4, *email_buckets]


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


def test_the_rings_at_the_most_keys_stay_within_the_stated_budget(clock):
    """history.py's budget: every tier at its most keys (50 types, 2,000 functions), with
    the default 13 buckets, holds what `Tier.key_bytes` says per key, 30 MB in all."""
    store = FakeStore()
    keys = [("app", f"TYPE{i % 50}", f"job_{i}") for i in range(2000)]
    for key in keys:
        store.add(key, CountKind.STARTED)
        store.add(key, CountKind.DURATION_BUCKET, "1.0")
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
    header = sys.getsizeof(array("H"))  # each of a key's four arrays has one
    stated = {  # tier: (bytes per key, keys at most), the docstring's table
        "summary": (32_104, 1),
        "types": (32_104, 50),
        "names": (5_704, 2000),
        "summary_long": (63_784, 1),
        "types_long": (63_784, 50),
        "names_long": (6_760, 2000),
    }
    for name, (per_key, most) in stated.items():
        tier = getattr(sampler, name)
        assert len(tier.tracked()) == most, name
        assert tier.key_bytes() == per_key, name
        assert tier.allocated() <= most * (per_key + 4 * header), name
    budget = sum(per_key * most for per_key, most in stated.values())
    assert budget < 30 * 1000 * 1000
    # Everything else (dicts of keys, last-change times, the totals) stays small beside it.
    assert used < budget * 1.15, f"{used / 1e6:.1f} MB for a budget of {budget / 1e6:.1f} MB"


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


BOUNDS = Buckets().bounds


def bucket_totals(store: FakeStore, key) -> list[float]:
    counts = store.counts.get(key, {})
    return [counts.get((CountKind.DURATION_BUCKET, label), 0.0) for label in Buckets().labels]


def test_each_point_percentile_is_the_quantile_of_the_histogram_difference(sampler, store, clock):
    """The buckets' summed growth over a point's interval is the difference of the histogram
    at its two ends, so every finished run counts once, however the chart is thinned."""
    rng = random.Random(22)
    store.add(HOOK, CountKind.STARTED)
    histogram_at: dict[float, list[float]] = {}
    for _ in range(300):
        for _ in range(rng.randrange(0, 4)):  # some slots see no run finish: a gap there
            label = rng.choice(Buckets().labels)
            store.add(EMAIL, CountKind.DURATION_BUCKET, label, rng.randrange(1, 40))
        sampler.sample()
        histogram_at[clock.now_ms()] = bucket_totals(store, EMAIL)
        clock.advance(rng.choice((1, 2, 5, 5, 7)))  # some samples share a 5 s slot
    checked = 0
    for tier, key in ((sampler.summary, SUMMARY), (sampler.types, "TASK"), (sampler.names, EMAIL)):
        for points in (2000, 37, 5):
            series = sampler.series(tier, key, Window(3600, points))
            times = series["t"]
            for before, after, index in zip(times, times[1:], range(1, len(times)), strict=False):
                ends = zip(histogram_at[before], histogram_at[after], strict=True)
                growth = [b - a for a, b in ends]
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                    expected = quantile(q, BOUNDS, growth)
                    got = series[name][index]
                    if expected is None:
                        assert got is None
                    else:
                        assert got == pytest.approx(expected, abs=1e-4), (name, index)
                        checked += 1
            assert series["p50"][0] is None  # the oldest point has no interval
    assert checked > 300


def test_percentiles_are_null_where_no_run_finished_not_zero(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    sampler.sample()
    clock.advance(5)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "10.0", 4)  # four runs of 5 to 10 s
    sampler.sample()
    clock.advance(5)
    sampler.sample()  # nothing finished in these 5 s
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["p50"] == [None, 7.5, None]
    assert series["p99"] == [None, pytest.approx(9.95), None]


def test_bucket_growth_is_kept_per_slot_and_past_two_bytes(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    sampler.sample()
    clock.advance(5)
    store.add(EMAIL, CountKind.DURATION_BUCKET, "0.1", 70_000)  # past 2 bytes: kept aside
    store.add(EMAIL, CountKind.DURATION_BUCKET, "+Inf", 1)
    sampler.sample()
    ring = sampler.summary.rings[SUMMARY]
    first, inf = ring.column(FIELDS), ring.column(FIELDS + len(BOUNDS) - 1)
    assert first[:2] == [0, 70_000] and inf[:2] == [0, 1]
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["p50"][-1] == pytest.approx(0.1 * 35_000.5 / 70_000, abs=1e-4)
    assert series["p99"][-1] == pytest.approx(0.1 * 69_300.99 / 70_000, abs=1e-4)


def test_buckets_counted_under_another_layout_land_in_the_bucket_holding_them(store):
    store.add(EMAIL, CountKind.DURATION_BUCKET, "0.25", 2)  # not a default bound
    store.add(EMAIL, CountKind.DURATION_BUCKET, "99999.0", 1)  # above the last finite one
    _, _, per_name = totals_of(store.snapshot())
    buckets = per_name[EMAIL][FIELDS:]
    assert buckets[1] == 2 and buckets[-1] == 1 and sum(buckets) == 3


def test_the_query_picks_the_finest_tier_that_reaches_back_over_its_window(sampler, clock):
    # Young, the fine tiers hold all there is: a day's window gets their finer steps.
    assert sampler.tier("summary", 24 * 3600) is sampler.summary
    assert sampler.tier("names", 24 * 3600) is sampler.names
    for _ in range(725):  # over an hour of 5 s samples: every fine tier is full
        sampler.sample()
        clock.advance(5)
    assert sampler.tier("summary", 900) is sampler.summary
    assert sampler.tier("summary", 3600) is sampler.summary
    assert sampler.tier("summary", 6 * 3600) is sampler.summary_long
    assert sampler.tier("types", 3600) is sampler.types
    assert sampler.tier("types", 24 * 3600) is sampler.types_long
    assert sampler.tier("names", 3600) is sampler.names
    assert sampler.tier("names", 2 * 3600) is sampler.names_long
    assert sampler.tier("names", 10 * 24 * 3600) is sampler.names_long  # none reaches: longest
    assert sampler.longest("summary") >= 24 * 3600 and sampler.longest("names") >= 24 * 3600


def test_a_day_of_history_is_kept_in_the_coarse_tiers(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    for _ in range(26 * 60):  # 26 hours, a sample a minute, one job started each
        store.add(EMAIL, CountKind.STARTED)
        sampler.sample()
        clock.advance(60)
    day = sampler.series(sampler.summary_long, SUMMARY, Window(24 * 3600, 2000))
    assert day["t"][-1] - day["t"][0] == 24 * 3600_000 and len(day["t"]) == 1441
    assert set(day["started"][1:]) == {1.0}
    assert sampler.summary.count == 722  # the fine tier: its 722 newest samples only
    names = sampler.series(sampler.names_long, EMAIL, Window(24 * 3600, 2000))
    assert names["t"][-1] - names["t"][0] >= 23.8 * 3600_000 and len(names["t"]) <= 146


def test_failing_ranks_functions_by_failed_and_lost_runs_in_the_window(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    sampler.sample()
    clock.advance(30)
    store.add(EMAIL, CountKind.FINISHED, "failed", 5)  # long before the last 15 minutes
    sampler.sample()
    clock.advance(30 * 60)
    sampler.sample()
    store.add(RESIZE, CountKind.FINISHED, "failed", 2)
    store.add(RESIZE, CountKind.FINISHED, "lost", 1)
    store.add(RESIZE, CountKind.FINISHED, "completed", 3)
    store.add(HOOK, CountKind.FINISHED, "completed", 9)
    clock.advance(30)
    sampler.sample()
    recent = sampler.failing(15 * 60, 10)
    assert recent == [
        {
            "source": "app",
            "type": "TASK",
            "name": "resize_image",
            "failures": 3,
            "failed": 2,
            "lost": 1,
            "finished": 6,
            "ratio": 0.5,
        }
    ]
    hour = sampler.failing(3600, 10)
    assert [(row["name"], row["failures"]) for row in hour] == [
        ("send_email", 5),
        ("resize_image", 3),
    ]
    assert sampler.failing(3600, 1) == hour[:1]


def test_a_window_growth_is_the_difference_of_the_totals_at_its_two_ends(sampler, store, clock):
    store.add(HOOK, CountKind.STARTED)
    failed_at: dict[float, float] = {}
    for minute in range(40):
        store.add(EMAIL, CountKind.FINISHED, "failed", minute % 3 + 1)
        sampler.sample()
        failed_at[clock.now_ms()] = store.counts[EMAIL][(CountKind.FINISHED, "failed")]
        clock.advance(30)
    series = sampler.series(sampler.names, EMAIL, Window(15 * 60, 2000))
    first, last = series["t"][0], series["t"][-1]
    growth = sampler.names.window_growth(EMAIL, 15 * 60)
    assert growth[Field.FAILED] == failed_at[last] - failed_at[first]


def test_a_histogram_going_down_gives_no_percentile(sampler, store, clock):
    store.add(EMAIL, CountKind.DURATION_BUCKET, "1.0", 10)
    sampler.sample()
    clock.advance(5)
    store.counts[EMAIL][(CountKind.DURATION_BUCKET, "1.0")] = 2  # another store in place
    store.add(EMAIL, CountKind.DURATION_BUCKET, "5.0", 3)
    sampler.sample()
    series = sampler.series(sampler.summary, SUMMARY, HOUR)
    assert series["p50"] == [None, None] and series["p99"] == [None, None]
