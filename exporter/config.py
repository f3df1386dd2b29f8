"""Settings: defaults here, overridden by a YAML file, then JOB_EXPORTER_* variables, then
options (the command line wires that order); parsed and checked once, then read-only."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from exporter.model.counts import DEFAULT_BUCKETS  # beside Buckets: model imports no config

# Every default, beside the setting it backs (a Settings field, named as its option); the
# command line shows them in --help, and every stage reads them from here.
DEFAULT_LISTEN = "0.0.0.0:9188"
DEFAULT_STORE = "sqlite:///job-exporter.db"
DEFAULT_SCRAPE_INTERVAL = 15.0
MIN_SCRAPE_INTERVAL = 0.1
DEFAULT_SCRAPE_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SERIES_PER_SOURCE = 500
DEFAULT_MAX_SERIES = 20_000  # job series of the whole exporter, every source together (§8)
DEFAULT_MAX_PUSH_SOURCES = 100  # distinct sources pushes may name (§8)
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_THREADS = 8
# A connection holds a descriptor and a parser, never a thread, until its request is whole,
# so slow clients are cheap; past the limit waitress stops accepting. Not higher, since each
# pass of waitress's loop visits every connection (docs/reliability.md).
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds an idle connection stays open
DEFAULT_LOG_LEVEL = "info"
LOG_FORMATS = ("text", "json")  # text lines, or one JSON object per line (exporter/runtime/logs.py)
DEFAULT_LOG_FORMAT = "text"
# Upper bounds of the duration and queue wait histograms, in seconds (+Inf is added): from
# 0.1 s to 4 h, for jobs of seconds to hours. Each bound is a series per job series and
# histogram, so their number is bounded; millisecond tasks may want finer low ones
# (`--duration-buckets 0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30`).
DEFAULT_DURATION_BUCKETS = DEFAULT_BUCKETS
MAX_DURATION_BUCKETS = 30
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# The RQ source (docs/contract.md §6): `rq+redis://HOST:PORT/DB?queues=a,b&max_jobs=N`.
RQ_SCHEMES = ("rq+redis", "rq+rediss")
DEFAULT_RQ_MAX_JOBS = 100_000  # jobs one scrape of an RQ source reads at most
RQ_INSTALL_HINT = "pip install 'job-exporter[rq]'"
RESERVED_SOURCES = frozenset({"push", "api"})
DEFAULT_PUSH_SOURCE = "push"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_PENDING_JOBS = 100_000  # job-API jobs pending at once (429 beyond)
MAX_ATTEMPTS_LIMIT = 100
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 300.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_LEASE_SWEEP_INTERVAL = 1.0
DEFAULT_PUSH_LOST_AFTER = 24 * 3600.0
# What a push may ask with `lostAfter`: seconds an open job of its source may go unreported.
MIN_LOST_AFTER_S = 5.0
MAX_LOST_AFTER_S = 30 * 24 * 3600.0
DEFAULT_MAX_SCHEDULES = 1000
DEFAULT_SCHEDULE_MISFIRE_GRACE = 60.0
DEFAULT_SCHEDULE_SWEEP_INTERVAL = 1.0
# `job-exporter demo`: everything on one machine, scraped often so its charts move.
DEMO_LISTEN = "127.0.0.1:9188"
DEMO_SCRAPE_INTERVAL = 1.0
DEMO_WORKERS = 3

DAY_MS = 24 * 3600 * 1000


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, lower-case, the default port left out; None when
    it is not an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


@dataclass(frozen=True)
class SourceSettings:
    name: str
    url: str
    interval: float | None = None  # seconds between scrapes; None: the global scrape_interval


@dataclass(frozen=True)
class Settings:
    """Each field is named as its command-line option (`--max-series-per-source` is
    `max_series_per_source`), its YAML key and JOB_EXPORTER_ variable; `sources` holds the
    repeated `--source`."""

    listen: str = DEFAULT_LISTEN
    store: str = DEFAULT_STORE
    sources: tuple[SourceSettings, ...] = ()
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL
    scrape_timeout: float = DEFAULT_SCRAPE_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_series_per_source: int = DEFAULT_MAX_SERIES_PER_SOURCE
    max_series: int = DEFAULT_MAX_SERIES  # ... and of the whole exporter
    max_push_sources: int = DEFAULT_MAX_PUSH_SOURCES  # distinct push sources (429 beyond)
    scrape_redirects_elsewhere: bool = False  # follow a source's redirect to another host/port
    retention_days: float = DEFAULT_RETENTION_DAYS
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS  # and the queue wait's
    threads: int = DEFAULT_THREADS
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open HTTP connections at once
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds before an idle connection closes
    mock_source: bool = False  # serve the built-in mock jobs endpoint at /demo/jobs
    # Off for a pure exporter: push, /metrics, /healthz and /readyz stay.
    job_api: bool = True  # jobs, leases and schedules, with their sweeps
    page: bool = True  # the built-in page, its files and chart data, with its history sampler
    # The push and job API (docs/contract.md §4).
    api_token: str | None = None  # when set, every write under /api/ needs this bearer token
    api_token_reads: bool = False  # ... and every read under /api/ too
    worker_token: str | None = None  # may push, lease, heartbeat, complete and fail only
    viewer_token: str | None = None  # may read only (with api_token_reads)
    cors_origins: tuple[str, ...] = ()  # pages of these origins may read, and write with a token
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # largest request body under /api/ (413)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES  # largest job payload or result
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # runs of a job created without maxAttempts
    max_pending_jobs: int = DEFAULT_MAX_PENDING_JOBS  # pending job-API jobs (429 beyond)
    backoff_base: float = DEFAULT_BACKOFF_BASE  # seconds before the first automatic retry
    backoff_cap: float = DEFAULT_BACKOFF_CAP  # longest wait between automatic retries
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # a lease when the worker asks for none
    lease_sweep_interval: float = DEFAULT_LEASE_SWEEP_INTERVAL  # seconds between checks
    push_lost_after: float = DEFAULT_PUSH_LOST_AFTER  # seconds an open pushed job may go unreported
    push_lost_after_for: tuple[tuple[str, float], ...] = ()  # ... per push source
    workers: int = 0  # demo workers that run API jobs over HTTP (`job-exporter demo` sets it)
    # Schedules (recurring jobs).
    max_schedules: int = DEFAULT_MAX_SCHEDULES  # bounds the job_exporter_schedule_* series
    schedule_misfire_grace: float = DEFAULT_SCHEDULE_MISFIRE_GRACE  # seconds late: on time
    schedule_sweep_interval: float = DEFAULT_SCHEDULE_SWEEP_INTERVAL  # seconds between checks

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
        if self.max_series < self.max_series_per_source:
            raise ConfigError("max_series must be at least max_series_per_source")
        if self.max_push_sources < 1:
            raise ConfigError("max_push_sources must be at least 1")
        if self.retention_days <= 0:
            raise ConfigError("retention_days must be positive")
        check_buckets(self.duration_buckets)
        tokens = [t for t in (self.api_token, self.worker_token, self.viewer_token) if t]
        for name in ("api_token", "worker_token", "viewer_token"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ConfigError(f"{name} must not be empty when set")
        if len(set(tokens)) != len(tokens):
            raise ConfigError("api_token, worker_token and viewer_token must differ")
        if self.viewer_token is not None and not self.api_token_reads:
            raise ConfigError("viewer_token only matters with api_token_reads (reads closed)")
        for origin in self.cors_origins:
            if origin_of(origin) != origin:
                raise ConfigError(
                    f"cors_origin {origin!r} must be an origin like https://host[:port], "
                    f"lower-case, without a path (did you mean {origin_of(origin)!r}?)"
                )
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if not 1 <= self.max_payload_bytes <= self.max_body_bytes:
            raise ConfigError("max_payload_bytes must be between 1 and max_body_bytes")
        if self.max_connections < 1 or self.idle_timeout <= 0:
            raise ConfigError("max_connections must be at least 1 and idle_timeout positive")
        if self.max_pending_jobs < 1:
            raise ConfigError("max_pending_jobs must be at least 1")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ConfigError(f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}")
        if self.backoff_base <= 0 or self.backoff_cap < self.backoff_base:
            raise ConfigError("backoff_base must be positive and backoff_cap at least as large")
        if self.lease_seconds <= 0 or self.lease_sweep_interval <= 0:
            raise ConfigError("lease_seconds and lease_sweep_interval must be positive")
        if self.push_lost_after <= 0:
            raise ConfigError("push_lost_after must be positive")
        for name, seconds in self.push_lost_after_for:
            check_source_name(name)
            if seconds < 1:
                raise ConfigError(f"push_lost_after_for {name}: at least 1 s, got {seconds}")
        if self.max_schedules < 1:
            raise ConfigError("max_schedules must be at least 1")
        if self.schedule_misfire_grace < 1 or self.schedule_sweep_interval <= 0:
            raise ConfigError(
                "schedule_misfire_grace must be at least 1 s and schedule_sweep_interval positive"
            )
        names = [source.name for source in self.sources]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ConfigError(f"source names must be unique: {', '.join(sorted(duplicates))}")

    @property
    def tokens_set(self) -> bool:
        """Whether any token is configured: then writes under /api/ need one."""
        return any(t is not None for t in (self.api_token, self.worker_token, self.viewer_token))

    def lost_after_of(self, source: str) -> float | None:
        """The push source's own --push-lost-after-for, if it has one."""
        for name, seconds in self.push_lost_after_for:
            if name == source:
                return seconds
        return None

    def interval_of(self, source: SourceSettings) -> float:
        return source.interval if source.interval is not None else self.scrape_interval

    @property
    def retention_ms(self) -> float:
        return self.retention_days * DAY_MS


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to a host and port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen must be HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def parse_buckets(value: Any) -> tuple[float, ...]:
    """`0.005,0.01,...` (or a YAML list of numbers) to histogram bounds, checked."""
    pieces = value.split(",") if isinstance(value, str) else value
    if not isinstance(pieces, list | tuple):
        raise ConfigError(f"must be a comma-separated list of seconds, got {value!r}")
    bounds = []
    for piece in pieces:
        try:
            bounds.append(float(piece.strip() if isinstance(piece, str) else piece))
        except (TypeError, ValueError):
            raise ConfigError(f"{piece!r} is not a number of seconds") from None
    check_buckets(tuple(bounds))
    return tuple(bounds)


