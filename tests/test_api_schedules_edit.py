"""PATCH /api/v1/schedules/<id> over real HTTP, on SQLite and on a real PostgreSQL: every
editable field, every bad value a 400 naming its field with nothing changed, 404 for an
unknown id, and a timing change that moves the next fire from now without a burst of missed
fires, keeping a pause. One server per module and store kind; the clock is injected and only
moves forward, so each test makes its own schedules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.clock import ManualClock
from tests.helpers.data import START_MS
from tests.helpers.served import LiveServer, live_server

SCHEDULES = "/api/v1/schedules"
MINUTE_MS = 60_000


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("edit")
    settings = {}
    if request.param == "postgresql":
        settings["store"] = request.getfixturevalue("postgres_cluster").new_database()
    with live_server(folder, clock=ManualClock(START_MS), **settings) as server:
        yield server


@pytest.fixture(autouse=True)
def no_schedules(server: LiveServer) -> None:
    """Each test starts with no schedule, so a sweep's count is the test's own fires."""
    for one in server.get(SCHEDULES).json()["schedules"]:
        server.session.delete(server.url(f"{SCHEDULES}/{one['id']}"), timeout=10)


def create(server: LiveServer, **body) -> dict:
    response = server.post(SCHEDULES, {"type": "CRON", "name": "report", **body})
    assert response.status_code == 201, response.text
    return response.json()


def patch(server: LiveServer, schedule_id: str, body, status: int = 200):
    response = server.session.patch(server.url(f"{SCHEDULES}/{schedule_id}"), json=body, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def get(server: LiveServer, schedule_id: str) -> dict:
    return server.get(f"{SCHEDULES}/{schedule_id}").json()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "NIGHTLY"}, {"type": "NIGHTLY"}),
        ({"name": "totals"}, {"name": "totals"}),
        ({"payload": {"to": ["ops"]}}, {"payload": {"to": ["ops"]}}),
        ({"payload": None}, {"payload": None}),
        ({"maxAttempts": 5}, {"maxAttempts": 5}),
        ({"maxAttempts": None}, {"maxAttempts": None}),
        ({"misfire": "skip"}, {"misfire": "skip"}),
        ({"cron": "0 3 * * *"}, {"cron": "0 3 * * *", "intervalSeconds": None}),
        ({"intervalSeconds": 30}, {"cron": None, "intervalSeconds": 30}),
        ({"timezone": "Asia/Tokyo"}, {"timezone": "Asia/Tokyo"}),
        ({}, {}),
    ],
)
def test_each_field_can_be_edited_and_nothing_else_changes(server: LiveServer, body, expected):
    made = create(server, cron="*/5 * * * *", payload={"a": 1}, maxAttempts=2)
    answer = patch(server, made["id"], body)
    assert get(server, made["id"]) == answer
    unchanged = {k: v for k, v in made.items() if k not in expected and k != "nextFireAt"}
    assert {k: answer[k] for k in unchanged} == unchanged
    assert {k: answer[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"cron": None}, "cron"),
        ({"cron": "* * * * *", "intervalSeconds": 60}, "cron"),
        ({"timezone": "Nowhere/Special"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"intervalSeconds": 0}, "intervalSeconds"),
        ({"intervalSeconds": "60"}, "intervalSeconds"),
        ({"intervalSeconds": 1e12}, "intervalSeconds"),
        ({"misfire": "sometimes"}, "misfire"),
        ({"maxAttempts": 0}, "maxAttempts"),
        ({"type": ""}, "type"),
        ({"type": None}, "type"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\u0000b"}, "name"),
        ({"name": "ok", "every": 5}, "every"),
    ],
)
def test_a_bad_value_is_a_400_naming_its_field_and_changes_nothing(server: LiveServer, body, field):
    made = create(server, cron="*/5 * * * *", timezone="Europe/Berlin")
    response = server.session.patch(server.url(f"{SCHEDULES}/{made['id']}"), json=body, timeout=10)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert set(answer) == {"error", "errors"}
    assert [error["field"] for error in answer["errors"]] == [field]
    assert get(server, made["id"]) == made


def test_bodies_that_are_not_an_edit(server: LiveServer):
    made = create(server, intervalSeconds=60)
    url = server.url(f"{SCHEDULES}/{made['id']}")
    headers = {"Content-Type": "application/json"}
    assert server.session.patch(url, data="{", headers=headers, timeout=10).status_code == 400
    assert server.session.patch(url, data="[]", headers=headers, timeout=10).status_code == 400
    assert server.session.patch(url, data="x", timeout=10).status_code in (400, 415)
    assert get(server, made["id"]) == made


def test_an_unknown_id_is_404(server: LiveServer):
    response = server.session.patch(server.url(f"{SCHEDULES}/nope"), json={"name": "x"}, timeout=10)
    assert response.status_code == 404
    assert [error["field"] for error in response.json()["errors"]] == ["id"]


def test_a_new_timetable_fires_next_after_now_without_a_burst(server: LiveServer):
    made = create(server, name="hourly", cron="0 * * * *")
    server.clock.advance(3 * 3600)  # three hourly fires are overdue, nobody swept
    edited = patch(server, made["id"], {"cron": "*/10 * * * *"})
    now = server.clock.wall_ms()
    assert now < edited["nextFireAt"] <= now + 10 * MINUTE_MS
    assert edited["nextFireAt"] % (10 * MINUTE_MS) == 0
    assert server.runtime.schedules.sweep() == 0  # nothing missed is owed to an edit
    assert get(server, made["id"])["fires"] == made["fires"]
    server.clock.advance((edited["nextFireAt"] - now) / 1000)
    assert server.runtime.schedules.sweep() == 1
    fired = get(server, made["id"])
    assert fired["fires"]["onTime"] == 1 and fired["fires"]["skipped"] == 0
    assert fired["lastFireAt"] == edited["nextFireAt"]
    assert fired["nextFireAt"] == edited["nextFireAt"] + 10 * MINUTE_MS


def test_an_interval_edit_keeps_its_anchor_and_never_repeats_a_fire(server: LiveServer):
    made = create(server, name="ticker", intervalSeconds=60)
    created = made["createdAt"]
    server.clock.advance(60)
    assert server.runtime.schedules.sweep() == 1
    server.clock.advance(10)
    edited = patch(server, made["id"], {"intervalSeconds": 45})
    # The first creation + k * 45 s after now (70 s after creation): 90 s.
    assert edited["nextFireAt"] == created + 90_000
    server.clock.advance(20)
    assert server.runtime.schedules.sweep() == 1
    assert get(server, made["id"])["nextFireAt"] == created + 135_000
    # Back to cron and to an interval again: the next fire is after the latest fire made.
    edited = patch(server, made["id"], {"intervalSeconds": 90})
    assert edited["nextFireAt"] == created + 180_000
    assert get(server, made["id"])["fires"]["onTime"] == 2


def test_a_paused_schedule_stays_paused_and_resumes_on_its_new_timetable(server: LiveServer):
    made = create(server, name="paused", cron="0 * * * *")
    server.post(f"{SCHEDULES}/{made['id']}/pause")
    edited = patch(server, made["id"], {"cron": "*/15 * * * *", "name": "quarterly"})
    assert edited["state"] == "paused" and edited["nextFireAt"] is None
    server.clock.advance(3600)
    assert server.runtime.schedules.sweep() == 0
    resumed = server.post(f"{SCHEDULES}/{made['id']}/resume").json()
    now = server.clock.wall_ms()
    assert now < resumed["nextFireAt"] <= now + 15 * MINUTE_MS
    assert resumed["nextFireAt"] % (15 * MINUTE_MS) == 0


def test_a_rename_moves_the_series_with_their_counts_and_new_jobs_carry_it(server: LiveServer):
    made = create(server, type="OLD", name="renamed_job", intervalSeconds=60)
    server.clock.advance(60)
    assert server.runtime.schedules.sweep() == 1
    server.post(f"{SCHEDULES}/{made['id']}/run")
    patch(server, made["id"], {"type": "NEW", "name": "renamed_job2"})
    metrics = server.metrics()
    fires = "job_exporter_schedule_fires_total"
    new = {"schedule": made["id"], "type": "NEW", "name": "renamed_job2"}
    old = {"schedule": made["id"], "type": "OLD", "name": "renamed_job"}
    assert metrics.value(fires, **new, result="on_time") == 1
    assert metrics.value(fires, **new, result="manual") == 1
    assert metrics.value(fires, **old, result="on_time") is None
    # The jobs it made keep their labels; the next fire's job has the new ones.
    server.clock.advance(60)
    assert server.runtime.schedules.sweep() == 1
    job = server.get(f"/api/v1/jobs/{get(server, made['id'])['lastJobId']}").json()
    assert (job["type"], job["name"]) == ("NEW", "renamed_job2")


def test_an_edit_between_a_sweeps_plan_and_its_fire_wins(server: LiveServer):
    """A fire planned from the old definition is refused once the schedule was edited; the
    next sweep fires the edited schedule."""
    made = create(server, type="RACE", name="before", intervalSeconds=60)
    runtime = server.runtime
    server.clock.advance(60)
    (due,) = [
        s for s in runtime.store.schedule_list(server.clock.now_ms() + 1) if s.id == made["id"]
    ]
    patch(server, made["id"], {"name": "after"})
    assert runtime.schedules._fire_due(due, server.clock.now_ms()) == 0
    assert runtime.schedules.sweep() == 1
    job = server.get(f"/api/v1/jobs/{get(server, made['id'])['lastJobId']}").json()
    assert job["name"] == "after"


def test_after_the_wall_clock_steps_back_an_edit_repeats_no_fire(server: LiveServer):
    made = create(server, name="stepped", cron="*/10 * * * *")
    server.clock.advance((made["nextFireAt"] - server.clock.wall_ms()) / 1000)
    assert server.runtime.schedules.sweep() == 1
    fired = get(server, made["id"])["lastFireAt"]
    server.clock.step(-3600)  # the wall clock (the calendar) goes back an hour
    edited = patch(server, made["id"], {"cron": "*/5 * * * *"})
    assert edited["nextFireAt"] == fired + 5 * MINUTE_MS
    server.clock.step(3600)
    server.clock.advance(5 * 60)
    assert server.runtime.schedules.sweep() == 1
    assert get(server, made["id"])["fires"]["onTime"] == 2


def test_an_interval_schedule_switches_to_cron_and_back(server: LiveServer):
    made = create(server, name="switch", intervalSeconds=60, timezone="Europe/Berlin")
    edited = patch(server, made["id"], {"cron": "0 2 * * *"})
    assert (edited["cron"], edited["intervalSeconds"]) == ("0 2 * * *", None)
    # 02:00 in Berlin is 01:00 or 00:00 UTC: a whole hour, after now.
    assert edited["nextFireAt"] % 3_600_000 == 0 and edited["nextFireAt"] > server.clock.wall_ms()
    back = patch(server, made["id"], {"intervalSeconds": 120})
    assert (back["cron"], back["intervalSeconds"]) == (None, 120)
    assert (back["nextFireAt"] - made["createdAt"]) % 120_000 == 0
