"""docs/contract.md §2, rule by rule, read back as exact samples from the real /metrics."""

from __future__ import annotations

import pytest

from exporter.clock import ManualClock
from tests.helpers.data import START_MS, job
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource

DURATION_COUNT = "background_jobs_duration_seconds_count"
DURATION_SUM = "background_jobs_duration_seconds_sum"


def finished(metrics, outcome: str, **labels: str) -> float | None:
    return metrics.job("background_jobs_finished_total", outcome=outcome, **labels)


def test_a_job_first_seen_running_counts_as_started_once(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs([job("a"), job("b")])
    exporter.scrape()
    exporter.scrape()  # seen again: still the same two starts
    metrics = exporter.metrics()
    assert metrics.job("background_jobs_started_total") == 2
    assert metrics.job("background_jobs_running") == 2
    assert finished(metrics, "completed") == 0
    assert metrics.job("background_jobs_oldest_start_timestamp_seconds") == START_MS / 1000


def test_finishing_without_finish_timestamp_uses_the_time_first_seen_finished(
    exporter: Exporter, job_source: JobSource, clock: ManualClock
):
    job_source.serve_jobs([job("a", start_ms=START_MS - 4_000)])
    exporter.scrape()
    clock.advance(6)
    job_source.serve_jobs([job("a", start_ms=START_MS - 4_000, finished=True)])
    exporter.scrape()
    clock.advance(30)
    exporter.scrape()  # still listed as finished: counted once only
    metrics = exporter.metrics()
    assert metrics.job("background_jobs_started_total") == 1
    assert finished(metrics, "completed") == 1
    assert metrics.job("background_jobs_running") == 0
    assert metrics.job(DURATION_COUNT) == 1
    assert metrics.job(DURATION_SUM) == pytest.approx(10.0)  # 4 s before the first scrape + 6
    assert metrics.job("background_jobs_oldest_start_timestamp_seconds") is None


def test_finish_timestamp_gives_the_duration(exporter: Exporter, job_source: JobSource, clock):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    clock.advance(60)
    job_source.serve_jobs([job("a", finished=True, finishTimestamp=START_MS + 2_500)])
    exporter.scrape()
    metrics = exporter.metrics()
    assert metrics.job(DURATION_SUM) == pytest.approx(2.5)
    assert metrics.job("background_jobs_duration_seconds_bucket", le="2.5") == 1
    assert metrics.job("background_jobs_duration_seconds_bucket", le="1.0") == 0


def test_a_job_first_seen_finished_counts_started_and_finished_at_once(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs(
        [
            job("plain", finished=True),
            job("timed", finished=True, finishTimestamp=START_MS + 700),
        ]
    )
    exporter.scrape()
    metrics = exporter.metrics()
    assert metrics.job("background_jobs_started_total") == 2
    assert finished(metrics, "completed") == 2
    assert metrics.job("background_jobs_running") == 0
    # The duration is observed only where finishTimestamp says it.
    assert metrics.job(DURATION_COUNT) == 1
    assert metrics.job(DURATION_SUM) == pytest.approx(0.7)


def test_a_running_job_missing_from_two_consecutive_scrapes_is_lost(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs([job("a"), job("b")])
    exporter.scrape()
    job_source.serve_jobs([job("b")])
    exporter.scrape()  # a missing once: not lost yet
    assert finished(exporter.metrics(), "lost") == 0
    exporter.scrape()  # missing twice in a row: lost
    metrics = exporter.metrics()
    assert finished(metrics, "lost") == 1
    assert metrics.job("background_jobs_running") == 1
    assert metrics.job(DURATION_COUNT) == 0  # a lost job's run time is unknown
    job_source.serve_jobs([job("a", finished=True), job("b")])
    exporter.scrape()  # coming back after being counted lost counts nothing more
    metrics = exporter.metrics()
    assert finished(metrics, "completed") == 0
    assert metrics.job("background_jobs_started_total") == 2


def test_reappearing_after_one_miss_resets_the_absence_count(exporter: Exporter, job_source):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    job_source.serve_jobs([])
    exporter.scrape()
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    job_source.serve_jobs([])
    exporter.scrape()  # missing once again, not twice in a row
    metrics = exporter.metrics()
    assert finished(metrics, "lost") == 0
    assert metrics.job("background_jobs_running") == 1


def test_a_failed_scrape_between_absences_neither_counts_nor_resets(exporter, job_source):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    job_source.serve_jobs([])
    exporter.scrape()
    job_source.reply.status = 503
    assert not exporter.scrape().ok
    job_source.serve_jobs([])
    exporter.scrape()  # the second successful scrape in a row without it
    assert finished(exporter.metrics(), "lost") == 1


def test_failed_status_is_the_failed_outcome(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs([job("a", status="running"), job("b")])
    exporter.scrape()
    job_source.serve_jobs(
        [job("a", finished=True, status="failed"), job("b", finished=True, status="completed")]
    )
    exporter.scrape()
    metrics = exporter.metrics()
    assert finished(metrics, "failed") == 1
    assert finished(metrics, "completed") == 1


def test_the_same_id_twice_in_one_response_counts_once_and_the_last_wins(exporter, job_source):
    job_source.serve_jobs(
        [job("a"), job("a", finished=True, status="failed", finishTimestamp=START_MS + 1000)]
    )
    exporter.scrape()
    metrics = exporter.metrics()
    assert metrics.job("background_jobs_started_total") == 1
    assert finished(metrics, "failed") == 1
    assert metrics.job("background_jobs_running") == 0


def test_a_running_id_listed_twice_counts_by_its_last_entry(exporter, job_source):
    job_source.serve_jobs([job("a"), job("b")])
    exporter.scrape()
    # "a" twice, finished then running: the last entry wins, so it is still running;
    # "b" is absent, and "a" listed twice must not hide that.
    job_source.serve_jobs([job("a", finished=True, status="completed"), job("a")])
    exporter.scrape()
    exporter.scrape()
    metrics = exporter.metrics()
    assert finished(metrics, "completed") == 0
    assert finished(metrics, "lost") == 1  # "b", missing two scrapes in a row
    assert metrics.job("background_jobs_running") == 1
    job_source.serve_jobs([job("a"), job("a", finished=True, status="completed")])
    exporter.scrape()
    metrics = exporter.metrics()
    assert finished(metrics, "completed") == 1
    assert metrics.job("background_jobs_running") == 0


def test_a_failed_scrape_changes_no_job_counts(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    before = exporter.metrics()
    job_source.reply.body = b"[{not json"
    assert exporter.scrape().reason == "invalid_json"
    after = exporter.metrics()
    for name in ("background_jobs_started_total", "background_jobs_running"):
        assert after.job(name) == before.job(name) == 1


def test_series_are_labelled_by_source_type_and_name(make_exporter, job_source: JobSource):
    other = JobSource()
    try:
        exporter = make_exporter({"app": job_source.url, "billing": other.url})
        job_source.serve_jobs([job("1", type="HTTP", name="POST /hook"), job("2")])
        other.serve_jobs([job("1", type="CRON", name="invoice")])  # same id, other source
        exporter.scrape("app")
        exporter.scrape("billing")
        metrics = exporter.metrics()
        started = "background_jobs_started_total"
        assert metrics.job(started, type="HTTP", job="POST /hook") == 1
        assert metrics.job(started) == 1
        assert metrics.job(started, source="billing", type="CRON", job="invoice") == 1
        assert metrics.value("job_exporter_tracked_jobs", source="app") == 2
    finally:
        other.close()


def test_invalid_items_are_skipped_one_by_one_and_counted_by_field(exporter, job_source, clock):
    items = [
        job("ok-1"),
        job("bad-bool", finished="true"),
        {
            "id": "no-name",
            "startTimestamp": START_MS,
            "backgroundJobType": "TASK",
            "isFinished": False,
        },
        job("future", start_ms=clock.now_ms() + 25 * 3600 * 1000),
        job("", name="empty id"),
        job("backwards", finished=True, finishTimestamp=START_MS - 1),
        42,
        job("ok-2", unknownField={"ignored": True}),
    ]
    job_source.serve_jobs(items)
    result = exporter.scrape()
    assert result.ok and result.invalid == 6
    metrics = exporter.metrics()
    assert metrics.job("background_jobs_started_total") == 2
    invalid = "job_exporter_invalid_jobs_total"
    for field_name in ("isFinished", "name", "startTimestamp", "id", "finishTimestamp", "item"):
        assert metrics.value(invalid, source="app", field=field_name) == 1, field_name


def test_names_beyond_the_series_cap_fold_into_other(make_exporter, job_source: JobSource):
    exporter = make_exporter({"app": job_source.url}, max_series_per_source=2)
    job_source.serve_jobs(
        [
            job("1", name="a"),
            job("2", name="b"),
            job("3", name="c"),  # a known type: keeps TASK, name folds
            job("4", name="d", type="HTTP"),  # an unknown type folds too
        ]
    )
    exporter.scrape()
    job_source.serve_jobs([job("3", name="c", finished=True)])
    exporter.scrape()
    metrics = exporter.metrics()
    started = "background_jobs_started_total"
    assert metrics.job(started, job="a") == 1
    assert metrics.job(started, job="c") is None
    assert metrics.job(started, job="__other__") == 1
    assert metrics.job(started, type="__other__", job="__other__") == 1
    # A folded job finishes under the labels it started with.
    assert finished(metrics, "completed", job="__other__") == 1
    assert metrics.value("job_exporter_folded_jobs_total", source="app") == 2


def test_finished_jobs_are_pruned_after_retention_unless_still_listed(
    make_exporter, job_source: JobSource, clock: ManualClock
):
    exporter = make_exporter({"app": job_source.url}, retention_days=1)
    job_source.serve_jobs([job("gone", finished=True), job("kept", finished=True)])
    exporter.scrape()
    clock.advance(2 * 24 * 3600)
    job_source.serve_jobs([job("kept", finished=True)])
    exporter.scrape()
    assert exporter.prune() == 1  # the retention timer's run
    metrics = exporter.metrics()
    assert metrics.value("job_exporter_tracked_jobs", source="app") == 1
    # Still listed, so never pruned, so never counted again.
    assert metrics.job("background_jobs_started_total") == 2
