"""Token roles (exporter/api/auth.py): every route of the app tried with each token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.processes import ExporterProcess
from tests.helpers.served import LiveServer, live_server

TOKENS = {"api": "admin-t", "worker": "worker-t", "viewer": "viewer-t"}
WORKER_ROUTES = {
    ("POST", "/api/v1/push"),
    ("POST", "/api/v1/jobs/lease"),
    ("POST", "/api/v1/jobs/<job_id>/heartbeat"),
    ("POST", "/api/v1/jobs/<job_id>/complete"),
    ("POST", "/api/v1/jobs/<job_id>/fail"),
}
OPEN = {"/api/openapi.json", "/api/docs"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(
        tmp_path,
        api_token=TOKENS["api"],
        worker_token=TOKENS["worker"],
        viewer_token=TOKENS["viewer"],
        api_token_reads=True,
    ) as served:
        yield served


def routes(server: LiveServer) -> list[tuple[str, str]]:
    found = []
    for rule in server.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule in OPEN:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule))
    return found


def call(server: LiveServer, method: str, rule: str, token: str | None) -> requests.Response:
    path = re.sub(r"<[^>]+>", "nope", rule)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return server.session.request(method, server.url(path), headers=headers, timeout=10)


def test_each_role_may_do_what_it_is_for_and_nothing_else(server: LiveServer):
    seen = routes(server)
    assert len(seen) > 15 and set(seen) >= WORKER_ROUTES
    for method, rule in seen:
        for role, token in TOKENS.items():
            answer = call(server, method, rule, token)
            if role == "api":
                allowed = True
            elif role == "worker":
                allowed = (method, rule) in WORKER_ROUTES
            else:
                allowed = method == "GET"
            if allowed:  # past the token: whatever the route says of "nope" and no body
                assert answer.status_code not in (401, 403), (role, method, rule, answer.text)
            else:
                assert answer.status_code == 403, (role, method, rule, answer.text)
                assert answer.json()["errors"][0]["field"] == "Authorization"
        anonymous = call(server, method, rule, None)
        assert anonymous.status_code == 401, (method, rule)
        assert call(server, method, rule, "wrong").status_code == 401


def test_metrics_health_and_the_api_description_stay_open(server: LiveServer):
    for path in ("/metrics", "/healthz", "/readyz", "/api/openapi.json", "/api/docs"):
        assert server.get(path).status_code == 200, path


def test_a_worker_token_pushes_and_works_a_job_end_to_end(server: LiveServer):
    admin = {"Authorization": f"Bearer {TOKENS['api']}"}
    worker = {"Authorization": f"Bearer {TOKENS['worker']}"}
    created = server.post("/api/v1/jobs", {"type": "T", "name": "n"}, headers=admin)
    assert created.status_code == 201
    leased = server.post("/api/v1/jobs/lease", {"worker": "w"}, headers=worker)
    assert leased.status_code == 200
    job_id = leased.json()["id"]
    done = server.post(f"/api/v1/jobs/{job_id}/complete", {"worker": "w"}, headers=worker)
    assert done.status_code == 200
    pushed = server.post("/api/v1/push", [], headers=worker)
    assert pushed.status_code == 202
    assert (
        server.post("/api/v1/jobs", {"type": "T", "name": "n"}, headers=worker).status_code == 403
    )


@pytest.mark.slow
def test_a_served_worker_token_cannot_create_jobs(tmp_path: Path):
    served = ExporterProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--api-token",
        TOKENS["api"],
        "--worker-token",
        TOKENS["worker"],
    )
    try:
        answer = requests.post(
            f"{served.url}/api/v1/jobs",
            data=b'{"type": "T", "name": "n"}',
            headers={
                "Authorization": f"Bearer {TOKENS['worker']}",
                "Content-Type": "application/json",
                "Expect": "100-continue",
            },
            timeout=10,
        )
        assert answer.status_code == 403
        assert answer.json()["errors"][0]["field"] == "Authorization"
    finally:
        served.stop()
