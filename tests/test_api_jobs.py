"""Every job-API endpoint's success path and each of its errors, over real HTTP."""

from __future__ import annotations

import pytest

from exporter.app import create_app
from exporter.config import Settings
from tests.helpers.data import START_MS, TOKEN
from tests.helpers.served import live_server, sqlite_url

JOBS = "/api/v1/jobs"


@pytest.fixture
def server(tmp_path):
    with live_server(tmp_path) as live:
        yield live


def fields_of(response) -> list[str]:
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return [error["field"] for error in body["errors"]]


# --- create -------------------------------------------------------------------------------


def test_create_answers_201_with_the_pending_job(server):
    response = server.post(
        JOBS, {"type": "TASK", "name": "resize", "payload": {"id": 7, "sizes": [1, 2]}}
    )
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"{JOBS}/{job['id']}"
    assert job == {
        "id": job["id"],
        "type": "TASK",
        "name": "resize",
        "status": "pending",
        "payload": {"id": 7, "sizes": [1, 2]},
        "result": None,
        "attempts": 0,
        "maxAttempts": 3,
        "lastError": None,
        "worker": None,
        "createdAt": START_MS,
        "startedAt": None,
        "finishedAt": None,
        "nextAttemptAt": START_MS,
        "leaseExpiresAt": None,
    }
    assert server.create(maxAttempts=7)["maxAttempts"] == 7
    metrics = server.metrics()
    assert metrics.job("background_jobs_pending", "TASK", "resize") == 1
    assert metrics.job("background_jobs_pending", "TASK", "send_email") == 1
    assert metrics.job("background_jobs_started_total", "TASK", "resize") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "type"),
        ({"type": "TASK"}, "name"),
        ({"type": "", "name": "x"}, "type"),
        ({"type": "T" * 101, "name": "x"}, "type"),
        ({"type": "TASK", "name": 5}, "name"),
        ({"type": "TASK", "name": "x", "maxAttempts": 0}, "maxAttempts"),
        ({"type": "TASK", "name": "x", "maxAttempts": 101}, "maxAttempts"),
        ({"type": "TASK", "name": "x", "maxAttempts": "3"}, "maxAttempts"),
        ({"type": "TASK", "name": "x", "retries": 3}, "retries"),
        ([], "body"),
    ],
)
def test_create_names_the_bad_field(server, body, field):
    response = server.post(JOBS, body)
    assert response.status_code == 400
    assert fields_of(response) == [field]


def test_a_payload_over_the_cap_is_a_413_naming_it(tmp_path):
    with live_server(tmp_path, max_payload_bytes=100) as server:
        response = server.post(JOBS, {"type": "T", "name": "n", "payload": "x" * 200})
        assert response.status_code == 413
        assert fields_of(response) == ["payload"]
        assert server.get(JOBS).json()["jobs"] == []


def test_a_body_over_the_cap_is_a_413(tmp_path):
    with live_server(tmp_path, max_body_bytes=2048, max_payload_bytes=1024) as server:
        response = server.post(JOBS, {"type": "T", "name": "n", "payload": "x" * 4000})
        assert response.status_code == 413
        assert fields_of(response) == ["body"]
        assert "2048" in response.json()["error"]


# --- get and list -------------------------------------------------------------------------


def test_get_answers_the_job_and_404_for_an_unknown_id(server):
    job = server.create()
    assert server.get(f"{JOBS}/{job['id']}").json() == job
    response = server.get(f"{JOBS}/nope")
    assert response.status_code == 404
    assert fields_of(response) == ["id"]