def check_buckets(bounds: tuple[float, ...]) -> None:
    """Raise ConfigError unless `bounds` are 1 to MAX_DURATION_BUCKETS finite, positive
    seconds in increasing order (the +Inf bucket is always there, and not given)."""
    if not 1 <= len(bounds) <= MAX_DURATION_BUCKETS:
        raise ConfigError(f"must list 1 to {MAX_DURATION_BUCKETS} bucket bounds, got {len(bounds)}")
    for bound in bounds:
        if not (0 < bound < float("inf")):  # NaN fails too
            raise ConfigError(f"bounds must be positive, finite seconds (+Inf is implied): {bound}")
    for lower, upper in itertools.pairwise(bounds):
        if upper <= lower:
            what = "repeated" if upper == lower else "out of order"
            raise ConfigError(f"bounds must increase: {upper:g} after {lower:g} is {what}")


def parse_source(text: str, interval: float | None = None) -> SourceSettings:
    """`NAME=URL` to a source."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ConfigError(f"source must be NAME=URL, got {text!r}")
    return make_source(name, url, interval)


def parse_lost_after_for(text: str) -> tuple[str, float]:
    """`NAME=SECONDS` to a push source's own lost-after time."""
    name, sep, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not sep or not name.strip() or value < 1:
        raise ConfigError(f"push_lost_after_for must be NAME=SECONDS (>= 1), got {text!r}")
    check_source_name(name.strip())
    return name.strip(), value


