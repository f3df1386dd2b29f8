"""An app serving its own jobs with InProcessJobs, scraped by a real exporter: one process,
and a gunicorn server of three sharing one folder (docs/contract.md §6)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import Flask

from exporter.client import InProcessJobs
from exporter.client.shared import ENV_DIR
from tests.helpers.data import START_MS
from tests.helpers.processes import ExporterProcess, free_port, require_tool
from tests.helpers.scripts import PythonScript
from tests.helpers.served import ServedApp, sqlite_url
from tests.helpers.waiting import poll, wait_until


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


GUNICORN_APP = textwrap.dedent("""
    import os, threading
    from flask import Flask
    from exporter.client import InProcessJobs

    jobs = InProcessJobs(keep_finished_s=600)  # the folder comes from the environment
    app = Flask("served")
    jobs.init_app(app, "/jobs")
    held = {}

    @app.post("/run/<n>")
    def run(n):
        with jobs.job("TASK", "work", job_id=f"run-{n}"):
            threading.Event().wait(0.05)  # the job's work: long enough for workers to overlap
        return str(os.getpid())

    @app.post("/start/<n>")
    def start(n):
        held[n] = jobs.job("TASK", "long", job_id=f"long-{n}")
        held[n].__enter__()  # still running when scraped
        return str(os.getpid())
""")


@pytest.mark.slow
def test_every_worker_of_a_gunicorn_server_lists_every_workers_jobs(tmp_path: Path):
    (tmp_path / "served_app.py").write_text(GUNICORN_APP)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    shared = tmp_path / "shared"
    shared.mkdir()
    server = subprocess.Popen(
        [require_tool("gunicorn"), "-w", "3", "-b", f"127.0.0.1:{port}", "served_app:app"],
        cwd=tmp_path,
        env={**os.environ, ENV_DIR: str(shared)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exporter = None
    try:
        wait_until(lambda: _answers(f"{base}/jobs"), timeout=30)
        # Concurrent requests, each on a new connection, so every worker takes some.
        with ThreadPoolExecutor(10) as pool:
            pids = set(pool.map(lambda n: _post(f"{base}/run/{n}"), range(30)))
            pids |= set(pool.map(lambda n: _post(f"{base}/start/{n}"), range(6)))
        assert len(pids) >= 2, "the jobs did not spread over the workers"
        # Whichever worker answers, it lists all 36.
        for _ in range(9):
            assert len(requests.get(f"{base}/jobs", timeout=5).json()) == 36

        exporter = ExporterProcess(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            sqlite_url(tmp_path / "store.db"),
            "--source",
            f"app={base}/jobs",
            "--scrape-interval",
            "0.1",
        )

        def counted() -> tuple:
            metrics = exporter.metrics()
            return (
                metrics.job("background_jobs_finished_total", job="work", outcome="completed"),
                metrics.job("background_jobs_running", job="long"),
                metrics.job("background_jobs_started_total", job="long"),
            )

        assert poll(counted, until=lambda c: c == (30, 6, 6)) == (30, 6, 6)
        # A second of scrapes, each reaching some worker: none of them hides a running job.
        success = "job_exporter_source_last_success_timestamp_seconds"
        before = exporter.metrics().value(success, source="app")
        wait_until(lambda: exporter.metrics().value(success, source="app") > before + 1)
        assert counted() == (30, 6, 6)
        lost = exporter.metrics().job("background_jobs_finished_total", job="long", outcome="lost")
        assert lost in (None, 0)
    finally:
        if exporter is not None:
            exporter.stop()
        server.terminate()
        server.wait(20)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _post(url: str) -> int:
    response = requests.post(url, timeout=10)
    response.raise_for_status()
    return int(response.text)


FORKED_WITHOUT_FOLDER = textwrap.dedent("""
    import os
    from exporter.client import InProcessJobs

    jobs = InProcessJobs()
    with jobs.job("TASK", "in-parent"):
        pass
    pid = os.fork()
    if pid == 0:
        for n in range(3):
            with jobs.job("TASK", "in-child"):
                pass
        jobs.jobs()
        os._exit(0)
    os.waitpid(pid, 0)
    print("done", flush=True)
""")


@pytest.mark.slow
def test_a_forked_child_without_a_shared_folder_warns_once():
    assert ENV_DIR not in os.environ
    script = PythonScript(FORKED_WITHOUT_FOLDER)
    script.wait_for_line("done")
    assert script.finish() == 0
    assert script.stderr.count("forked process") == 1, script.stderr
