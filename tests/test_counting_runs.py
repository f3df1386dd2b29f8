"""docs/contract.md §2's second edition, rule by rule: scraped and pushed jobs count per run
(pending, retrying, attempt, error, queue wait), read back from the real /metrics and
GET /api/v1/tracked."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from exporter.clock import ManualClock
from tests.helpers.data import START_MS, job
from tests.helpers.metrics import Metrics
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource

STARTED = "background_jobs_started_total"
FINISHED = "background_jobs_finished_total"
RETRIES = "background_jobs_retries_total"
PENDING = "background_jobs_pending"
RUNNING = "background_jobs_running"
WAIT_COUNT = "background_jobs_queue_wait_seconds_count"
WAIT_SUM = "background_jobs_queue_wait_seconds_sum"
DURATION_COUNT = "background_jobs_duration_seconds_count"
DURATION_SUM = "background_jobs_duration_seconds_sum"


def counts(metrics: Metrics, source: str | None = None) -> dict[str, float | None]:
    def one(metric: str, **labels: str) -> float | None:
        return metrics.job(metric, source=source, **labels)

    return {
        "started": one(STARTED),
        "completed": one(FINISHED, outcome="completed"),
        "failed": one(FINISHED, outcome="failed"),
        "lost": one(FINISHED, outcome="lost"),
        "retries": one(RETRIES, trigger="automatic"),
        "running": one(RUNNING),
        "pending": one(PENDING),
    }


def expect(**values: float) -> dict[str, float]:
    zero = dict.fromkeys(("started", "completed", "failed", "lost", "retries"), 0.0)
    zero.update(running=0.0, pending=0.0)
    zero.update(values)
    return zero


def tracked(exporter: Exporter, **params: Any) -> dict[str, Any]:
    answer = requests.get(f"{exporter.url}/api/v1/tracked", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def push(exporter: Exporter, items: list[dict[str, Any]], **params: Any) -> requests.Response:
    return requests.post(f"{exporter.url}/api/v1/push", json=items, params=params, timeout=10)


def test_a_pending_job_waits_then_its_run_starts_with_its_queue_wait(
    exporter: Exporter, job_source: JobSource, clock: ManualClock
):
    job_source.serve_jobs([job("a", status="pending")])
    exporter.scrape()
    assert counts(exporter.metrics()) == expect(pending=1)
    clock.advance(4)
    job_source.serve_jobs([job("a", start_ms=clock.now_ms(), status="running")])
    exporter.scrape()
    metrics = exporter.metrics()
    assert counts(metrics) == expect(started=1, running=1)
    # No enqueueTimestamp: the wait runs from when the exporter first saw it pending.
    assert metrics.job(WAIT_COUNT) == 1
    assert metrics.job(WAIT_SUM) == pytest.approx(4.0)


def test_enqueue_timestamp_gives_the_queue_wait_once(exporter: Exporter, job_source: JobSource):
    queued = {"enqueueTimestamp": START_MS - 2_500}
    job_source.serve_jobs([job("a", **queued), job("b", finished=True, **queued)])
    exporter.scrape()
    job_source.serve_jobs([job("a", finished=True, **queued), job("b", finished=True, **queued)])
    exporter.scrape()
    metrics = exporter.metrics()
    assert metrics.job(WAIT_COUNT) == 2
    assert metrics.job(WAIT_SUM) == pytest.approx(5.0)
    assert metrics.job("background_jobs_queue_wait_seconds_bucket", le="5.0") == 2


def test_a_retried_job_counts_each_run_and_one_retry_per_attempt(
    exporter: Exporter, job_source: JobSource, clock: ManualClock
):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    clock.advance(3)
    retrying = job(
        "a", status="retrying", error="TimeoutError: smtp", finishTimestamp=START_MS + 3_000
    )
    job_source.serve_jobs([retrying])
    exporter.scrape()
    exporter.scrape()  # seen retrying again: the same retry, counted once
    assert counts(exporter.metrics()) == expect(started=1, failed=1, retries=1, pending=1)
    second_start = clock.now_ms() + 1_000
    job_source.serve_jobs([job("a", start_ms=second_start, status="running", attempt=2)])
    exporter.scrape()
    assert counts(exporter.metrics()) == expect(started=2, failed=1, retries=1, running=1)
    job_source.serve_jobs(
        [
            job(
                "a",
                start_ms=second_start,
                finished=True,
                attempt=2,
                finishTimestamp=second_start + 500,
            )
        ]
    )
    exporter.scrape()
    metrics = exporter.metrics()
    assert counts(metrics) == expect(started=2, completed=1, failed=1, retries=1)
    assert metrics.job(DURATION_COUNT) == 2  # each run its own duration: 3 s and 0.5 s
    assert metrics.job(DURATION_SUM) == pytest.approx(3.5)
    [row] = tracked(exporter)["jobs"]
    assert (row["status"], row["attempt"], row["error"]) == ("completed", 2, None)


def test_a_higher_attempt_ends_the_run_nobody_said_ended_as_failed(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    job_source.serve_jobs([job("a", start_ms=START_MS + 2_000, attempt=2)])
    exporter.scrape()
    exporter.scrape()
    metrics = exporter.metrics()
    assert counts(metrics) == expect(started=2, failed=1, retries=1, running=1)
    assert metrics.job(DURATION_SUM) == pytest.approx(2.0)  # it ended when the next began


def test_a_failed_job_later_completed_under_a_higher_attempt_is_completed(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs([job("a", finished=True, status="failed", error="boom")])
    exporter.scrape()
    assert tracked(exporter)["jobs"][0]["error"] == "boom"
    job_source.serve_jobs([job("a", start_ms=START_MS + 10, finished=True, attempt=2)])
    exporter.scrape()
    assert counts(exporter.metrics()) == expect(started=2, completed=1, failed=1, retries=1)
    [row] = tracked(exporter)["jobs"]
    assert (row["status"], row["attempt"], row["error"]) == ("completed", 2, None)
    job_source.serve_jobs([job("a", start_ms=START_MS + 10, finished=True, attempt=2)])
    exporter.scrape()  # the same last attempt again: nothing new
    assert counts(exporter.metrics())["started"] == 2


def test_a_late_report_of_an_earlier_attempt_changes_nothing(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs([job("a", attempt=3)])
    exporter.scrape()
    job_source.serve_jobs([job("a", attempt=2, status="retrying")])
    exporter.scrape()
    assert counts(exporter.metrics()) == expect(started=1, running=1)


def test_a_pending_job_that_vanishes_never_counts_a_run(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs([job("a", status="pending"), job("b")])
    exporter.scrape()
    job_source.serve_jobs([])
    exporter.scrape()
    exporter.scrape()
    assert counts(exporter.metrics()) == expect(started=1, lost=1)
    assert [row["id"] for row in tracked(exporter)["jobs"]] == ["b"]  # "a" is forgotten


def test_a_failed_run_keeps_its_error_for_the_tracked_api(
    exporter: Exporter, job_source: JobSource
):
    error = "ValueError: bad address\n" + "x" * 3_900
    job_source.serve_jobs([job("a"), job("b", name="resize")])
    exporter.scrape()
    job_source.serve_jobs([job("a", finished=True, status="failed", error=error), job("b")])
    exporter.scrape()
    page = tracked(exporter, status="failed")
    assert [(row["id"], row["error"]) for row in page["jobs"]] == [("a", error)]
    assert page["next"] is None
    info = requests.get(f"{exporter.url}/api/v1/jobinfo", timeout=10).json()
    assert {item["id"]: item["error"] for item in info} == {"a": error, "b": None}


def test_tracked_pages_filter_search_and_order(exporter: Exporter, job_source: JobSource):
    job_source.serve_jobs(
        [
            job(f"job-{n}", start_ms=START_MS + n, name="Resize_%" if n % 2 else "mail")
            for n in range(7)
        ]
    )
    exporter.scrape()
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = tracked(exporter, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [row["id"] for row in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"job-{n}" for n in range(6, -1, -1)]  # newest first, each once
    oldest = tracked(exporter, order="oldest", limit=2)["jobs"]
    assert [row["id"] for row in oldest] == ["job-0", "job-1"]
    found = tracked(exporter, q="resize_%")["jobs"]  # any case; % and _ match themselves
    assert sorted(row["id"] for row in found) == ["job-1", "job-3", "job-5"]
    assert tracked(exporter, q="_%x")["jobs"] == []
    assert len(tracked(exporter, name="mail", status="running")["jobs"]) == 4
    assert tracked(exporter, status="completed")["jobs"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "retrying"}, "status"),
        ({"order": "sideways"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),  # valid base64 of a JSON array of the wrong shape
        ({"q": "x" * 201}, "q"),
    ],
)
def test_tracked_refuses_bad_parameters_by_name(exporter: Exporter, params, field):
    answer = requests.get(f"{exporter.url}/api/v1/tracked", params=params, timeout=10)
    assert answer.status_code == 400
    assert [error["field"] for error in answer.json()["errors"]] == [field]


def test_pushed_runs_count_as_scraped_ones_do(exporter: Exporter, clock: ManualClock):
    queued = START_MS - 1_000
    assert push(exporter, [job("p", status="pending", enqueueTimestamp=queued)]).status_code == 202
    assert counts(exporter.metrics(), "push") == expect(pending=1)
    clock.advance(2)
    push(exporter, [job("p", start_ms=START_MS + 1_000, enqueueTimestamp=queued)])
    push(exporter, [job("p", start_ms=START_MS + 1_000, status="retrying", error="e")])
    push(exporter, [job("p", start_ms=START_MS + 1_000, status="retrying", error="e")])  # again
    push(exporter, [job("p", start_ms=START_MS + 1_500, attempt=2)])
    push(
        exporter,
        [job("p", start_ms=START_MS + 1_500, attempt=2, finished=True, status="completed")],
    )
    metrics = exporter.metrics()
    assert counts(metrics, "push") == expect(started=2, completed=1, failed=1, retries=1)
    assert metrics.job(WAIT_SUM, source="push") == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (job("x", status="completed"), "status"),  # completed needs isFinished true
        (job("x", finished=True, status="pending"), "status"),
        (job("x", enqueueTimestamp=START_MS + 1), "enqueueTimestamp"),
        (job("x", attempt=0), "attempt"),
        (job("x", attempt=1.5), "attempt"),
        (job("x", error="e" * 4001), "error"),
        (job("x", error="nul\x00"), "error"),
    ],
)
def test_a_push_with_a_bad_extension_field_is_refused_whole(exporter: Exporter, item, field):
    answer = push(exporter, [job("fine"), item])
    assert answer.status_code == 400
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(1, field)]
    assert tracked(exporter)["jobs"] == []


def test_a_pushed_job_not_reported_within_lost_after_is_lost(
    exporter: Exporter, clock: ManualClock
):
    push(
        exporter,
        [job("beating", start_ms=clock.now_ms()), job("dead", start_ms=clock.now_ms())],
        lostAfter=45,
    )
    push(exporter, [job("waiting", status="pending")], lostAfter=45)
    for _ in range(3):  # "beating" sends heartbeats, the others nothing
        clock.advance(20)
        push(exporter, [job("beating", start_ms=START_MS)], lostAfter=45)
        exporter.runtime.sweeper.pushed()
    metrics = exporter.metrics()
    assert counts(metrics, "push") == expect(started=2, lost=1, running=1)
    assert [row["id"] for row in tracked(exporter, status="running")["jobs"]] == ["beating"]
    assert tracked(exporter, status="pending")["jobs"] == []  # forgotten, never started


def test_a_push_sources_own_lost_after_wins_over_what_its_pushes_ask(
    make_exporter, clock: ManualClock
):
    exporter = make_exporter({}, push_lost_after_for=(("slow", 3600.0),))
    push(exporter, [job("a", start_ms=clock.now_ms())], source="slow", lostAfter=10)
    push(exporter, [job("a", start_ms=clock.now_ms())], source="fast", lostAfter=10)
    clock.advance(60)
    exporter.runtime.sweeper.pushed()
    metrics = exporter.metrics()
    assert counts(metrics, "slow")["lost"] == 0
    assert counts(metrics, "fast")["lost"] == 1


def test_a_pushed_job_first_reported_long_after_its_start_is_taken_as_it_is(
    exporter: Exporter, clock: ManualClock
):
    """Older than the lost-after time (24 h by default) when first pushed: not lost at
    once, and its completion counts."""
    started_ms = clock.now_ms() - 2 * 86_400_000
    push(exporter, [job("old", start_ms=started_ms)])
    exporter.runtime.sweeper.pushed()
    assert counts(exporter.metrics(), "push") == expect(started=1, running=1)
    clock.advance(60)
    push(exporter, [job("old", start_ms=started_ms, finished=True, finishTimestamp=clock.now_ms())])
    exporter.runtime.sweeper.pushed()
    assert counts(exporter.metrics(), "push") == expect(started=1, completed=1)


@pytest.mark.parametrize("value", ["1", "nan", "x", str(31 * 86400)])
def test_lost_after_out_of_bounds_is_refused(exporter: Exporter, value: str):
    answer = push(exporter, [job("a")], lostAfter=value)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "lostAfter"
