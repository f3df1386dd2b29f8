"""Settings: defaults here, overridden by a YAML file, then JOB_EXPORTER_* variables, then
options (the command line wires that order); parsed and checked once, then read-only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.counts import DEFAULT_BUCKETS

DEFAULT_LISTEN = "0.0.0.0:9188"
DEFAULT_STORE = "sqlite:///job-exporter.db"
DEFAULT_SCRAPE_INTERVAL = 15.0
MIN_SCRAPE_INTERVAL = 0.1
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RESERVED_SOURCES = frozenset({"push", "api"})


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class SourceSettings:
    name: str
    url: str
    interval_s: float | None = None  # None: the global scrape interval


@dataclass(frozen=True)
class Settings:
    listen: str = DEFAULT_LISTEN
    store: str = DEFAULT_STORE
    sources: tuple[SourceSettings, ...] = ()
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL
    scrape_timeout: float = 10.0
    max_response_bytes: int = 64 * 1024 * 1024
    max_series_per_source: int = 500
    retention_days: float = 7.0
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    threads: int = 8
    mock_source: bool = False  # serve the built-in mock jobs endpoint at /demo/jobs

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if self.scrape_interval < MIN_SCRAPE_INTERVAL:
            raise ConfigError(f"scrape_interval must be at least {MIN_SCRAPE_INTERVAL} s")
        if self.scrape_timeout <= 0:
            raise ConfigError("scrape_timeout must be positive")
        if self.max_response_bytes < 1024:
            raise ConfigError("max_response_bytes must be at least 1024")
        if self.max_series_per_source < 1:
            raise ConfigError("max_series_per_source must be at least 1")
        if self.retention_days <= 0:
            raise ConfigError("retention_days must be positive")
        names = [source.name for source in self.sources]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ConfigError(f"source names must be unique: {', '.join(sorted(duplicates))}")

    def interval_of(self, source: SourceSettings) -> float:
        return source.interval_s if source.interval_s is not None else self.scrape_interval


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to a host and port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen must be HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def parse_source(text: str, interval_s: float | None = None) -> SourceSettings:
    """`NAME=URL` to a source."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ConfigError(f"source must be NAME=URL, got {text!r}")
    return make_source(name, url, interval_s)


def make_source(name: str, url: str, interval_s: float | None = None) -> SourceSettings:
    if not SOURCE_NAME.match(name):
        raise ConfigError(
            f"source name {name!r} must be 1 to 64 letters, digits or the characters _.:-"
        )
    if name in RESERVED_SOURCES:
        raise ConfigError(f"source name {name!r} is reserved for pushed or job-API jobs")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"source {name!r}: URL must be http:// or https://, got {url!r}")
    if interval_s is not None and interval_s < MIN_SCRAPE_INTERVAL:
        raise ConfigError(f"source {name!r}: interval must be at least {MIN_SCRAPE_INTERVAL} s")
    return SourceSettings(name, url, interval_s)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's options, keys spelled as on the command line or with underscores.

    `source` may be a list of `NAME=URL` strings, or a mapping of names to a URL or to
    `{url, interval}` for a source with its own scrape interval.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def sources_from_yaml(value: Any) -> list[SourceSettings]:
    if value is None:
        return []
    if isinstance(value, str):
        return [parse_source(value)]
    if isinstance(value, list):
        return [parse_source(str(item)) for item in value]
    if isinstance(value, dict):
        sources = []
        for name, spec in value.items():
            if isinstance(spec, str):
                sources.append(make_source(str(name), spec))
            elif isinstance(spec, dict) and "url" in spec:
                interval = spec.get("interval", spec.get("scrape_interval"))
                sources.append(
                    make_source(str(name), str(spec["url"]), _float(interval, f"{name}.interval"))
                )
            else:
                raise ConfigError(f"source {name!r} must be a URL or a mapping with a url")
        return sources
    raise ConfigError("source must be a list of NAME=URL or a mapping of names to URLs")


def _float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what} must be a number, got {value!r}") from error
