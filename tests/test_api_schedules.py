"""The schedules API over real HTTP: success paths, every refusal as a 4xx naming its field,
and the schedule metrics on /metrics. The clock is injected; sweeps run when the test says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.clock import ManualClock
from tests.helpers.data import START_MS, TOKEN
from tests.helpers.processes import promtool_check_metrics
from tests.helpers.served import LiveServer, live_server

SCHEDULES = "/api/v1/schedules"


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    with live_server(tmp_path, clock=ManualClock(START_MS)) as server:
        yield server


def fields_of(response) -> list[str]:
    body = response.json()
    assert set(body) == {"error", "errors"}
    return [error["field"] for error in body["errors"]]


def create(server: LiveServer, **body) -> dict:
    response = server.post(SCHEDULES, {"type": "CRON", "name": "report", **body})
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{SCHEDULES}/{response.json()['id']}"
    return response.json()


def test_create_list_inspect_pause_resume_run_and_delete(server: LiveServer):
    made = create(
        server,
        cron="*/5 * * * *",
        timezone="Europe/Berlin",
        payload={"to": "ops"},
        misfire="skip",
        maxAttempts=2,
    )
    assert made["state"] == "active"
    assert made["cron"] == "*/5 * * * *" and made["intervalSeconds"] is None
    assert made["timezone"] == "Europe/Berlin" and made["misfire"] == "skip"
    assert made["nextFireAt"] > START_MS and made["nextFireAt"] % 300_000 == 0
    assert made["fires"] == {"onTime": 0, "late": 0, "skipped": 0, "manual": 0}
    server.clock.advance(1)  # listed in creation order
    interval = create(server, intervalSeconds=90)
    assert interval["nextFireAt"] == START_MS + 91_000
    assert interval["timezone"] == "UTC" and interval["misfire"] == "run_once"

    listed = server.get(SCHEDULES).json()["schedules"]
    assert [one["id"] for one in listed] == [made["id"], interval["id"]]
    assert server.get(f"{SCHEDULES}/{made['id']}").json() == made

    paused = server.post(f"{SCHEDULES}/{made['id']}/pause").json()
    assert paused["state"] == "paused" and paused["nextFireAt"] is None
    resumed = server.post(f"{SCHEDULES}/{made['id']}/resume").json()
    assert resumed["state"] == "active" and resumed["nextFireAt"] == made["nextFireAt"]

    run = server.post(f"{SCHEDULES}/{made['id']}/run")
    assert run.status_code == 201
    job = run.json()
    assert (job["type"], job["name"], job["payload"]) == ("CRON", "report", {"to": "ops"})
    assert job["status"] == "pending" and job["maxAttempts"] == 2
    assert server.get(f"/api/v1/jobs/{job['id']}").json()["id"] == job["id"]
    after = server.get(f"{SCHEDULES}/{made['id']}").json()
    assert after["fires"]["manual"] == 1 and after["lastJobId"] == job["id"]

    assert server.session.delete(server.url(f"{SCHEDULES}/{made['id']}")).status_code == 204
    assert server.get(f"{SCHEDULES}/{made['id']}").status_code == 404
    assert [one["id"] for one in server.get(SCHEDULES).json()["schedules"]] == [interval["id"]]


def test_a_fire_creates_a_job_and_its_completion_is_the_last_success(server: LiveServer):
    made = create(server, intervalSeconds=60)
    server.clock.advance(60)
    assert server.runtime.schedules.sweep() == 1
    job = server.lease("w1")
    assert job is not None and job["name"] == "report"
    server.clock.advance(2)
    server.step(job["id"], "complete", {"worker": "w1"})
    schedule = server.get(f"{SCHEDULES}/{made['id']}").json()
    assert schedule["lastFireAt"] == START_MS + 60_000
    assert schedule["lastSuccessAt"] == START_MS + 62_000
    assert schedule["fires"]["onTime"] == 1

    metrics = server.metrics()
    labels = {"schedule": made["id"], "type": "CRON", "name": "report"}
    fires = "job_exporter_schedule_fires_total"
    assert metrics.value(fires, **labels, result="on_time") == 1
    for result in ("late", "skipped", "manual"):
        assert metrics.value(fires, **labels, result=result) == 0
    assert (
        metrics.value("job_exporter_schedule_last_fire_timestamp_seconds", **labels)
        == (START_MS + 60_000) / 1000
    )
    assert (
        metrics.value("job_exporter_schedule_last_success_timestamp_seconds", **labels)
        == (START_MS + 62_000) / 1000
    )
    assert (
        metrics.value("job_exporter_schedule_next_fire_timestamp_seconds", **labels)
        == (START_MS + 120_000) / 1000
    )
    assert metrics.value("job_exporter_schedule_paused", **labels) == 0
    # The job is an ordinary job-API job in the job families too.
    assert metrics.job("background_jobs_finished_total", "CRON", "report", outcome="completed")
    server.post(f"{SCHEDULES}/{made['id']}/pause")
    metrics = server.metrics()
    assert metrics.value("job_exporter_schedule_paused", **labels) == 1
    assert metrics.value("job_exporter_schedule_next_fire_timestamp_seconds", **labels) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"cron": 5}, "cron"),
        ({"cron": "* * * * *", "timezone": "Nowhere/Special"}, "timezone"),
        ({"cron": "* * * * *", "timezone": "/etc/passwd"}, "timezone"),
        ({"cron": "* * * * *", "timezone": ""}, "timezone"),
        ({"intervalSeconds": 0}, "intervalSeconds"),
        ({"intervalSeconds": -5}, "intervalSeconds"),
        ({"intervalSeconds": "60"}, "intervalSeconds"),
        ({"intervalSeconds": 1e12}, "intervalSeconds"),
        ({}, "cron"),
        ({"cron": "* * * * *", "intervalSeconds": 60}, "cron"),
        ({"cron": "* * * * *", "misfire": "sometimes"}, "misfire"),
        ({"cron": "* * * * *", "maxAttempts": 0}, "maxAttempts"),
        ({"cron": "* * * * *", "every": 5}, "every"),
    ],
)
def test_invalid_schedules_are_400_naming_the_field(server: LiveServer, body: dict, field: str):
    response = server.post(SCHEDULES, {"type": "T", "name": "n", **body})
    assert response.status_code == 400, response.text
    assert fields_of(response) == [field]
    assert server.get(SCHEDULES).json()["schedules"] == []


def test_missing_type_and_bad_bodies(server: LiveServer):
    response = server.post(SCHEDULES, {"name": "n", "cron": "* * * * *"})
    assert response.status_code == 400 and fields_of(response) == ["type"]
    response = server.session.post(
        server.url(SCHEDULES), data="{", timeout=10, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and fields_of(response) == ["body"]
    response = server.session.post(
        server.url(SCHEDULES), data="x=1", timeout=10, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_unknown_schedules_are_404(server: LiveServer):
    assert fields_of(server.get(f"{SCHEDULES}/nope")) == ["id"]
    for action in ("pause", "resume", "run"):
        response = server.post(f"{SCHEDULES}/nope/{action}")
        assert response.status_code == 404 and fields_of(response) == ["id"]
    response = server.session.delete(server.url(f"{SCHEDULES}/nope"))
    assert response.status_code == 404 and fields_of(response) == ["id"]


def test_state_changes_that_do_not_apply_are_409(server: LiveServer):
    made = create(server, intervalSeconds=60)
    response = server.post(f"{SCHEDULES}/{made['id']}/resume")
    assert response.status_code == 409 and fields_of(response) == ["paused"]
    assert server.post(f"{SCHEDULES}/{made['id']}/pause").status_code == 200
    response = server.post(f"{SCHEDULES}/{made['id']}/pause")
    assert response.status_code == 409 and fields_of(response) == ["paused"]


def test_creating_past_the_limit_is_409(tmp_path):
    with live_server(tmp_path, max_schedules=1) as server:
        create(server, intervalSeconds=60)
        response = server.post(SCHEDULES, {"type": "T", "name": "n", "intervalSeconds": 60})
        assert response.status_code == 409 and fields_of(response) == ["id"]


def test_a_payload_over_the_cap_is_413(tmp_path):
    with live_server(tmp_path, max_payload_bytes=100) as server:
        response = server.post(
            SCHEDULES, {"type": "T", "name": "n", "intervalSeconds": 60, "payload": "x" * 200}
        )
        assert response.status_code == 413 and fields_of(response) == ["payload"]


def test_writes_need_the_token_when_one_is_set(tmp_path):
    with live_server(tmp_path, api_token=TOKEN) as server:
        body = {"type": "T", "name": "n", "intervalSeconds": 60}
        assert server.post(SCHEDULES, body).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        made = server.post(SCHEDULES, body, headers=good).json()
        assert server.post(f"{SCHEDULES}/{made['id']}/run").status_code == 401
        assert server.session.delete(server.url(f"{SCHEDULES}/{made['id']}")).status_code == 401
        assert server.get(SCHEDULES).status_code == 200  # reads stay open


@pytest.mark.slow
def test_the_schedule_families_pass_promtool_lint(server: LiveServer):
    create(server, intervalSeconds=60)
    server.clock.advance(60)
    server.runtime.schedules.sweep()
    text = server.get("/metrics").text
    assert "job_exporter_schedule_fires_total{" in text
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