def paged(server, **params) -> tuple[list[str], int]:
    """Every id a listing pages through two at a time, and how many pages it took."""
    ids, cursor, pages = [], None, 0
    while True:
        page = server.get(
            JOBS, params={"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        ).json()
        ids += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            return ids, pages


def test_list_filters_and_pages_with_a_cursor(server):
    created = [server.create("TASK", f"n{i % 2}") for i in range(5)]
    created.append(server.create("CRON", "n0"))
    leased = server.lease("w1")
    assert leased["id"] == created[0]["id"]

    oldest_first = [job["id"] for job in created]
    assert paged(server, order="oldest") == (oldest_first, 3)
    # Newest first is the default, and pages through its cursor the other way.
    assert paged(server) == (oldest_first[::-1], 3)
    assert paged(server, order="newest") == (oldest_first[::-1], 3)
    assert paged(server, order="newest", type="TASK") == (oldest_first[4::-1], 3)

    def listed(**params) -> list[str]:
        return [job["id"] for job in server.get(JOBS, params=params).json()["jobs"]]

    assert listed(status="running") == [created[0]["id"]]
    assert listed(status="pending", type="TASK", name="n0", order="oldest") == [
        created[2]["id"],
        created[4]["id"],
    ]
    assert listed(status="pending", type="TASK", name="n0") == [created[4]["id"], created[2]["id"]]
    assert listed(type="CRON") == [created[5]["id"]]
    assert listed(status="failed") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"order": "latest"}, "order"),
        ({"order": ""}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "abc"}, "cursor"),
        # Found by tests/test_fuzz_api.py: str.isdigit() takes a superscript two or an
        # Arabic-Indic digit, int() does not.
        ({"cursor": "\u00b2"}, "cursor"),
        ({"limit": "\u0661"}, "limit"),
        # Beyond a 64-bit integer the store cannot bind it (SQLite OverflowError).
        ({"cursor": str(2**63)}, "cursor"),
        ({"cursor": "9" * 5000}, "cursor"),
    ],
)
def test_list_names_a_bad_parameter(server, params, field):
    response = server.get(JOBS, params=params)
    assert response.status_code == 400
    assert fields_of(response) == [field]


# --- lease, heartbeat, complete, fail, retry --------------------------------------------


def test_lease_answers_the_running_job_or_204(server):
    assert server.post(f"{JOBS}/lease", {"worker": "w1"}).status_code == 204
    email = server.create("TASK", "send_email")
    report = server.create("REPORT", "monthly")
    response = server.post(f"{JOBS}/lease", {"worker": "w1", "types": ["REPORT"]})
    assert response.status_code == 200
    job = response.json()
    assert (job["id"], job["status"], job["worker"], job["attempts"]) == (
        report["id"],
        "running",
        "w1",
        1,
    )
    assert job["startedAt"] == START_MS
    assert job["leaseExpiresAt"] == START_MS + 30_000
    assert server.post(f"{JOBS}/lease", {"worker": "w2", "types": ["REPORT"]}).status_code == 204
    job = server.lease("w2", leaseSeconds=5)
    assert (job["id"], job["leaseExpiresAt"]) == (email["id"], START_MS + 5_000)
    assert server.lease("w3") is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "worker"),
        ({"worker": ""}, "worker"),
        ({"worker": 1}, "worker"),
        ({"worker": "w", "types": []}, "types"),
        ({"worker": "w", "types": "TASK"}, "types"),
        ({"worker": "w", "types": [""]}, "types[0]"),
        ({"worker": "w", "leaseSeconds": 0}, "leaseSeconds"),
        ({"worker": "w", "leaseSeconds": 86401}, "leaseSeconds"),
    ],
)
def test_lease_names_the_bad_field(server, body, field):
    response = server.post(f"{JOBS}/lease", body)
    assert response.status_code == 400
    assert fields_of(response) == [field]


def test_heartbeat_extends_the_lease_of_its_worker_only(server):
    job = server.create()
    server.lease("w1", leaseSeconds=10)
    server.clock.advance(8)
    beat = server.step(job["id"], "heartbeat", {"worker": "w1", "leaseSeconds": 10})
    assert beat["leaseExpiresAt"] == START_MS + 18_000
    other = server.post(f"{JOBS}/{job['id']}/heartbeat", {"worker": "w2"})
    assert other.status_code == 409
    assert fields_of(other) == ["worker"]
    assert server.post(f"{JOBS}/nope/heartbeat", {"worker": "w1"}).status_code == 404


