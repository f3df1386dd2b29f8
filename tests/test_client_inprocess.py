"""An app serving its own jobs with InProcessJobs, scraped by a real exporter."""

from __future__ import annotations

import pytest
from flask import Flask

from exporter.client import InProcessJobs
from tests.helpers.data import START_MS
from tests.helpers.served import ServedApp


class FakeTime:
    def __init__(self) -> None:
        self.now = START_MS / 1000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app_with_jobs():
    clock = FakeTime()
    jobs = InProcessJobs(clock=clock, keep_finished_s=60)
    app = Flask("billing")
    jobs.init_app(app, "/internal/jobs")
    server = ServedApp(app)
    yield jobs, clock, f"{server.base_url}/internal/jobs"
    server.close()


def test_decorated_and_block_jobs_are_scraped_with_outcome_and_duration(
    app_with_jobs, make_exporter
):
    jobs, clock, url = app_with_jobs
    exporter = make_exporter({"billing": url})

    @jobs.track(type="TASK", name="invoice")
    def invoice(amount: int) -> int:
        clock.now += 1.5
        return amount * 2

    assert invoice(21) == 42
    with pytest.raises(ZeroDivisionError), jobs.job("HTTP", "POST /hook"):
        clock.now += 0.25
        raise ZeroDivisionError("the app's own error, untouched")
    block = jobs.job("CRON", "cleanup")
    block.__enter__()  # still running when scraped
    assert exporter.scrape("billing").ok

    metrics = exporter.metrics()
    finished = "background_jobs_finished_total"
    labels = {"source": "billing"}
    assert metrics.job(finished, type="TASK", job="invoice", outcome="completed", **labels) == 1
    assert metrics.job(
        "background_jobs_duration_seconds_sum", type="TASK", job="invoice", **labels
    ) == pytest.approx(1.5)
    assert metrics.job(finished, type="HTTP", job="POST /hook", outcome="failed", **labels) == 1
    assert metrics.job("background_jobs_running", type="CRON", job="cleanup", **labels) == 1

    block.__exit__(None, None, None)
    assert exporter.scrape("billing").ok
    assert (
        exporter.metrics().job(finished, type="CRON", job="cleanup", outcome="completed", **labels)
        == 1
    )


def test_finished_jobs_are_kept_for_a_while_then_forgotten(app_with_jobs):
    jobs, clock, _ = app_with_jobs
    with jobs.job("TASK", "a"):
        pass
    assert [j["id"] for j in jobs.jobs()]
    clock.now += 61
    assert jobs.jobs() == []


def test_labels_are_checked_when_decorating():
    jobs = InProcessJobs()
    with pytest.raises(ValueError, match="type"):
        jobs.track(type="")
    with pytest.raises(ValueError, match="name"):
        jobs.job("TASK", "n" * 201)
