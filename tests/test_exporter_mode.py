"""A pure exporter: `--no-job-api` and `--no-page` turn those parts off. Every route of the
full app is asked in each mode: a part turned off answers a JSON 404 saying so (and runs no
timers of its own); every other route is untouched; push, /metrics, /healthz and /readyz
always answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from exporter import cli
from exporter.app import create_app, runtime_of
from exporter.config import Settings
from tests.helpers.served import ServedApp, sqlite_url

MODES = {
    "full": {},
    "no-job-api": {"job_api": False},
    "no-page": {"page": False},
    "pure": {"job_api": False, "page": False},
}
JOB_API = re.compile(r"^/api/v1/(jobs|schedules)(/|$)")
PAGE = re.compile(r"^/($|ui/|api/v1/stats/)")
ALWAYS = [("POST", "/api/v1/push"), ("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz")]
SAMPLE_VALUES = {"job_id": "j1", "schedule_id": "s1", "path": "app.js", "filename": "x.css"}


def every_route() -> list[tuple[str, str]]:
    """(method, a concrete path) for every route of the app with every part on."""
    app = create_app(Settings(store="sqlite:///:memory:"))
    try:
        routes = []
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_VALUES[m.group(1)], rule.rule)
            routes += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
        return sorted(routes)
    finally:
        runtime_of(app).stop()


ROUTES = every_route()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServedApp]]:
    """One server per mode for the module, each on its own store."""
    served = {}
    for mode, settings in MODES.items():
        store = sqlite_url(tmp_path_factory.mktemp(mode) / "store.db")
        served[mode] = ServedApp(create_app(Settings(store=store, **settings)))
    yield served
    for server in served.values():
        server.close()
        runtime_of(server.app).stop()


def off_in(mode: str, path: str) -> str | None:
    """The flag that turns `path` off in `mode`, if one does."""
    if not MODES[mode].get("job_api", True) and JOB_API.match(path):
        return "--no-job-api"
    if not MODES[mode].get("page", True) and PAGE.match(path):
        return "--no-page"
    return None


def test_the_routes_cover_both_parts():
    paths = {path for _, path in ROUTES}
    assert any(JOB_API.match(p) and "schedules" in p for p in paths)
    assert any(JOB_API.match(p) and "lease" in p for p in paths)
    assert {"/", "/ui/app.js", "/api/v1/stats/summary"} <= paths


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_in_every_mode(servers, mode: str, method: str, path: str):
    response = requests.request(method, f"{servers[mode].base_url}{path}", json={}, timeout=5)
    flag = off_in(mode, path)
    if flag is not None:
        assert response.status_code == 404
        assert response.json() == {
            "error": f"{_part(flag)} is turned off here ({flag})",
            "errors": [],
        }
    else:
        assert response.status_code < 500
        assert "turned off" not in response.text


def _part(flag: str) -> str:
    return "the job API" if flag == "--no-job-api" else "the built-in page"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("method", "path"), ALWAYS)
def test_push_metrics_and_health_always_answer(servers, mode: str, method: str, path: str):
    body = [
        {"id": "1", "name": "n", "startTimestamp": 1, "backgroundJobType": "T", "isFinished": False}
    ]
    response = requests.request(method, f"{servers[mode].base_url}{path}", json=body, timeout=5)
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("mode", ["no-job-api", "no-page"])
def test_paths_below_a_part_turned_off_answer_the_same(servers, mode: str):
    path = "/api/v1/jobs/j1/anything/else" if mode == "no-job-api" else "/ui/deep/er/file.js"
    response = requests.delete(f"{servers[mode].base_url}{path}", timeout=5)
    assert response.status_code == 404 and "turned off" in response.json()["error"]


TIMERS = {
    "job_api": {"lease sweep", "schedule sweep", "retention sweep of API jobs"},
    "page": {"history sample"},
}


@pytest.mark.parametrize("mode", MODES)
def test_a_part_turned_off_runs_no_timers(tmp_path: Path, mode: str):
    app = create_app(Settings(store=sqlite_url(tmp_path / "store.db"), **MODES[mode]))
    runtime = runtime_of(app)
    runtime.start()
    try:
        running = {thread.name for thread in threading.enumerate()}
    finally:
        runtime.stop()
    for part, names in TIMERS.items():
        if MODES[mode].get(part, True):
            assert names <= running, part
        else:
            assert not names & running, part
    assert "lost-after sweep of pushed jobs" in running  # push stays


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}
    monkeypatch.setattr(cli, "_run", lambda initial, *_: seen.update(s=initial))
    for name in ("JOB_API", "PAGE"):
        monkeypatch.delenv(f"JOB_EXPORTER_{name}", raising=False)
    return seen


def test_flags_variables_and_yaml(captured, tmp_path: Path):
    def settings(*args: str, env: dict[str, str] | None = None) -> tuple[bool, bool]:
        result = CliRunner().invoke(cli.main, ["serve", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return captured["s"].job_api, captured["s"].page

    assert settings() == (True, True)
    assert settings("--no-job-api") == (False, True)
    assert settings("--no-page") == (True, False)
    assert settings(env={"JOB_EXPORTER_JOB_API": "false", "JOB_EXPORTER_PAGE": "0"}) == (
        False,
        False,
    )
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"job-api": False, "page": False}))
    assert settings("--config", str(config)) == (False, False)
    assert settings("--config", str(config), "--job-api") == (True, False)