def test_complete_stores_the_result_and_counts_the_run(server):
    job = server.create("TASK", "resize")
    server.lease("w1")
    server.clock.advance(2.5)
    wrong = server.post(f"{JOBS}/{job['id']}/complete", {"worker": "w2"})
    assert wrong.status_code == 409
    assert fields_of(wrong) == ["worker"]
    done = server.step(job["id"], "complete", {"worker": "w1", "result": {"url": "/x.png"}})
    assert (done["status"], done["result"], done["finishedAt"]) == (
        "completed",
        {"url": "/x.png"},
        START_MS + 2500,
    )
    again = server.post(f"{JOBS}/{job['id']}/complete", {"worker": "w1"})
    assert again.status_code == 409
    assert fields_of(again) == ["status"]
    assert server.post(f"{JOBS}/nope/complete", {"worker": "w1"}).status_code == 404
    metrics = server.metrics()
    labels = ("TASK", "resize")
    assert metrics.job("background_jobs_started_total", *labels) == 1
    assert metrics.job("background_jobs_finished_total", *labels, outcome="completed") == 1
    assert metrics.job("background_jobs_duration_seconds_sum", *labels) == 2.5
    assert metrics.job("background_jobs_duration_seconds_bucket", *labels, le="2.5") == 1
    assert metrics.job("background_jobs_duration_seconds_bucket", *labels, le="1.0") == 0
    assert metrics.job("background_jobs_queue_wait_seconds_count", *labels) == 1
    assert metrics.job("background_jobs_running", *labels) == 0
    assert metrics.job("background_jobs_pending", *labels) == 0


def test_a_result_over_the_payload_cap_is_a_413_and_the_lease_stays(tmp_path):
    with live_server(tmp_path, max_payload_bytes=100) as server:
        job = server.create()
        server.lease("w1")
        response = server.post(
            f"{JOBS}/{job['id']}/complete", {"worker": "w1", "result": "x" * 200}
        )
        assert response.status_code == 413
        assert fields_of(response) == ["result"]
        assert server.get(f"{JOBS}/{job['id']}").json()["status"] == "running"


def test_fail_then_manual_retry(server):
    job = server.create("TASK", "charge")
    server.lease("w1")
    failed = server.step(
        job["id"], "fail", {"worker": "w1", "error": "card declined", "retryable": False}
    )
    assert (failed["status"], failed["lastError"], failed["worker"]) == (
        "failed",
        "card declined",
        "w1",
    )
    retried = server.step(job["id"], "retry")
    assert (retried["status"], retried["nextAttemptAt"], retried["worker"]) == (
        "pending",
        START_MS,
        None,
    )
    conflict = server.post(f"{JOBS}/{job['id']}/retry")
    assert conflict.status_code == 409
    assert fields_of(conflict) == ["status"]
    assert server.post(f"{JOBS}/nope/retry").status_code == 404
    metrics = server.metrics()
    assert metrics.job("background_jobs_finished_total", "TASK", "charge", outcome="failed") == 1
    assert metrics.job("background_jobs_retries_total", "TASK", "charge", trigger="manual") == 1
    assert metrics.job("background_jobs_pending", "TASK", "charge") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker": "w1", "error": "x"}, "retryable"),
        ({"worker": "w1", "retryable": True}, "error"),
        ({"worker": "w1", "error": "x", "retryable": "yes"}, "retryable"),
        ({"error": "x", "retryable": True}, "worker"),
    ],
)
def test_fail_names_the_bad_field(server, body, field):
    job = server.create()
    server.lease("w1")
    response = server.post(f"{JOBS}/{job['id']}/fail", body)
    assert response.status_code == 400
    assert fields_of(response) == [field]
    assert server.get(f"{JOBS}/{job['id']}").json()["status"] == "running"


