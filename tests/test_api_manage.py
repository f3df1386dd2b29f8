"""Managing job-API jobs (docs/contract.md §4, issue 22): cancel, delete, the bulk retry
and cancel, newest-first listing; each with its 409s, 404s and 400s, and the metrics they
move, over real HTTP on both stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from exporter.clock import ManualClock
from exporter.jobs import queue as queue_module
from exporter.store import open_store
from tests.helpers.data import START_MS
from tests.helpers.processes import promtool_check_metrics
from tests.helpers.served import LiveServer, live_server

JOBS = "/api/v1/jobs"
PENDING = "background_jobs_pending"
CANCELLED = "background_jobs_cancelled_total"
RETRIES = "background_jobs_retries_total"
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def server(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[LiveServer]:
    with live_server(tmp_path, clock=clock, store=store_url) as served:
        yield served


def fields_of(response: requests.Response) -> list[str]:
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return [error["field"] for error in body["errors"]]


def delete(server: LiveServer, job_id: str) -> requests.Response:
    return server.session.delete(server.url(f"{JOBS}/{job_id}"), timeout=10)


def failed_job(server: LiveServer, job_type: str = "TASK", name: str = "send_email") -> dict:
    job = server.create(job_type, name, maxAttempts=1)
    leased = server.lease("w1", types=[job_type])
    assert leased is not None and leased["id"] == job["id"]
    body = {"worker": "w1", "error": "boom", "retryable": False}
    return server.step(job["id"], "fail", body)


def api_samples(server: LiveServer) -> dict:
    """Every job-API count (not the gauge of how many jobs the store holds)."""
    return {
        key: value
        for key, value in server.metrics().samples.items()
        if "api" in str(key) and key[0] != "job_exporter_tracked_jobs"
    }


# --- cancel ------------------------------------------------------------------------------


def test_cancel_takes_a_pending_job_out_of_the_pending_count(server: LiveServer):
    job = server.create()
    other = server.create()
    assert server.metrics().job(PENDING) == 2
    cancelled = server.step(job["id"], "cancel")
    assert cancelled["status"] == "cancelled"
    assert cancelled["nextAttemptAt"] is None and cancelled["finishedAt"] == START_MS
    assert server.get(f"{JOBS}/{job['id']}").json()["status"] == "cancelled"
    metrics = server.metrics()
    assert metrics.job(PENDING) == 1
    assert metrics.job(CANCELLED) == 1
    assert metrics.job("background_jobs_finished_total", outcome="failed") == 0
    # A cancelled job is not leased: the other one is.
    assert server.lease("w1")["id"] == other["id"]
    listed = server.get(JOBS, params={"status": "cancelled"}).json()["jobs"]
    assert [one["id"] for one in listed] == [job["id"]]
    text = server.get("/metrics").text
    assert "# TYPE background_jobs_cancelled_total counter" in text
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_cancel_takes_a_job_waiting_for_its_retry(server: LiveServer):
    job = server.create(maxAttempts=3)
    server.lease("w1")
    waiting = server.step(job["id"], "fail", {"worker": "w1", "error": "x", "retryable": True})
    assert waiting["status"] == "pending" and waiting["nextAttemptAt"] > START_MS
    assert server.metrics().job(PENDING) == 1
    assert server.step(job["id"], "cancel")["status"] == "cancelled"
    assert server.metrics().job(PENDING) == 0
    assert server.metrics().job(CANCELLED) == 1


def test_cancel_refuses_every_other_status_with_409(server: LiveServer):
    running = server.create()
    server.lease("w1")
    failed = failed_job(server, "OTHER")
    done = server.create("DONE", "x")
    server.lease("w2", types=["DONE"])
    server.step(done["id"], "complete", {"worker": "w2"})
    cancelled = server.create("GONE", "x")
    server.step(cancelled["id"], "cancel")
    for job in (running, failed, done, cancelled):
        response = server.post(f"{JOBS}/{job['id']}/cancel")
        assert response.status_code == 409, job
        assert fields_of(response) == ["status"]
    assert server.metrics().job(CANCELLED, "GONE", "x") == 1
    response = server.post(f"{JOBS}/nope/cancel")
    assert response.status_code == 404 and fields_of(response) == ["id"]


def test_a_lease_racing_a_cancel_never_yields_a_job_both_ways(server: LiveServer):
    jobs = [server.create("RACE", f"n{i}") for i in range(20)]
    leased: list[str] = []
    cancelled: list[str] = []

    def lease_all() -> None:
        with requests.Session() as session:
            for _ in jobs:
                response = session.post(
                    server.url(f"{JOBS}/lease"), json={"worker": "w"}, timeout=10
                )
                if response.status_code == 200:
                    leased.append(response.json()["id"])

    def cancel_all() -> None:
        with requests.Session() as session:
            for job in reversed(jobs):
                response = session.post(server.url(f"{JOBS}/{job['id']}/cancel"), timeout=10)
                assert response.status_code in (200, 409), response.text
                if response.status_code == 200:
                    cancelled.append(job["id"])

    threads = [threading.Thread(target=lease_all), threading.Thread(target=cancel_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(leased) & set(cancelled)
    assert set(leased) | set(cancelled) == {job["id"] for job in jobs}
    statuses = {job["id"]: server.get(f"{JOBS}/{job['id']}").json()["status"] for job in jobs}
    assert {statuses[one] for one in leased} <= {"running"}
    assert {statuses[one] for one in cancelled} <= {"cancelled"}
    metrics = server.metrics()
    assert sum(metrics.job(PENDING, "RACE", f"n{i}") for i in range(20)) == 0
    assert sum(metrics.job(CANCELLED, "RACE", f"n{i}") for i in range(20)) == len(cancelled)


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_finished_jobs_and_changes_no_count(server: LiveServer):
    done = server.create()
    server.lease("w1")
    server.step(done["id"], "complete", {"worker": "w1"})
    failed = failed_job(server)
    cancelled = server.create()
    server.step(cancelled["id"], "cancel")
    before = api_samples(server)
    for job in (done, failed, cancelled):
        response = delete(server, job["id"])
        assert response.status_code == 204 and response.content == b""
        assert server.get(f"{JOBS}/{job['id']}").status_code == 404
    assert api_samples(server) == before
    assert server.get(JOBS).json()["jobs"] == []
    assert delete(server, done["id"]).status_code == 404


def test_delete_refuses_pending_and_running_jobs(server: LiveServer):
    running = server.create()
    server.lease("w1")
    pending = server.create()
    for job in (running, pending):
        response = delete(server, job["id"])
        assert response.status_code == 409 and fields_of(response) == ["status"]
        assert server.get(f"{JOBS}/{job['id']}").status_code == 200
    response = delete(server, "nope")
    assert response.status_code == 404 and fields_of(response) == ["id"]


def test_a_resend_after_its_job_was_deleted_is_409_naming_the_key(
    server: LiveServer, clock: ManualClock
):
    body = {"type": "T", "name": "export"}
    headers = {"Idempotency-Key": "k-1"}
    job = server.post(JOBS, body, headers=headers).json()
    server.step(job["id"], "cancel")
    assert delete(server, job["id"]).status_code == 204
    response = server.post(JOBS, body, headers=headers)
    assert response.status_code == 409
    assert fields_of(response) == ["Idempotency-Key"]
    assert server.get(JOBS).json()["jobs"] == []
    clock.advance(DAY_MS / 1000 + 1)  # once the key expired, it makes a new job
    assert server.post(JOBS, body, headers=headers).status_code == 201


def test_the_prune_forgets_cancelled_jobs_after_retention(server: LiveServer, clock):
    old = server.create()
    server.step(old["id"], "cancel")
    clock.advance(3600)
    recent = server.create()
    server.step(recent["id"], "cancel")
    assert server.runtime.queue.prune(1800 * 1000) == 1
    assert server.get(f"{JOBS}/{old['id']}").status_code == 404
    assert server.get(f"{JOBS}/{recent['id']}").status_code == 200
    assert server.metrics().job(CANCELLED) == 2  # counts outlive jobs


# --- bulk --------------------------------------------------------------------------------


def test_bulk_retry_retries_every_matching_failed_job_past_one_batch(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(queue_module, "BULK_BATCH", 3)
    mine = [failed_job(server, "TASK", "a") for _ in range(7)]
    theirs = failed_job(server, "TASK", "b")
    server.create("TASK", "a")  # pending: not retried
    assert server.metrics().job(PENDING, "TASK", "a") == 1
    response = server.post(f"{JOBS}/retry", {"type": "TASK", "name": "a"})
    assert response.status_code == 200 and response.json() == {"retried": 7}
    for job in mine:
        assert server.get(f"{JOBS}/{job['id']}").json()["status"] == "pending"
    assert server.get(f"{JOBS}/{theirs['id']}").json()["status"] == "failed"
    metrics = server.metrics()
    assert metrics.job(RETRIES, "TASK", "a", trigger="manual") == 7
    assert metrics.job(RETRIES, "TASK", "b", trigger="manual") == 0
    assert metrics.job(PENDING, "TASK", "a") == 8
    assert server.post(f"{JOBS}/retry", {"type": "TASK"}).json() == {"retried": 1}
    assert server.post(f"{JOBS}/retry").json() == {"retried": 0}


def test_bulk_cancel_cancels_every_matching_pending_job_past_one_batch(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(queue_module, "BULK_BATCH", 3)
    mine = [server.create("MAIL", "digest") for _ in range(8)]
    other = server.create("MAIL", "welcome")
    running = server.create("MAIL", "digest")
    server.lease("w1", types=["MAIL"])  # the oldest: mine[0]
    response = server.post(f"{JOBS}/cancel", {"type": "MAIL", "name": "digest"})
    assert response.status_code == 200 and response.json() == {"cancelled": 8}
    assert server.get(f"{JOBS}/{mine[0]['id']}").json()["status"] == "running"
    assert server.get(f"{JOBS}/{running['id']}").json()["status"] == "cancelled"
    assert server.get(f"{JOBS}/{other['id']}").json()["status"] == "pending"
    metrics = server.metrics()
    assert metrics.job(CANCELLED, "MAIL", "digest") == 8
    assert metrics.job(PENDING, "MAIL", "digest") == 0
    assert metrics.job(PENDING, "MAIL", "welcome") == 1
    assert server.post(f"{JOBS}/cancel", {}).json() == {"cancelled": 1}


def test_bulk_retry_stops_at_the_pending_cap(tmp_path: Path, clock: ManualClock):
    with live_server(tmp_path, clock=clock) as server:
        for _ in range(4):
            failed_job(server)
        server.create()
        queue = server.runtime.queue
        queue.policy = replace(queue.policy, max_pending=3)  # as --max-pending-jobs 3
        assert server.post(f"{JOBS}/retry").json() == {"retried": 2}
        assert server.metrics().job(PENDING) == 3
        response = server.post(f"{JOBS}/retry")
        assert response.status_code == 429 and fields_of(response) == ["body"]
        assert server.metrics().job(RETRIES, trigger="manual") == 2


@pytest.mark.parametrize("route", ["retry", "cancel"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("TASK", "body"),
        ({"type": 5}, "type"),
        ({"name": ["a"]}, "name"),
        ({"type": ""}, "type"),
        ({"status": "failed"}, "status"),
    ],
)
def test_bulk_routes_name_the_bad_field(server: LiveServer, route: str, body, field: str):
    response = server.post(f"{JOBS}/{route}", body)
    assert response.status_code == 400
    assert fields_of(response) == [field]


def test_bulk_routes_refuse_a_body_that_is_not_json(server: LiveServer):
    response = server.post(f"{JOBS}/cancel", data="{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and fields_of(response) == ["body"]


# --- schema step 8 -----------------------------------------------------------------------


def test_a_store_at_schema_7_migrates_and_prunes_cancelled_jobs(tmp_path: Path):
    import sqlite3

    from exporter.store.sqlite import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:7]:
            for statement in _statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 7")
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.queue_prune(START_MS) == 0
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        (index,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'queue_jobs_finished'"
        ).fetchone()
        assert "'cancelled'" in index
