"""`job-exporter serve` and `job-exporter demo` (docs/contract.md §5), and `healthcheck`.

Every option reads `JOB_EXPORTER_<OPTION>` too, and `--config FILE` a YAML file with the same
keys. Precedence: command line, then environment, then the file, then the defaults shown
in `--help` (all of them from config.py). Each option is the Settings field of its name.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from exporter import __version__
from exporter.config import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_LISTEN,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PENDING_JOBS,
    DEFAULT_MAX_PUSH_SOURCES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_SCHEDULES,
    DEFAULT_MAX_SERIES,
    DEFAULT_MAX_SERIES_PER_SOURCE,
    DEFAULT_PUSH_LOST_AFTER,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_SCHEDULE_MISFIRE_GRACE,
    DEFAULT_SCRAPE_INTERVAL,
    DEFAULT_SCRAPE_TIMEOUT,
    DEFAULT_STORE,
    DEFAULT_THREADS,
    DEMO_LISTEN,
    DEMO_SCRAPE_INTERVAL,
    DEMO_WORKERS,
    LOG_FORMATS,
    MAX_ATTEMPTS_LIMIT,
    MIN_SCRAPE_INTERVAL,
    ConfigError,
    Settings,
    SourceSettings,
    load_yaml,
    lost_after_for_from_yaml,
    make_source,
    parse_buckets,
    parse_listen,
    parse_lost_after_for,
    parse_source,
    sources_from_yaml,
)
from exporter.runtime import logs
from exporter.runtime.healthcheck import healthcheck

log = logging.getLogger(__name__)


def option(flag: str, *names: str, **kwargs: Any):
    """A click option that also reads JOB_EXPORTER_<OPTION> (docs/contract.md §5); a
    `--name/--no-name` flag reads JOB_EXPORTER_NAME (true or false)."""
    variable = "JOB_EXPORTER_" + flag.split("/")[0].lstrip("-").upper().replace("-", "_")
    return click.option(flag, *names, envvar=variable, show_envvar=True, **kwargs)


def _load_config(ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """Read the YAML file first, so its values become the defaults of the other options."""
    if not path:
        return path
    try:
        values = load_yaml(path)
        ctx.meta["config_file"] = (path, dict(values))  # for a SIGHUP's reload
        ctx.meta["config_sources"] = sources_from_yaml(values.pop("source", None))
        if "push_lost_after_for" in values:
            values["push_lost_after_for"] = lost_after_for_from_yaml(values["push_lost_after_for"])
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error
    known = {p.name for p in ctx.command.params if p.name}
    unknown = sorted(set(values) - known)
    if unknown:
        raise click.BadParameter(f"unknown keys in {path}: {', '.join(unknown)}", ctx=ctx)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


def _common_options(func):
    options = [
        option(
            "--config",
            type=click.Path(exists=True, dir_okay=False),
            is_eager=True,
            expose_value=False,
            callback=_load_config,
            help="YAML file whose keys are these options' names.",
        ),
        option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
            default=DEFAULT_LOG_LEVEL,
        ),
        option(
            "--log-format",
            type=click.Choice(LOG_FORMATS, case_sensitive=False),
            default=DEFAULT_LOG_FORMAT,
            help="text lines, or one JSON object per line (time, level, logger, message, "
            "exception).",
        ),
        option(
            "--threads",
            type=click.IntRange(1, 256),
            default=DEFAULT_THREADS,
            help="HTTP worker threads.",
        ),
        option(
            "--max-connections",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_CONNECTIONS,
            help="Open HTTP connections at once (slow clients hold one each, not a thread).",
        ),
        option(
            "--duration-buckets",
            type=_Buckets(),
            default=",".join(f"{bound:g}" for bound in DEFAULT_DURATION_BUCKETS),
            help="Upper bounds, in seconds, of the duration and queue wait histograms "
            "(+Inf is added); at most 30, increasing. A change keeps every stored count.",
        ),
        option(
            "--idle-timeout",
            type=click.FloatRange(min=1),
            default=DEFAULT_IDLE_TIMEOUT,
            help="Seconds before an idle HTTP connection is closed.",
        ),
    ]
    for decorate in reversed(options):
        func = decorate(func)
    return func


def _api_options(func):
    """The push and job API's options (docs/contract.md §4), shared by serve and demo."""
    options = [
        option(
            "--api-token",
            default=None,
            help="Bearer token every write under /api/ must send (none: open).",
        ),
        option(
            "--worker-token",
            default=None,
            help="Bearer token that may only push, lease, heartbeat, complete and fail.",
        ),
        option(
            "--viewer-token",
            default=None,
            help="Bearer token that may only read under /api/ (with --api-token-reads).",
        ),
        option(
            "--api-token-reads",
            is_flag=True,
            default=False,
            help="Require the token for reads under /api/ too (/metrics stays open).",
        ),
        option(
            "--max-push-sources",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PUSH_SOURCES,
            help="Distinct sources pushes may name (a push naming a new one beyond: 429).",
        ),
        option(
            "--cors-origin",
            "cors_origins",
            multiple=True,
            metavar="ORIGIN",
            help="A page of this origin (https://host[:port]) may read the API and, with a "
            "token, write (repeatable). Writes from other origins' pages are refused.",
        ),
        option(
            "--max-body-bytes",
            type=click.IntRange(min=1024),
            default=DEFAULT_MAX_BODY_BYTES,
            help="Largest request body under /api/ (413 beyond).",
        ),
        option(
            "--max-payload-bytes",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PAYLOAD_BYTES,
            help="Largest job payload or result, as JSON (413 beyond).",
        ),
        option(
            "--max-attempts",
            type=click.IntRange(1, MAX_ATTEMPTS_LIMIT),
            default=DEFAULT_MAX_ATTEMPTS,
            help="Runs a job gets when it is created without maxAttempts.",
        ),
        option(
            "--max-pending-jobs",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PENDING_JOBS,
            help="Job-API jobs pending at once; a create beyond, or a schedule's fire, waits "
            "(429 for a create).",
        ),
        option(
            "--backoff-base",
            type=click.FloatRange(min=0.001),
            default=DEFAULT_BACKOFF_BASE,
            help="Seconds before the first automatic retry; doubles per attempt, jittered.",
        ),
        option(
            "--backoff-cap",
            type=click.FloatRange(min=0.001),
            default=DEFAULT_BACKOFF_CAP,
            help="Longest wait between automatic retries, in seconds.",
        ),
        option(
            "--lease-seconds",
            type=click.FloatRange(min=0.001),
            default=DEFAULT_LEASE_SECONDS,
            help="Lease length when a worker asks for none.",
        ),
        option(
            "--push-lost-after",
            type=click.FloatRange(min=1),
            default=DEFAULT_PUSH_LOST_AFTER,
            help="Seconds a pushed job may go unreported while open before it counts as "
            "lost (when running) or is forgotten (when waiting).",
        ),
        option(
            "--push-lost-after-for",
            type=_LostAfterFor(),
            multiple=True,
            help="NAME=SECONDS: --push-lost-after for one push source (repeatable; in YAML "
            "a mapping of source names to seconds). Wins over what its pushes ask for.",
        ),
        option(
            "--max-schedules",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_SCHEDULES,
            help="Most schedules (recurring jobs) the API accepts (409 beyond).",
        ),
        option(
            "--schedule-misfire-grace",
            type=click.FloatRange(min=1),
            default=DEFAULT_SCHEDULE_MISFIRE_GRACE,
            help="Seconds late a schedule's fire still runs on time; older fires were missed "
            "and follow the schedule's misfire policy.",
        ),
    ]
    for decorate in reversed(options):
        func = decorate(func)
    return func