def lost_after_for_from_yaml(value: Any) -> list[tuple[str, float]]:
    """A mapping of push source names to seconds, or a list of NAME=SECONDS."""
    if isinstance(value, dict):
        return [parse_lost_after_for(f"{name}={seconds}") for name, seconds in value.items()]
    if isinstance(value, list):
        return [parse_lost_after_for(str(item)) for item in value]
    raise ConfigError("push_lost_after_for must map push source names to seconds")


def check_source_name(name: str) -> None:
    """Raise ConfigError unless `name` is a well-formed source name (scraped or pushed)."""
    if not SOURCE_NAME.match(name):
        raise ConfigError(
            f"source name {name!r} must be 1 to 64 letters, digits or the characters _.:-"
        )


def make_source(name: str, url: str, interval: float | None = None) -> SourceSettings:
    check_source_name(name)
    if name in RESERVED_SOURCES:
        raise ConfigError(f"source name {name!r} is reserved for pushed or job-API jobs")
    parts = urlsplit(url)
    if parts.scheme in RQ_SCHEMES and parts.netloc:
        _check_rq_source(name, url)
    elif parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"source {name!r}: URL must be http://, https://, rq+redis:// or rq+rediss://,"
            f" got {url!r}"
        )
    if interval is not None and interval < MIN_SCRAPE_INTERVAL:
        raise ConfigError(f"source {name!r}: interval must be at least {MIN_SCRAPE_INTERVAL} s")
    return SourceSettings(name, url, interval)


@dataclass(frozen=True)
class RQOptions:
    """An RQ source's own URL parameters: the queues to read (none: every queue RQ lists)
    and the most jobs one scrape reads."""

    queues: tuple[str, ...] = ()
    max_jobs: int = DEFAULT_RQ_MAX_JOBS


def is_rq_url(url: str) -> bool:
    return urlsplit(url).scheme in RQ_SCHEMES


def rq_options(url: str) -> RQOptions:
    """`queues=a,b` and `max_jobs=N` of an RQ source URL. Any other parameter is refused:
    redis-py would take it as a connection option and fail only at the first scrape."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    unknown = sorted(set(query) - {"queues", "max_jobs"})
    if unknown:
        raise ConfigError(f"unknown URL parameter {', '.join(unknown)} (queues, max_jobs)")
    names = (name.strip() for value in query.get("queues", []) for name in value.split(","))
    queues = tuple(dict.fromkeys(name for name in names if name))
    if "queues" in query and not queues:
        raise ConfigError("queues= names no queue")
    max_jobs = DEFAULT_RQ_MAX_JOBS
    if "max_jobs" in query:
        text = query["max_jobs"][-1].strip()
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"max_jobs must be a positive whole number, got {text!r}")
        max_jobs = int(text)
    return RQOptions(queues, max_jobs)


def _check_rq_source(name: str, url: str) -> None:
    """The URL's parameters, and redis-py, which the RQ source reads Redis with."""
    try:
        rq_options(url)
    except ConfigError as error:
        raise ConfigError(f"source {name!r}: {error}") from None
    try:
        import redis  # noqa: F401  (an extra: only an RQ source needs it)
    except ImportError:
        raise ConfigError(
            f"source {name!r}: an RQ source needs redis-py: {RQ_INSTALL_HINT}"
        ) from None


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
