"""A real exporter process beside a source that misbehaves every way it can.

/metrics must answer within a second at every moment, memory must stay bounded, each
fault must be counted by its reason, and a good source beside it must be unaffected.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.helpers.data import START_MS, job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, resident_mb
from tests.helpers.sources import EXPECTED_REASON, MODES, ChaosSource, JobSource

pytestmark = pytest.mark.slow

ERRORS = "job_exporter_source_scrape_errors_total"


def test_chaos_source_never_disturbs_metrics_or_a_good_source(
    tmp_path: Path, job_source: JobSource
):
    chaos = ChaosSource(START_MS)
    truth = [job(f"good-{n}", name=f"task-{n % 5}") for n in range(100)]
    job_source.serve_jobs(truth)
    exporter = ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--source",
        f"chaos={chaos.url}",
        "--source",
        f"good={job_source.url}",
        "--scrape-interval",
        "0.1",
        "--scrape-timeout",
        "0.5",
        "--max-response-bytes",
        str(8 * 1024 * 1024),
        "--max-series-per-source",
        "100",
    )
    slowest = 0.0
    peak_mb = 0.0
    try:
        deadline = time.monotonic() + 60
        # Until every mode was acted out at least twice, read /metrics as a scraper would.
        while min(chaos.served.values()) < 2:
            assert time.monotonic() < deadline, f"chaos modes not all served: {chaos.served}"
            started = time.monotonic()
            response = requests.get(f"{exporter.url}/metrics", timeout=5)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200
            peak_mb = max(peak_mb, resident_mb(exporter.process.pid))
            time.sleep(0.05)
        metrics = Metrics(requests.get(f"{exporter.url}/metrics", timeout=5).text)
    finally:
        code = exporter.stop()
        chaos.close()

    assert slowest < 1.0, f"/metrics took {slowest:.2f} s"
    assert peak_mb < 400, f"resident memory reached {peak_mb:.0f} MB"
    for mode, reason in EXPECTED_REASON.items():
        assert metrics.value(ERRORS, source="chaos", reason=reason) >= 1, (mode, reason)
    assert metrics.value("job_exporter_invalid_jobs_total", source="chaos", field="id") >= 1
    assert metrics.value("job_exporter_folded_jobs_total", source="chaos") >= 9_000
    chaos_series = {
        dict(labels)["name"]
        for (name, labels), _ in metrics.samples.items()
        if name == "background_jobs_started_total" and ("source", "chaos") in labels
    }
    assert len(chaos_series) <= 101  # the cap, plus __other__
    started = "background_jobs_started_total"
    assert sum(metrics.job(started, source="good", job=f"task-{n}") for n in range(5)) == 100
    assert metrics.value("job_exporter_source_up", source="good") == 1
    assert code == 0
    assert set(MODES) <= set(chaos.served)