_NOT_SETTINGS = frozenset({"log_level", "log_format"})  # read by the command itself


class _Buckets(click.ParamType):
    """`0.005,0.01,...` (a YAML list too) to increasing bounds, for --duration-buckets."""

    name = "SECONDS,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_buckets(value)
        except ConfigError as error:
            self.fail(str(error), param, ctx)


class _LostAfterFor(click.ParamType):
    """`NAME=SECONDS` to a (name, seconds) pair, for --push-lost-after-for."""

    name = "NAME=SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_lost_after_for(str(value))
        except ConfigError as error:
            self.fail(str(error), param, ctx)


def _settings_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as Settings fields, which share their names: an option without a field
    of its name fails here, so the two vocabularies cannot drift apart."""
    return {name: value for name, value in options.items() if name not in _NOT_SETTINGS}


@click.group(context_settings={"show_default": True})
@click.version_option(__version__, prog_name="job-exporter")
def main() -> None:
    """Prometheus metrics for an app's background jobs."""


@main.command()
@_common_options
@option("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to serve /metrics and the API on.")
@option("--store", default=DEFAULT_STORE, help="sqlite:///path/file.db")
@option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME=URL",
    help="A JobInfoBase endpoint to scrape, or rq+redis://HOST:PORT/DB to read RQ's own"
    " queues and registries (repeat for several).",
)
@option(
    "--scrape-interval",
    type=click.FloatRange(min=MIN_SCRAPE_INTERVAL),
    default=DEFAULT_SCRAPE_INTERVAL,
    help="Seconds between scrapes of each source.",
)
@option(
    "--scrape-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_SCRAPE_TIMEOUT,
    help="Seconds to wait for a source to answer.",
)
@option(
    "--max-response-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULT_MAX_RESPONSE_BYTES,
    help="Largest source response accepted.",
)
@option(
    "--max-series-per-source",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_SERIES_PER_SOURCE,
    help="Distinct (type, name) pairs per source before names fold to __other__.",
)
@option(
    "--max-series",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_SERIES,
    help="Distinct (source, type, name) series in all before names fold to __other__.",
)
@option(
    "--scrape-redirects-elsewhere",
    is_flag=True,
    default=False,
    help="Follow a source's redirect to another host or port (refused by default: an "
    "http_status scrape error).",
)
@_api_options
@option(
    "--job-api/--no-job-api",
    default=True,
    help="Serve the job API (jobs, leases, schedules) and run its sweeps; off, its paths "
    "answer 404. Push, /metrics, /healthz and /readyz stay.",
)
@option(
    "--page/--no-page",
    default=True,
    help="Serve the built-in page, its files and its chart data (/api/v1/stats); off, "
    "they answer 404 and no history is sampled.",
)
@option(
    "--retention-days",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_RETENTION_DAYS,
    help="Days a finished job is kept once its source stops listing it.",
)
@click.pass_context
def serve(ctx: click.Context, **options: Any) -> None:
    """Scrape the sources and serve /metrics."""
    logs.configure(options["log_level"], options["log_format"].lower())
    sources = [*ctx.meta.get("config_sources", [])]
    try:
        given = options.pop("sources")
        sources = _merge_sources(sources, given)
        settings = Settings(sources=tuple(sources), **_settings_options(options))
    except ConfigError as error:
        raise click.UsageError(str(error)) from error
    _run(settings, lambda url: settings, _reloader(ctx.meta.get("config_file"), given))


