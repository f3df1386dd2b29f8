"""Worker against a real exporter: drains, retries what is retryable, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import requests

from exporter.client import RetryableError, Worker
from tests.helpers.served import live_server
from tests.helpers.waiting import wait_until


def api_value(server, metric: str, job_type: str, name: str, **labels: str) -> float:
    return server.metrics().value(metric, source="api", type=job_type, name=name, **labels) or 0


def test_a_worker_drains_jobs_and_retries_a_retryable_failure(tmp_path: Path):
    attempts = {"flaky": 0}
    done: list[dict] = []

    def send_email(payload: dict) -> dict:
        done.append(payload)
        return {"sent": payload["to"]}

    def flaky(payload: dict) -> None:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise RetryableError("upstream timed out")

    def broken(payload: dict) -> None:
        raise ValueError("bad template")

    with live_server(tmp_path, backoff_base=10, backoff_cap=10) as server:
        for n in range(5):
            server.create("EMAIL", "welcome", payload={"to": f"user{n}@example.test"})
        flaky_job = server.create("SYNC", "partner", maxAttempts=3)
        broken_job = server.create("RENDER", "invoice", maxAttempts=3)
        worker = Worker(
            server.base_url,
            {"EMAIL": send_email, "SYNC": flaky, "RENDER": broken},
            name="w1",
            lease_seconds=30,
        )
        while worker.run_once():
            pass
        assert len(done) == 5 and worker.completed == 5 and worker.failed == 2
        waiting = server.get(f"/api/v1/jobs/{flaky_job['id']}").json()
        assert waiting["status"] == "pending" and "upstream timed out" in waiting["lastError"]
        assert server.get(f"/api/v1/jobs/{broken_job['id']}").json()["status"] == "failed"

        server.clock.advance(11)  # past the retry's backoff
        while worker.run_once():
            pass
        assert server.get(f"/api/v1/jobs/{flaky_job['id']}").json()["status"] == "completed"
        finished = "background_jobs_finished_total"
        assert api_value(server, finished, "EMAIL", "welcome", outcome="completed") == 5
        assert api_value(server, finished, "SYNC", "partner", outcome="failed") == 1
        assert api_value(server, finished, "SYNC", "partner", outcome="completed") == 1
        assert api_value(server, finished, "RENDER", "invoice", outcome="failed") == 1
        retries = "background_jobs_retries_total"
        assert api_value(server, retries, "SYNC", "partner", trigger="automatic") == 1
        assert api_value(server, retries, "RENDER", "invoice", trigger="automatic") == 0


WORKER_SCRIPT = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from exporter.client import Worker

    def slow(payload):
        Path(sys.argv[2]).write_text("started")
        threading.Event().wait(60)  # far longer than the shutdown grace

    Worker(sys.argv[1], {"SLOW": slow}, name="doomed", poll_interval=0.05,
           shutdown_grace=0.5, lease_seconds=30).run()
""")


@pytest.mark.slow
def test_sigterm_fails_the_job_in_hand_back_and_it_runs_again_elsewhere(tmp_path: Path):
    started = tmp_path / "started"
    with live_server(tmp_path, backoff_base=5, backoff_cap=5) as server:
        job = server.create("SLOW", "report", maxAttempts=3)
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, server.base_url, str(started)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(started.exists, timeout=20)
            process.send_signal(signal.SIGTERM)
            code = process.wait(15)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(5)
            process.stderr.close()
        assert code == 0
        handed_back = server.get(f"/api/v1/jobs/{job['id']}").json()
        assert handed_back["status"] == "pending"
        assert "shut down" in handed_back["lastError"]

        server.clock.advance(6)
        rescuer = Worker(server.base_url, {"SLOW": lambda payload: "done"}, name="rescuer")
        assert rescuer.run_once()
        assert server.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "completed"
        finished = "background_jobs_finished_total"
        assert api_value(server, finished, "SLOW", "report", outcome="completed") == 1
        assert api_value(server, finished, "SLOW", "report", outcome="lost") == 0


def test_heartbeats_keep_a_long_job_leased(tmp_path: Path):
    beats: list[str] = []
    session = requests.Session()
    original = session.post

    def counting_post(url: str, **kwargs):
        if url.endswith("/heartbeat"):
            beats.append(url)
        return original(url, **kwargs)

    session.post = counting_post  # type: ignore[method-assign]
    with live_server(tmp_path) as server:
        server.create("LONG", "export")
        gate = threading.Event()  # never set: the handler just takes a while
        worker = Worker(
            server.base_url,
            {"LONG": lambda payload: gate.wait(0.25)},
            lease_seconds=0.15,
            session=session,
        )
        assert worker.run_once()
        assert worker.completed == 1
    assert len(beats) >= 2
