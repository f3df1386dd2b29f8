"""POST /api/v1/push and GET /api/v1/jobinfo over real HTTP on a real SQLite store."""

from __future__ import annotations

import pytest

from exporter.config import SourceSettings
from tests.helpers.data import START_MS, TOKEN, job
from tests.helpers.served import live_server

PUSH = "/api/v1/push"


@pytest.fixture
def server(tmp_path):
    with live_server(tmp_path) as live:
        yield live


def test_one_object_is_accepted_and_counted_started(server):
    response = server.post(PUSH, job("a1", start_ms=START_MS - 1000))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    metrics = server.metrics()
    assert metrics.job("background_jobs_started_total", "TASK", "send_email", "push") == 1
    assert metrics.job("background_jobs_running", "TASK", "send_email", "push") == 1


def test_an_array_to_a_named_source_follows_the_scrape_rules(server):
    jobs = [job("b1", start_ms=START_MS - 5000), job("b2", start_ms=START_MS - 4000, type="CRON")]
    assert server.post(f"{PUSH}?source=billing", jobs).json() == {"accepted": 2}
    # The same job pushed again, now finished with a finish time: finished once, with its
    # duration; pushed a third time it is not counted again.
    done = job("b1", start_ms=START_MS - 5000, finished=True, finishTimestamp=START_MS - 2000)
    for _ in range(2):
        assert server.post(f"{PUSH}?source=billing", [done]).status_code == 202
    metrics = server.metrics()
    labels = ("TASK", "send_email", "billing")
    assert metrics.job("background_jobs_started_total", *labels) == 1
    assert metrics.job("background_jobs_finished_total", *labels, outcome="completed") == 1
    assert metrics.job("background_jobs_duration_seconds_sum", *labels) == 3.0
    assert metrics.job("background_jobs_running", "CRON", "send_email", "billing") == 1
    # b2 is absent from the later pushes, yet a push is no complete list: not lost.
    assert metrics.job("background_jobs_finished_total", *labels, outcome="lost") == 0


def test_the_same_id_twice_in_one_push_counts_once(server):
    jobs = [job("d1", start_ms=START_MS), job("d1", start_ms=START_MS, finished=True)]
    assert server.post(PUSH, jobs).json() == {"accepted": 2}
    metrics = server.metrics()
    assert metrics.job("background_jobs_started_total", "TASK", "send_email", "push") == 1
    outcome = {"outcome": "completed"}
    assert metrics.job("background_jobs_finished_total", "TASK", "send_email", "push", **outcome)


def test_one_bad_item_rejects_the_batch_and_leaves_no_trace(server):
    server.post(PUSH, job("keep", start_ms=START_MS))  # something already there
    before = server.metrics().exporter_samples()
    store = server.runtime.store
    tracked_before = store.tracked_jobs()
    counts_before = store.snapshot()
    jobs = [
        job("ok1", start_ms=START_MS),
        job("bad1", start_ms=START_MS, finished="true"),
        job("ok2", start_ms=START_MS),
        {**job("bad2", start_ms=START_MS), "id": ""},
    ]
    response = server.post(PUSH, jobs)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "isFinished"), (3, "id")]
    assert all(e["message"] for e in body["errors"])
    assert server.metrics().exporter_samples() == before  # not even job_exporter_invalid_jobs_total
    assert store.tracked_jobs() == tracked_before
    after = store.snapshot()
    assert (after.series, after.health, after.running) == (
        counts_before.series,
        counts_before.health,
        counts_before.running,
    )