@main.command()
@_common_options
@option("--listen", default=DEMO_LISTEN, help="HOST:PORT to serve on.")
@option("--store", default=None, help="Store URL  [default: a file in a temporary folder]")
@option(
    "--workers",
    type=click.IntRange(0, 64),
    default=DEMO_WORKERS,
    help="Demo workers running job-API jobs (plus one producer creating them).",
)
@_api_options
@click.pass_context
def demo(ctx: click.Context, **options: Any) -> None:
    """Everything on one machine: embedded store, built-in mock source, its scrapes, and
    demo workers running job-API jobs."""
    logs.configure(options["log_level"], options["log_format"].lower())
    with tempfile.TemporaryDirectory(prefix="job-exporter-demo-") as folder:
        options["store"] = options["store"] or f"sqlite:///{Path(folder, 'demo.db').as_posix()}"
        given = _settings_options(options)

        def settings_for(url: str) -> Settings:
            source = make_source("demo", f"{url}/demo/jobs", DEMO_SCRAPE_INTERVAL)
            return Settings(
                sources=(source,),
                scrape_interval=DEMO_SCRAPE_INTERVAL,
                mock_source=True,
                **given,
            )

        try:
            initial = Settings(**given)
        except ConfigError as error:
            raise click.UsageError(str(error)) from error
        _run(initial, settings_for)


main.add_command(healthcheck)


def _reloader(
    config_file: tuple[str, dict[str, Any]] | None, given: tuple[str, ...]
) -> Callable[[Settings], Settings] | None:
    """What SIGHUP does to `serve`: read the --config file again and take its sources (with
    those of the command line and environment, which still win); other keys that changed
    are named as needing a restart. None without a file: SIGHUP is then ignored, said so."""
    if config_file is None:
        return None
    path, first = config_file

    def reload(settings: Settings) -> Settings:
        values = load_yaml(path)
        sources = _merge_sources(sources_from_yaml(values.pop("source", None)), given)
        before = {key: value for key, value in first.items() if key != "source"}
        changed = sorted(key for key in {*values, *before} if values.get(key) != before.get(key))
        if changed:
            log.warning(
                "%s: %s changed; a reload takes only the sources, restart to apply the rest",
                path,
                ", ".join(key.replace("_", "-") for key in changed),
            )
        return replace(settings, sources=tuple(sources))

    return reload


def _run(
    initial: Settings,
    settings_for: Callable[[str], Settings],
    reload: Callable[[Settings], Settings] | None = None,
) -> None:
    """Bind first, then build the app with settings that may need the bound address."""
    from exporter.app import create_app
    from exporter.runtime.allocator import tune_allocator
    from exporter.server import bind, local_url, serve
    from exporter.store import StoreError

    tune_allocator()  # before the threads start, so their arenas follow it too
    host, port = parse_listen(initial.listen)
    try:
        sock = bind(host, port)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {initial.listen}: {error}") from error
    settings = settings_for(local_url(sock))
    try:
        serve(sock, lambda: create_app(settings), threads=settings.threads, reload=reload)
    except (StoreError, ValueError) as error:
        raise click.ClickException(str(error)) from error


def _merge_sources(from_file: list[SourceSettings], given: tuple[str, ...]) -> list[SourceSettings]:
    """Options and variables name NAME=URL; a name also in the file takes the new URL."""
    merged = {source.name: source for source in from_file}
    for text in given:
        source = parse_source(text)
        interval = merged[source.name].interval if source.name in merged else None
        merged[source.name] = SourceSettings(source.name, source.url, interval)
    return list(merged.values())


if __name__ == "__main__":  # pragma: no cover
    main()
