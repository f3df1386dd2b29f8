"""`Idempotency-Key` on `POST /api/v1/jobs` and the cap on pending jobs (docs/api.md), on
both stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.clock import ManualClock
from exporter.jobs.schedules import ScheduleSpec
from tests.helpers.data import START_MS
from tests.helpers.served import LiveServer, live_server
from tests.helpers.waiting import poll

KEY = "Idempotency-Key"
DAY_S = 24 * 3600


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def server(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[LiveServer]:
    with live_server(tmp_path, clock=clock, store=store_url) as served:
        yield served


def create(server: LiveServer, key: str | None, **body):
    headers = {} if key is None else {KEY: key}
    return server.post("/api/v1/jobs", {"type": "T", "name": "export", **body}, headers=headers)


def listed(server: LiveServer) -> list[dict]:
    return server.get("/api/v1/jobs").json()["jobs"]


def test_a_resent_create_makes_no_second_job(server: LiveServer):
    first = create(server, "order-42", payload={"a": 1, "b": 2})
    assert first.status_code == 201
    again = server.session.post(
        server.url("/api/v1/jobs"),
        data='{"payload": {"b": 2, "a": 1}, "name": "export", "type": "T"}',  # same, reordered
        headers={KEY: "order-42", "Content-Type": "application/json"},
        timeout=10,
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert [job["id"] for job in listed(server)] == [first.json()["id"]]
    assert server.metrics().job("background_jobs_pending", "T", "export") == 1


def test_the_same_key_with_another_request_is_a_conflict(server: LiveServer):
    assert create(server, "k", payload=1).status_code == 201
    answer = create(server, "k", payload=2)
    assert answer.status_code == 409
    assert answer.json()["errors"][0]["field"] == KEY
    assert len(listed(server)) == 1


def test_a_key_holds_for_a_day(server: LiveServer, clock: ManualClock):
    first = create(server, "daily").json()
    clock.advance(DAY_S - 1)
    assert create(server, "daily").json()["id"] == first["id"]
    clock.advance(2)
    later = create(server, "daily")
    assert later.status_code == 201
    assert later.json()["id"] != first["id"]
    server.runtime.queue.prune(7 * DAY_S * 1000)  # the key sweep runs with the job prune
    assert create(server, "daily").json()["id"] == later.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_a_bad_key_is_refused_naming_the_header(server: LiveServer, key: str):
    answer = create(server, key)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == KEY
    assert listed(server) == []


def test_creates_without_a_key_each_make_a_job(server: LiveServer):
    assert create(server, None).status_code == 201
    assert create(server, None).status_code == 201
    assert len(listed(server)) == 2


def test_concurrent_resends_make_one_job(server: LiveServer):
    answers: list[int] = []
    ids: set[str] = set()
    lock = threading.Lock()

    def send() -> None:
        answer = create(server, "race")
        with lock:
            answers.append(answer.status_code)
            ids.add(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == [200] * 7 + [201]
    assert len(ids) == 1
    assert len(listed(server)) == 1


def test_creates_beyond_the_pending_cap_get_429_until_jobs_are_taken(
    tmp_path: Path, store_url: str, clock: ManualClock
):
    with live_server(tmp_path, clock=clock, store=store_url, max_pending_jobs=3) as server:
        for _ in range(3):
            assert create(server, None).status_code == 201
        refused = create(server, None)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"].startswith("3 jobs are pending")
        assert len(listed(server)) == 3
        assert server.lease() is not None  # one pending job is running now
        answer = poll(lambda: create(server, None), until=lambda r: r.status_code == 201)
        assert answer.status_code == 201  # the cap reads the store again within a second
        assert create(server, None).status_code == 429


def test_schedules_wait_while_the_queue_is_full_and_fire_late_after(make_exporter, clock, caplog):
    runtime = make_exporter({}, max_pending_jobs=1).runtime
    runtime.schedules.create(ScheduleSpec(type="T", name="tick", interval_s=60.0))
    clock.advance(60)
    assert runtime.schedules.sweep() == 1
    clock.advance(60)
    assert runtime.schedules.sweep() == 0  # full: the fire waits
    assert runtime.schedules.sweep() == 0
    assert [r.getMessage() for r in caplog.records].count(
        "schedules wait to fire: 1 jobs are pending, as many as --max-pending-jobs allows"
    ) == 1
    assert runtime.queue.lease("w") is not None
    runtime.queue._pending_read_at = float("-inf")  # read the store again now, not in 1 s
    assert runtime.schedules.sweep() == 1