def test_semantic_rules_are_errors_with_their_field(server):
    jobs = [
        job("future", start_ms=START_MS + 25 * 3600 * 1000),
        job("backwards", start_ms=START_MS, finished=True, finishTimestamp=START_MS - 1),
    ]
    response = server.post(PUSH, jobs)
    assert response.status_code == 400
    fields = [(e["index"], e["field"]) for e in response.json()["errors"]]
    assert fields == [(0, "startTimestamp"), (1, "finishTimestamp")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b'{"id": "x", ', "application/json", 400, "body"),  # malformed
        (b"42", "application/json", 400, "body"),  # neither object nor array
        (b'"text"', "application/json", 400, "body"),
        (b"", "application/json", 400, "body"),
        (b"\xff\xfe", "application/json", 400, "body"),
        (b"[1]", "application/json", 400, "item"),
        (b"[]", "text/plain", 415, "Content-Type"),
        (b"[]", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ],
)
def test_bodies_that_are_not_jobs_get_a_json_4xx(server, body, content_type, status, field):
    response = server.post(PUSH, data=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["field"] == field
    assert server.runtime.store.tracked_jobs() == []


def test_an_empty_array_is_accepted(server):
    assert server.post(PUSH, []).json() == {"accepted": 0}


@pytest.mark.parametrize("source", ["api", "has space", "x" * 65, "", "scraped"])
def test_sources_that_cannot_be_pushed_to_are_a_400(tmp_path, source):
    scraped = (SourceSettings("scraped", "http://127.0.0.1:9/jobs"),)
    with live_server(tmp_path, sources=scraped) as server:
        response = server.post(PUSH, [], params={"source": source})
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "source"


def test_a_body_over_the_cap_is_a_413(tmp_path):
    with live_server(tmp_path, max_body_bytes=4096, max_payload_bytes=1024) as server:
        jobs = [job(f"j{n}", start_ms=START_MS) for n in range(100)]
        response = server.post(PUSH, jobs)
        assert response.status_code == 413
        assert response.json()["errors"][0]["field"] == "body"
        assert server.runtime.store.tracked_jobs() == []


def test_a_pushed_job_running_past_the_timeout_counts_lost(tmp_path):
    with live_server(tmp_path, push_lost_after=3600) as server:
        server.post(PUSH, [job("old", start_ms=START_MS - 1000), job("new", start_ms=START_MS)])
        server.clock.advance(3600)  # "old" started 3601 s ago, "new" exactly 3600 s ago
        assert server.runtime.sweeper.pushed() == 1
        assert server.runtime.sweeper.pushed() == 0  # counted once
        metrics = server.metrics()
        labels = ("TASK", "send_email", "push")
        assert metrics.job("background_jobs_finished_total", *labels, outcome="lost") == 1
        assert metrics.job("background_jobs_running", *labels) == 1
        # Pushed finished later, the lost job is not counted again.
        done = job("old", start_ms=START_MS - 1000, finished=True)
        server.post(PUSH, [done])
        metrics = server.metrics()
        assert metrics.job("background_jobs_finished_total", *labels, outcome="completed") == 0


def test_jobinfo_lists_every_tracked_job_in_jobinfo_shape(server):
    server.post(PUSH, [job("r1", start_ms=START_MS - 10)])
    server.post(
        f"{PUSH}?source=other",
        [
            job(
                "f1",
                start_ms=START_MS - 20,
                finished=True,
                finishTimestamp=START_MS,
                status="failed",
            )
        ],
    )
    api_job = server.create("TASK", "resize")
    server.lease("w1")
    server.create("TASK", "never_started")
    everything = server.get("/api/v1/jobinfo").json()
    by_id = {job["id"]: job for job in everything}
    assert set(by_id) == {"r1", "f1", api_job["id"]}  # pending jobs have no start yet
    assert by_id["r1"] == {
        "id": "r1",
        "name": "send_email",
        "startTimestamp": START_MS - 10,
        "backgroundJobType": "TASK",
        "isFinished": False,
        "finishTimestamp": None,
        "status": "running",
        "source": "push",
        "outcome": None,
        "attempt": 1,
        "enqueueTimestamp": None,
        "error": None,
    }
    assert by_id["f1"]["isFinished"] is True
    assert by_id["f1"]["status"] == "failed"
    assert by_id["f1"]["finishTimestamp"] == START_MS
    assert by_id[api_job["id"]]["source"] == "api"
    assert [job["id"] for job in server.get("/api/v1/jobinfo?source=other").json()] == ["f1"]
    api_only = server.get("/api/v1/jobinfo?source=api").json()
    assert [job["id"] for job in api_only] == [api_job["id"]]
    assert server.get("/api/v1/jobinfo?source=nobody").json() == []


def test_jobinfo_output_is_valid_push_input(server):
    """job-exporter can be its own seed dashboard's endpoint, or feed another exporter."""
    server.post(PUSH, [job("x1", start_ms=START_MS - 10, finished=True, status="failed")])
    listed = server.get("/api/v1/jobinfo").json()
    assert server.post(f"{PUSH}?source=copy", listed).json() == {"accepted": 1}


def test_push_needs_the_token_when_one_is_set(tmp_path):
    with live_server(tmp_path, api_token=TOKEN) as server:
        assert server.post(PUSH, []).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert server.post(PUSH, [], headers=headers).status_code == 202
        assert server.get("/api/v1/jobinfo").status_code == 200
