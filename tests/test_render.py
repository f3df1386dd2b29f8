"""The fast /metrics renderer writes exactly what the prometheus_client collector yields."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.jobs.schedules import ScheduleSpec
from exporter.metrics.text import number, render
from exporter.model.counts import CountKind
from tests.helpers.data import job
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource


def samples(families) -> dict:
    """Every sample's value, and its exemplar (OpenMetrics buckets) when it has one."""
    found = {}
    for family in families:
        for sample in family.samples:
            key = (family.name, family.type, sample.name, frozenset(sample.labels.items()))
            found[key] = (
                sample.value if sample.exemplar is None else (sample.value, sample.exemplar)
            )
    return found


@pytest.fixture
def busy_exporter(make_exporter, job_source: JobSource) -> Exporter:
    """Every kind of sample: hostile labels, folded names, faults, invalid items, queues."""
    exporter = make_exporter(
        {"app": job_source.url, "down": "http://127.0.0.1:1/x"}, max_series_per_source=4
    )
    job_source.serve_jobs(
        [
            job("1", name='quote " and \\ and \n'),
            job("2", name="Größe", finished=True, finishTimestamp=1_700_000_003_500),
            job("3", type="HTTP", name="POST /hook", finished=True, status="failed"),
            job("4", name="x"),
            job("5", name="y"),
            job("6", name="z", type="CRON"),
            {"id": "bad", "isFinished": "yes"},
        ]
    )
    exporter.scrape("app")
    exporter.scrape("down")
    exporter.runtime.store.add_counts(
        "api",
        Counter(
            {
                ("EMAIL", "welcome", CountKind.PENDING, ""): 3,
                ("EMAIL", "welcome", CountKind.RETRIES, "manual"): 1,
                ("EMAIL", "welcome", CountKind.QUEUE_WAIT_BUCKET, "0.5"): 2,
                ("EMAIL", "welcome", CountKind.QUEUE_WAIT_SUM, ""): 0.7,
            }
        ),
    )
    scheduler = exporter.runtime.schedules  # schedules: one fired, one paused, hostile names
    scheduler.create(ScheduleSpec("CRON", 'nightly "report"', interval_s=60))
    paused = scheduler.create(ScheduleSpec("CRON", "Größe\\", cron="0 * * * *"))
    scheduler.pause(paused.id)
    exporter.clock.advance(60)
    scheduler.sweep()
    return exporter


def test_text_format_matches_the_collector(busy_exporter: Exporter):
    runtime = busy_exporter.runtime
    ours = samples(parse_text(render(runtime.collector.view()).decode()))
    reference = samples(parse_text(generate_latest(runtime.registry).decode()))
    assert ours == reference
    names = {key[2] for key in ours}
    assert "background_jobs_queue_wait_seconds_bucket" in names
    assert "job_exporter_invalid_jobs_total" in names
    assert "job_exporter_schedule_fires_total" in names
    assert "job_exporter_schedule_last_fire_timestamp_seconds" in names
    assert "job_exporter_schedule_paused" in names


def test_openmetrics_matches_the_collector(busy_exporter: Exporter):
    runtime = busy_exporter.runtime
    ours = samples(parse_om(render(runtime.collector.view(), openmetrics=True).decode()))
    reference = samples(parse_om(generate_openmetrics(runtime.registry).decode()))
    reference = {k: v for k, v in reference.items() if not k[2].endswith("_created")}
    assert ours == reference
    (exemplar,) = [value[1] for value in ours.values() if isinstance(value, tuple)]
    assert exemplar.labels == {"job_id": "2"} and exemplar.value == 3.5  # job 2's 3.5 s


def test_a_failing_store_renders_health_alone(busy_exporter: Exporter):
    runtime = busy_exporter.runtime
    runtime.store.close()
    text = render(runtime.collector.view()).decode()
    names = {family.name for family in parse_text(text)}
    assert "job_exporter_build_info" in names
    assert not any(f.samples for f in parse_text(text) if f.name.startswith("background_jobs"))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (3.0, "3"),
        (-2.0, "-2"),
        (0.5, "0.5"),
        (1e20, "1e+20"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (1795486322.898, "1795486322.898"),
    ],
)
def test_numbers(value: float, text: str):
    assert number(value) == text
