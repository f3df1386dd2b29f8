"""`--duration-buckets`: read like every option, checked with a clear error naming it, and
applied to the duration and queue wait histograms; counts stored under another layout go
to the next bound, so changing buckets loses no observation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from exporter import cli
from exporter.config import DEFAULT_DURATION_BUCKETS, ConfigError, Settings
from exporter.model.counts import DEFAULT_BUCKETS
from tests.helpers.data import START_MS, job
from tests.helpers.served import live_server

DURATION = "background_jobs_duration_seconds_bucket"
QUEUE_WAIT = "background_jobs_queue_wait_seconds_bucket"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}
    monkeypatch.setattr(cli, "_run", lambda initial, *_: seen.update(s=initial))
    monkeypatch.delenv("JOB_EXPORTER_DURATION_BUCKETS", raising=False)
    return seen


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)


def test_the_default_is_unchanged(captured):
    assert invoke(["serve"]).exit_code == 0
    assert captured["s"].duration_buckets == DEFAULT_DURATION_BUCKETS == DEFAULT_BUCKETS


def test_option_variable_and_yaml(captured, tmp_path: Path):
    assert invoke(["serve", "--duration-buckets", "0.005, 0.01,1"]).exit_code == 0
    assert captured["s"].duration_buckets == (0.005, 0.01, 1.0)
    assert invoke(["demo"], {"JOB_EXPORTER_DURATION_BUCKETS": "0.5,2"}).exit_code == 0
    assert captured["s"].duration_buckets == (0.5, 2.0)
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"duration-buckets": [0.001, 0.1, 10]}))
    assert invoke(["serve", "--config", str(config)]).exit_code == 0
    assert captured["s"].duration_buckets == (0.001, 0.1, 10.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,0.5", "0.5 after 1 is out of order"),
        ("0.1,0.1", "0.1 after 0.1 is repeated"),
        ("0,1", "positive"),
        ("-1", "positive"),
        ("nan", "positive"),
        ("1,inf", "+Inf is implied"),
        ("1,,2", "is not a number"),
        ("fast", "'fast' is not a number"),
        (",".join(str(n) for n in range(1, 32)), "1 to 30 bucket bounds, got 31"),
    ],
)
def test_bad_buckets_are_a_usage_error_naming_the_option(captured, value: str, message: str):
    result = CliRunner().invoke(cli.main, ["serve", "--duration-buckets", value])
    assert result.exit_code == 2
    assert "Invalid value for '--duration-buckets'" in result.output
    assert message in result.output
    assert "s" not in captured


def test_settings_check_them_too():
    with pytest.raises(ConfigError, match="increase"):
        Settings(duration_buckets=(2.0, 1.0))


def test_both_histograms_use_the_buckets(tmp_path: Path):
    with live_server(tmp_path, duration_buckets=(0.005, 0.05)) as server:
        created = server.create()
        server.runtime.clock.advance(0.02)  # waited 20 ms
        leased = server.lease()
        assert leased is not None and leased["id"] == created["id"]
        server.runtime.clock.advance(0.003)  # ran 3 ms
        server.step(created["id"], "complete", {"worker": "w1"})
        metrics = server.metrics()
    for family, low, middle in ((QUEUE_WAIT, 0, 1), (DURATION, 1, 1)):
        assert metrics.job(family, le="0.005") == low, family
        assert metrics.job(family, le="0.05") == middle, family
        assert metrics.job(family, le="+Inf") == 1, family
    assert not any(dict(labels).get("le") == "0.1" for _, labels in metrics.samples)


def test_counts_stored_under_another_layout_go_to_the_next_bound(make_exporter, job_source):
    finished = job("a", finished=True, finishTimestamp=START_MS + 300)  # ran 0.3 s
    job_source.serve_jobs([finished])
    before = make_exporter({"app": job_source.url})  # default bounds: stored under 0.5
    before.scrape()
    assert before.metrics().job(DURATION, le="0.5") == 1
    before.close()
    after = make_exporter({"app": job_source.url}, duration_buckets=(0.005, 0.01, 1.0))
    metrics = after.metrics()
    assert metrics.job(DURATION, le="0.01") == 0
    assert metrics.job(DURATION, le="1.0") == 1
    assert metrics.job(DURATION, le="+Inf") == 1
    assert metrics.job(DURATION, le="0.5") is None