def test_fail_by_another_worker_or_of_a_pending_job_is_a_409(server):
    job = server.create()
    body = {"worker": "w1", "error": "x", "retryable": True}
    assert server.post(f"{JOBS}/{job['id']}/fail", body).status_code == 409
    server.lease("w2")
    assert server.post(f"{JOBS}/{job['id']}/fail", body).status_code == 409
    assert server.get(f"{JOBS}/{job['id']}").json()["status"] == "running"


# --- bodies that are not what a route expects ---------------------------------------------

WRITE_ROUTES = [
    f"{JOBS}",
    f"{JOBS}/lease",
    f"{JOBS}/ID/heartbeat",
    f"{JOBS}/ID/complete",
    f"{JOBS}/ID/fail",
    "/api/v1/push",
]


@pytest.mark.parametrize("route", WRITE_ROUTES)
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b'{"worker": "w1",}', "application/json", 400),
        (b"\xff\xfe\x00", "application/json", 400),
        (b"null", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"worker": {"deep": [1, 2]}}', "application/json", 400),
        (b'{"worker": "w1"}', "text/plain", 415),
        (b"worker=w1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_no_body_ever_gets_a_500(server, route, body, content_type, status):
    job = server.create()
    server.lease("w1")
    response = server.post(
        route.replace("ID", job["id"]), data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    fields_of(response)


def test_a_json_body_to_retry_must_be_declared_json(server):
    job = server.create()
    response = server.post(
        f"{JOBS}/{job['id']}/retry", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_unknown_routes_and_methods_answer_json(server):
    assert server.get("/api/v1/nothing").status_code == 404
    response = server.session.delete(server.url(JOBS))
    assert response.status_code == 405
    fields_of(response)


# --- the bearer token ---------------------------------------------------------------------


def write_rules(app) -> list[tuple[str, str]]:
    """Every (method, path) under /api/ that is not a read, from the app's own routes."""
    rules = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            path = rule.rule.replace("<job_id>", "some-id").replace("<schedule_id>", "some-id")
            rules.append((method, path))
    return rules


def test_every_write_route_answers_401_without_the_token(tmp_path):
    with live_server(tmp_path, api_token=TOKEN) as server:
        rules = write_rules(server.app)
        # push; jobs: create, lease, heartbeat, complete, fail, retry, cancel, delete, bulk
        # retry, bulk cancel; schedules: create, edit, delete, pause, resume, run
        assert len(rules) == 17
        for method, path in rules:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                response = server.session.request(
                    method, server.url(path), json={"worker": "w"}, headers=headers
                )
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert fields_of(response) == ["Authorization"]
        assert server.runtime.store.snapshot().series == {}  # nothing was written
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert server.post(JOBS, {"type": "T", "name": "n"}, headers=good).status_code == 201
        lower = {"Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
        assert server.post(JOBS, {"type": "T", "name": "n"}, headers=lower).status_code == 201
        assert server.get(JOBS).status_code == 200  # reads stay open
        assert server.get("/metrics").status_code == 200


def test_the_token_can_cover_reads_too(tmp_path):
    with live_server(tmp_path, api_token=TOKEN, api_token_reads=True) as server:
        assert server.get(JOBS).status_code == 401
        assert server.get("/api/v1/jobinfo").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert server.get(JOBS, headers=good).status_code == 200
        assert server.get("/metrics").status_code == 200
        assert server.get("/healthz").status_code == 200
        assert server.get("/api/openapi.json").status_code == 200


def test_a_token_route_check_needs_no_route_to_remember_it(tmp_path):
    """A route added later is covered too: the check runs before any view."""
    app = create_app(Settings(store=sqlite_url(tmp_path / "api.db"), api_token=TOKEN))

    @app.post("/api/v1/added-later")
    def added_later():
        return {"ran": True}

    client = app.test_client()
    assert client.post("/api/v1/added-later").status_code == 401
    ok = client.post("/api/v1/added-later", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.json == {"ran": True}


# --- the API's description ----------------------------------------------------------------


def test_openapi_describes_every_endpoint_of_the_contract(server):
    doc = server.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    expected = {
        ("post", "/api/v1/push"),
        ("get", "/api/v1/jobinfo"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/{id}"),
        ("post", "/api/v1/jobs/lease"),
        ("post", "/api/v1/jobs/{id}/heartbeat"),
        ("post", "/api/v1/jobs/{id}/complete"),
        ("post", "/api/v1/jobs/{id}/fail"),
        ("post", "/api/v1/jobs/{id}/retry"),
        # issue 22: cancel, delete, bulk retry and cancel
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("delete", "/api/v1/jobs/{id}"),
        ("post", "/api/v1/jobs/retry"),
        ("post", "/api/v1/jobs/cancel"),
        # issue 11: schedules
        ("post", "/api/v1/schedules"),
        ("get", "/api/v1/schedules"),
        ("get", "/api/v1/schedules/{id}"),
        ("patch", "/api/v1/schedules/{id}"),
        ("delete", "/api/v1/schedules/{id}"),
        ("post", "/api/v1/schedules/{id}/pause"),
        ("post", "/api/v1/schedules/{id}/resume"),
        ("post", "/api/v1/schedules/{id}/run"),
        # issue 18: tracked jobs of scraped and pushed sources
        ("get", "/api/v1/tracked"),
        # the dashboard's chart data
        ("get", "/api/v1/stats/summary"),
        ("get", "/api/v1/stats/types"),
        ("get", "/api/v1/stats/names"),
        ("get", "/api/v1/stats/name"),
        # issue 22: the usual run time of each job function
        ("get", "/api/v1/stats/durations"),
        ("get", "/api/v1/stats/failing"),  # issue 22: top failing
    }
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == expected
    schemas = doc["components"]["schemas"]
    job = schemas["Job"]["properties"]
    for field in (
        "id",
        "type",
        "name",
        "status",
        "payload",
        "attempts",
        "maxAttempts",
        "lastError",
        "worker",
        "createdAt",
        "startedAt",
        "finishedAt",
        "nextAttemptAt",
    ):
        assert field in job
    assert set(job["status"]["enum"]) == {"pending", "running", "completed", "failed", "cancelled"}
    listing = doc["paths"]["/api/v1/jobs"]["get"]["parameters"]
    order = next(one for one in listing if one["name"] == "order")
    assert order["schema"]["enum"] == ["newest", "oldest"]
    status = next(one for one in listing if one["name"] == "status")
    assert "cancelled" in status["schema"]["enum"]
    assert set(schemas["BulkFilter"]["properties"]) == {"type", "name"}
    bulk = doc["paths"]["/api/v1/jobs/retry"]["post"]
    assert bulk["requestBody"]["required"] is False
    assert "Retried" in str(bulk["responses"]["200"])
    assert schemas["FailRequest"]["required"] == ["worker", "error", "retryable"]
    assert schemas["LeaseRequest"]["required"] == ["worker"]
    assert set(schemas["JobInfo"]["required"]) == {
        "id",
        "name",
        "startTimestamp",
        "backgroundJobType",
        "isFinished",
    }
    # Every reference resolves.
    text = server.get("/api/openapi.json").text
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas
    # Every route the app serves under /api/v1 is described.
    routes = {
        rule.rule.replace("<job_id>", "{id}").replace("<schedule_id>", "{id}")
        for rule in server.app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
    }
    assert routes == {path for _, path in expected}


def test_the_docs_page_is_self_contained(server):
    response = server.get("/api/docs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    for path in ("/api/v1/push", "/api/v1/jobs/{id}/fail", "/api/v1/jobs/lease"):
        assert path in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
