"""The demo's job-API crew moves every job metric, and stops with the runtime."""

from __future__ import annotations

import threading

from exporter.clock import SystemClock
from exporter.jobs.demo_crew import DemoCrew
from tests.helpers.served import live_server
from tests.helpers.waiting import wait_until

NEEDED = {
    ("background_jobs_started_total", ()),
    ("background_jobs_finished_total", (("outcome", "completed"),)),
    ("background_jobs_finished_total", (("outcome", "failed"),)),
    ("background_jobs_finished_total", (("outcome", "lost"),)),
    ("background_jobs_retries_total", (("trigger", "automatic"),)),
    ("background_jobs_retries_total", (("trigger", "manual"),)),
    ("background_jobs_duration_seconds_count", ()),
    ("background_jobs_queue_wait_seconds_count", ()),
    ("background_jobs_pending", ()),
    ("background_jobs_running", ()),
    ("background_jobs_oldest_start_timestamp_seconds", ()),
}


def moved(samples: dict, seen: set) -> set:
    """Add the (family, extra label) pairs with a positive API sample to `seen`."""
    for (name, labels), value in samples.items():
        label_map = dict(labels)
        if label_map.get("source") != "api" or value <= 0:
            continue
        extra = tuple(
            sorted((k, v) for k, v in label_map.items() if k not in ("source", "type", "name"))
        )
        seen.add((name, extra))
    return seen


def test_the_demo_crew_moves_every_job_metric(tmp_path):
    with live_server(tmp_path, clock=SystemClock()) as server:
        crew = DemoCrew(server.runtime.queue, server.base_url, workers=3, seed=7, pace=0.05)
        crew.start()
        seen: set = set()
        try:

            def every_metric_moved() -> bool:
                server.runtime.sweeper.leases()  # the scheduler's job, done here
                return moved(server.metrics().samples, seen) >= NEEDED

            wait_until(every_metric_moved, timeout=60, step=0.05)
        finally:
            crew.stop()
        assert not [t for t in threading.enumerate() if t.name.startswith("demo-")]


def test_the_runtime_starts_and_stops_its_demo_crew(tmp_path):
    with live_server(tmp_path, clock=SystemClock(), workers=2) as server:
        server.runtime.start(server.base_url)
        names = {t.name for t in threading.enumerate()}
        assert {"demo-producer", "demo-worker-1", "demo-worker-2"} <= names
        [schedule] = server.runtime.schedules.list()  # the demo's recurring job
        assert (schedule.type, schedule.name, schedule.interval_s) == ("TASK", "send_invoice", 30)
    assert not [t for t in threading.enumerate() if t.name.startswith("demo-")]
