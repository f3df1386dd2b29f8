"""Scraping a 100,000-job JobInfoBase response end to end over HTTP: first and steady."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import orjson

from bench.data import START_MS, encode, finish_some, many_jobs
from bench.harness import Result, median_seconds
from bench.servers import StaticSource
from exporter.app import create_app, runtime_of
from exporter.clock import ManualClock
from exporter.config import Settings, SourceSettings

JOBS = 100_000


def run(quick: bool) -> list[Result]:
    repeat = 3 if quick else 9
    jobs = many_jobs(JOBS)
    body = encode(jobs)
    source = StaticSource(body)
    clock = ManualClock(START_MS + 60_000)
    folder = tempfile.TemporaryDirectory()
    firsts, first_baselines, steadies, steady_baselines = [], [], [], []
    try:
        # Each scrape is followed by its baseline on the same bytes, so both see the machine
        # in the same state; the medians of each are compared.
        for attempt in range(1 if quick else 3):
            settings = Settings(
                store=f"sqlite:///{Path(folder.name, f'first-{attempt}.db')}",
                sources=(SourceSettings("app", source.url),),
                max_series_per_source=5000,
            )
            runtime = runtime_of(create_app(settings, clock=clock))
            firsts.append(median_seconds(lambda runtime=runtime: _scrape(runtime), 1))
            first_baselines.append(median_seconds(lambda: orjson.loads(body), 1))
            if attempt == 0:
                _check_counts(runtime)
                steady_runtime = runtime
            else:
                runtime.stop()
        for _ in range(repeat):
            if finish_some(jobs, 0.01) != JOBS // 100:  # 1% of the jobs finish between scrapes
                raise RuntimeError("ran out of running jobs to finish")
            source.body = encode(jobs)
            clock.advance(1)
            steadies.append(median_seconds(lambda: _scrape(steady_runtime), 1))
            steady_baselines.append(median_seconds(lambda: orjson.loads(source.body), 1))
        steady_runtime.stop()
    finally:
        source.close()
        folder.cleanup()
    steady, steady_baseline = statistics.median(steadies), statistics.median(steady_baselines)
    first_baseline = statistics.median(first_baselines)
    size = f"{len(body) / 1e6:.1f} MB"
    return [
        Result(
            "scrape_steady_100k",
            f"scrape of {JOBS:,} jobs ({size}), 1% changed",
            steady * 1000,
            steady_baseline * 1000,
            "orjson.loads of the same bytes",
            "ms",
            1.2,
            at_most=True,
        ),
        Result(
            "scrape_first_100k",
            f"first scrape of {JOBS:,} new jobs ({size})",
            statistics.median(firsts) * 1000,
            first_baseline * 1000,
            "orjson.loads of the same bytes",
            "ms",
            8,
            at_most=True,
        ),
    ]


def _scrape(runtime) -> None:
    result = runtime.scraper.scrape("app")
    if not result.ok:
        raise RuntimeError(f"benchmark scrape failed: {result}")


def _check_counts(runtime) -> None:
    started = sum(
        series.started for series in runtime.collector.view().series if series.labels[0] == "app"
    )
    if started != JOBS:
        raise RuntimeError(f"the first scrape counted {started} starts, not {JOBS}")
