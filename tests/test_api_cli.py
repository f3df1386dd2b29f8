"""The push and job API's options: command line and JOB_EXPORTER_* variables."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from exporter import cli
from exporter.config import Settings

VARIABLES = ("API_TOKEN", "API_TOKEN_READS", "MAX_ATTEMPTS", "BACKOFF_BASE", "BACKOFF_CAP")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_run(initial: Settings, settings_for, reload=None) -> None:
        seen["settings"] = settings_for("http://127.0.0.1:1")

    monkeypatch.setattr(cli, "_run", fake_run)
    for name in VARIABLES:
        monkeypatch.delenv(f"JOB_EXPORTER_{name}", raising=False)
    return seen


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)


def test_defaults_leave_the_api_open(captured):
    assert invoke(["serve"]).exit_code == 0
    settings: Settings = captured["settings"]
    assert settings.api_token is None
    assert (settings.max_attempts, settings.backoff_base, settings.backoff_cap) == (
        3,
        1.0,
        300.0,
    )
    assert settings.push_lost_after == 24 * 3600


def test_the_token_and_queue_options_come_from_variables(captured):
    env = {
        "JOB_EXPORTER_API_TOKEN": "t0ken",
        "JOB_EXPORTER_API_TOKEN_READS": "1",
        "JOB_EXPORTER_MAX_ATTEMPTS": "5",
        "JOB_EXPORTER_BACKOFF_BASE": "0.5",
        "JOB_EXPORTER_BACKOFF_CAP": "60",
        "JOB_EXPORTER_MAX_PAYLOAD_BYTES": "2048",
        "JOB_EXPORTER_PUSH_LOST_AFTER": "600",
    }
    assert invoke(["serve"], env).exit_code == 0
    settings: Settings = captured["settings"]
    assert (settings.api_token, settings.api_token_reads) == ("t0ken", True)
    assert (settings.max_attempts, settings.backoff_base, settings.backoff_cap) == (
        5,
        0.5,
        60.0,
    )
    assert (settings.max_payload_bytes, settings.push_lost_after) == (2048, 600.0)


def test_options_win_over_variables(captured):
    result = invoke(["serve", "--api-token", "cli"], {"JOB_EXPORTER_API_TOKEN": "env"})
    assert result.exit_code == 0
    assert captured["settings"].api_token == "cli"


def test_the_demo_runs_workers_and_takes_the_api_options(captured):
    assert invoke(["demo", "--workers", "5", "--api-token", "d"]).exit_code == 0
    settings: Settings = captured["settings"]
    assert (settings.workers, settings.api_token, settings.mock_source) == (5, "d", True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-token", "  "], "api_token"),
        (["--backoff-base", "10", "--backoff-cap", "5"], "backoff"),
        (["--max-body-bytes", "2048", "--max-payload-bytes", "4096"], "max_payload_bytes"),
    ],
)
def test_inconsistent_api_options_are_usage_errors(captured, args, message):
    result = CliRunner().invoke(cli.main, ["serve", *args])
    assert result.exit_code == 2
    assert message in result.output
