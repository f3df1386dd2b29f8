"""Label values come from data: whatever an app names its jobs, /metrics stays valid."""

from __future__ import annotations

import pytest

from tests.helpers.data import job
from tests.helpers.processes import promtool_check_metrics
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource

pytestmark = pytest.mark.slow

HOSTILE_NAMES = [
    'say "hello"',
    "back\\slash\\",
    "line\nbreak\r\nand tab\t",
    "Größe ändern · 画像を縮小 · 🚀",
    "trailing backslash \\",
    '{name="injected"} 1',
    "x" * 200,
]


def test_hostile_label_values_round_trip_and_pass_promtool(exporter: Exporter, job_source):
    items = [job(str(n), name=name) for n, name in enumerate(HOSTILE_NAMES)]
    items.append(job("huge", name="n" * 10_000))  # over 200 characters: invalid, skipped
    items.append(job("odd-type", type='T"Y\\P\nE', name="ok"))
    job_source.serve_jobs(items)
    assert exporter.scrape().ok
    metrics = exporter.metrics()
    for name in HOSTILE_NAMES:
        assert metrics.job("background_jobs_started_total", job=name) == 1, name
    assert metrics.job("background_jobs_started_total", type='T"Y\\P\nE', job="ok") == 1
    assert metrics.value("job_exporter_invalid_jobs_total", source="app", field="name") == 1
    checked = promtool_check_metrics(metrics.text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


def test_promtool_rejects_what_it_should(exporter: Exporter, job_source: JobSource):
    """The check above can fail: promtool does flag a malformed exposition."""
    checked = promtool_check_metrics('# TYPE broken counter\nbroken{a="1} 1\n')
    assert checked.returncode != 0
