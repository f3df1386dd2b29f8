"""`job-exporter demo`: starts, serves moving metrics within seconds, stops cleanly."""

from __future__ import annotations

import pytest
import requests

from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, promtool_check_metrics
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow


def started_total(metrics: Metrics) -> float:
    return sum(
        value
        for (name, labels), value in metrics.samples.items()
        if name == "background_jobs_started_total" and ("source", "demo") in labels
    )


def test_demo_serves_moving_valid_metrics_and_stops_cleanly(tmp_path):
    demo = ExporterProcess("demo", "--listen", "127.0.0.1:0", cwd=tmp_path)
    try:
        first = wait_until(lambda: started_total(demo.metrics()), timeout=10)
        wait_until(lambda: started_total(demo.metrics()) > first, timeout=15)
        metrics = demo.metrics()
        assert metrics.value("job_exporter_source_up", source="demo") == 1
        types = {
            dict(labels)["type"]
            for (name, labels), _ in metrics.samples.items()
            if name == "background_jobs_started_total"
        }
        assert {"HTTP", "TASK", "CRON"} <= types
        checked = promtool_check_metrics(metrics.text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert requests.get(f"{demo.url}/readyz", timeout=5).status_code == 200
        jobs = requests.get(f"{demo.url}/demo/jobs", timeout=5).json()
        assert any(item["isFinished"] for item in jobs) and any(not i["isFinished"] for i in jobs)
    finally:
        code = demo.stop()
    assert code == 0
    assert "job-exporter stopped" in demo.log
    assert list(tmp_path.iterdir()) == []  # the demo's store lived in its own temporary folder
