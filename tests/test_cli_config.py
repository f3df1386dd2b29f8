"""Configuration: options, JOB_EXPORTER_* variables and a YAML file, in that precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from exporter import cli
from exporter.config import ConfigError, Settings, parse_listen, parse_source, sources_from_yaml


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run `serve` up to the point where it would listen, and keep the settings it built."""
    seen: dict[str, Any] = {}

    def fake_run(initial: Settings, settings_for, reload=None) -> None:
        seen["settings"] = settings_for("http://127.0.0.1:1")
        seen["reload"] = reload

    monkeypatch.setattr(cli, "_run", fake_run)
    for name in ("LISTEN", "STORE", "SOURCE", "SCRAPE_INTERVAL", "CONFIG"):
        monkeypatch.delenv(f"JOB_EXPORTER_{name}", raising=False)
    return seen


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)


def test_options_build_the_settings(captured):
    result = invoke(
        [
            "serve",
            "--listen",
            "127.0.0.1:9999",
            "--store",
            "sqlite:///x.db",
            "--source",
            "a=http://127.0.0.1:1/jobs",
            "--source",
            "b=https://app.test/jobs",
            "--scrape-interval",
            "0.1",
        ]
    )
    assert result.exit_code == 0, result.output
    settings: Settings = captured["settings"]
    assert settings.listen == "127.0.0.1:9999"
    assert settings.store == "sqlite:///x.db"
    assert [(s.name, s.url) for s in settings.sources] == [
        ("a", "http://127.0.0.1:1/jobs"),
        ("b", "https://app.test/jobs"),
    ]
    assert settings.scrape_interval == 0.1


def test_environment_variables_stand_in_for_options(captured):
    env = {
        "JOB_EXPORTER_LISTEN": "127.0.0.1:7000",
        "JOB_EXPORTER_SOURCE": "a=http://127.0.0.1:1/a b=http://127.0.0.1:1/b",
        "JOB_EXPORTER_SCRAPE_INTERVAL": "2.5",
    }
    result = invoke(["serve"], env)
    assert result.exit_code == 0, result.output
    settings: Settings = captured["settings"]
    assert settings.listen == "127.0.0.1:7000"
    assert [s.name for s in settings.sources] == ["a", "b"]
    assert settings.scrape_interval == 2.5


def test_yaml_file_sets_defaults_below_variables_and_options(captured, tmp_path: Path):
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:8000",
                "store": "sqlite:///from-file.db",
                "scrape-interval": 30,
                "max_series_per_source": 50,
                "source": {
                    "app": "http://127.0.0.1:1/jobs",
                    "slow": {"url": "http://127.0.0.1:1/slow", "interval": 60},
                },
            }
        )
    )
    env = {"JOB_EXPORTER_CONFIG": str(config), "JOB_EXPORTER_STORE": "sqlite:///from-env.db"}
    result = invoke(["serve", "--listen", "127.0.0.1:8001"], env)
    assert result.exit_code == 0, result.output
    settings: Settings = captured["settings"]
    assert settings.listen == "127.0.0.1:8001"  # option beats file
    assert settings.store == "sqlite:///from-env.db"  # variable beats file
    assert settings.scrape_interval == 30  # file beats default
    assert settings.max_series_per_source == 50
    intervals = {s.name: settings.interval_of(s) for s in settings.sources}
    assert intervals == {"app": 30, "slow": 60}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nourl"], "NAME=URL"),
        (["--source", "a=ftp://x/jobs"], "http"),
        (["--source", "bad name=http://x/jobs"], "source name"),
        (["--source", "push=http://x/jobs"], "reserved"),
        (["--source", "a=http://x/1", "--source", "a=http://x/2"], None),
        (["--scrape-interval", "0.05"], "0.1"),
        (["--listen", "nowhere"], "HOST:PORT"),
        (["--cors-origin", "https://ok.example/path"], "without a path"),
    ],
)
def test_bad_settings_are_usage_errors(captured, args: list[str], message: str | None):
    result = invoke(["serve", *args])
    if message is None:  # a repeated name is one source with the last URL
        assert result.exit_code == 0
        assert [s.url for s in captured["settings"].sources] == ["http://x/2"]
        return
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "settings" not in captured


def test_cors_origins_repeat_and_are_kept_as_given(captured):
    result = invoke(
        ["serve", "--cors-origin", "https://a.example", "--cors-origin", "http://b.example:8080"]
    )
    assert result.exit_code == 0, result.output
    assert captured["settings"].cors_origins == ("https://a.example", "http://b.example:8080")


def test_unknown_yaml_keys_are_rejected(captured, tmp_path: Path):
    config = tmp_path / "exporter.yml"
    config.write_text("scrape_intervall: 5\n")
    result = invoke(["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "scrape_intervall" in result.output


def test_parsers():
    assert parse_listen("[::1]:9188") == ("::1", 9188)
    assert parse_listen(":9188") == ("0.0.0.0", 9188)
    assert parse_source("app=http://h:1/j").url == "http://h:1/j"
    assert [s.name for s in sources_from_yaml(["a=http://h/1", "b=http://h/2"])] == ["a", "b"]
    with pytest.raises(ConfigError):
        sources_from_yaml({"a": {"interval": 5}})
    with pytest.raises(ConfigError):
        Settings(sources=(parse_source("a=http://h/1"), parse_source("a=http://h/2")))
