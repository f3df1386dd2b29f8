"""The dashboards and rules against the real thing: the demo exporter and a real Prometheus.

Starts `python -m exporter demo` and Debian's `prometheus` with the project's own config and
rules (a temporary copy scraping the demo every second), waits until the Summary dashboard has
data, then runs every panel query of every dashboard and every rule through Prometheus's HTTP
API. Also checks that every exporter series the artefacts name is in the real /metrics.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dashboards import queries
from dashboards.config import DEFAULT
from tests.helpers.processes import ExporterProcess
from tests.helpers.prometheus import api, prometheus_server, wait_for
from tests.helpers.waiting import poll

pytestmark = pytest.mark.slow

ROOT = queries.ROOT
SCRAPE_INTERVAL = "1s"
# What Grafana's $__rate_interval would be for a 1 s scrape at this test's short ranges,
# rounded up so a window always holds a few samples.
RATE_INTERVAL = "10s"
# The demo's schedule fires every 30 s, and its "unanswered fire" series exists only in the
# second or two until a demo worker completes that fire's job: a 1 s scrape can miss one such
# window on a loaded machine (CI did), so the deadline spans several fires. It bounds a wait
# that ends as soon as every panel has data.
DATA_DEADLINE = 150.0
POLL_STEP = 0.5


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo exporter on a free 127.0.0.1 port; yields its base URL."""
    demo = ExporterProcess(
        "demo", "--listen", "127.0.0.1:0", cwd=tmp_path_factory.mktemp("exporter")
    )
    try:
        wait_for(
            "demo exporter /healthz",
            lambda: requests.get(f"{demo.url}/healthz", timeout=2).status_code == 200,
            30,
            demo.process,
        )
        yield demo.url
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.stop(timeout=10)
        demo.kill()  # if it lingers


def project_config_for(exporter_url: str, folder: Path) -> Path:
    """A copy of prometheus/ whose config scrapes the test exporter every second.

    Only what must differ here changes: the exporter target, the intervals, and no
    Alertmanager (none runs in this test). Rules and rule_files are the project's own.
    """
    shutil.copytree(ROOT / "prometheus", folder, dirs_exist_ok=True)
    config = yaml.safe_load((folder / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = SCRAPE_INTERVAL
    config["global"]["evaluation_interval"] = SCRAPE_INTERVAL
    config.pop("alerting", None)
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == DEFAULT.exporter_job]
    assert len(jobs) == 1, "prometheus.yml must scrape the exporter job exactly once"
    jobs[0]["static_configs"] = [{"targets": [exporter_url.removeprefix("http://")]}]
    config["scrape_configs"] = jobs
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prometheus(exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus with the project's config and rules; yields its base URL."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = project_config_for(exporter, folder / "config")
    with prometheus_server(folder, config) as url:
        yield url


def run_query(prometheus: str, expr: str, instant: bool) -> list[Any]:
    """The result of a panel query the way Grafana asks: instant, or a range over 30 s."""
    if instant:
        return api(prometheus, "query", query=expr)["result"]
    now = time.time()
    return api(prometheus, "query_range", query=expr, start=now - 30, end=now, step="1s")["result"]


def label_values(prometheus: str, label: str, selector: str) -> list[str]:
    """What Grafana's `label_values(selector, label)` lists."""
    return api(prometheus, f"label/{label}/values", **{"match[]": selector})


@pytest.fixture(scope="module")
def chosen(prometheus: str) -> dict[str, str]:
    """A real source, type and name from the data, as a person would pick them in Grafana.

    Picks a job function whose duration quantiles are already recorded, so By name shows a
    real job function with finished runs. It picks from the scraped source `demo`: the demo
    also runs job-API jobs (source `api`), which have no scrape health to show.
    """
    expr = (
        "source_type_name:background_jobs_duration_seconds:quantile_rate5m"
        '{quantile="0.5", source="demo"}'
    )
    found = poll(
        lambda: run_query(prometheus, expr, instant=True), timeout=DATA_DEADLINE, step=POLL_STEP
    )
    assert found, "the demo finished no job with a duration"
    labels = found[0]["metric"]
    return {key: labels[key] for key in ("source", "type", "name", "job")}


@pytest.fixture(scope="module")
def variables(chosen: dict[str, str]) -> dict[str, str]:
    """The chosen values as Grafana writes them into queries (regex-escaped for `=~`)."""
    escaped = {key: queries.grafana_regex_escape(value) for key, value in chosen.items()}
    return {**escaped, "datasource": DEFAULT.datasource_uid}


ALL = {
    "source": ".*",
    "type": ".*",
    "name": ".*",
    "job": ".*",
    "datasource": DEFAULT.datasource_uid,
}


def empty_summary_panels(prometheus: str, values: dict[str, str]) -> list[str]:
    """Summary queries that return no series yet."""
    board = queries.dashboards()["summary.json"]
    return [
        f"{q.panel} [{q.ref_id}]: {q.expr}"
        for q in queries.panel_queries(board)
        if not run_query(prometheus, queries.expand(q.expr, values, RATE_INTERVAL), q.instant)
    ]


@pytest.fixture(scope="module")
def warmed(prometheus: str, variables: dict[str, str]) -> str:
    """Waits (bounded, polling) until every Summary panel has data; fails listing the rest."""
    missing = poll(
        lambda: empty_summary_panels(prometheus, variables),
        until=lambda missing: not missing,
        timeout=DATA_DEADLINE,
        step=POLL_STEP,
    )
    assert not missing, "Summary panels without data:\n" + "\n".join(missing)
    return prometheus


def test_summary_panels_return_data(warmed: str, variables: dict[str, str]) -> None:
    """With the demo's source selected, and with All, every Summary panel has data."""
    assert not empty_summary_panels(warmed, variables)
    assert not empty_summary_panels(warmed, ALL)


@pytest.mark.parametrize("values", ["real", "all"])
def test_every_panel_query_runs(warmed: str, variables: dict[str, str], values: str) -> None:
    """Every panel query of every dashboard succeeds, with real values and with All."""
    chosen = variables if values == "real" else ALL
    count = 0
    for board in queries.dashboards().values():
        for query in queries.panel_queries(board):
            expr = queries.expand(query.expr, chosen, RATE_INTERVAL)
            assert "$" not in expr, f"unexpanded variable in {query.panel}: {expr}"
            run_query(warmed, expr, query.instant)
            count += 1
    assert count >= 40


def test_by_name_runs_for_every_job_function(warmed: str) -> None:
    """By name's queries succeed for every job function the demo has, whatever its name holds
    (dots, spaces, slashes), escaped as Grafana escapes it."""
    series = api(warmed, "series", **{"match[]": "background_jobs_started_total"})
    functions = {(s["source"], s["type"], s["name"]) for s in series}
    assert len(functions) >= 3
    board = queries.dashboards()["by-name.json"]
    for source, job_type, name in sorted(functions):
        values = {
            "job": ".*",
            "source": queries.grafana_regex_escape(source),
            "type": queries.grafana_regex_escape(job_type),
            "name": queries.grafana_regex_escape(name),
        }
        for query in queries.panel_queries(board):
            run_query(warmed, queries.expand(query.expr, values, RATE_INTERVAL), query.instant)


def test_by_name_shows_the_chosen_job(warmed: str, variables: dict[str, str]) -> None:
    """For a job function with finished runs, By name's run and duration panels have data."""
    board = queries.dashboards()["by-name.json"]
    wanted = {"Started and finished per second", "Duration percentiles", "Duration distribution"}
    exprs = [
        (queries.expand(q.expr, variables, RATE_INTERVAL), q.instant)
        for q in queries.panel_queries(board)
        if q.panel in wanted
    ]
    assert len(exprs) >= len(wanted)
    empty = poll(
        lambda: [expr for expr, instant in exprs if not run_query(warmed, expr, instant)],
        until=lambda empty: not empty,
        timeout=DATA_DEADLINE,
        step=POLL_STEP,
    )
    assert not empty, f"By name panels without data for {variables}: {empty}"


def test_every_variable_query_lists_values(
    warmed: str, chosen: dict[str, str], variables: dict[str, str]
) -> None:
    """Each `label_values` variable query lists real values, among them the chosen one."""
    pattern = re.compile(r"label_values\((.+), (\w+)\)")
    for board in queries.dashboards().values():
        for name, query in queries.variable_queries(board).items():
            match = pattern.fullmatch(query)
            assert match, query
            selector = queries.expand(match.group(1), variables, RATE_INTERVAL)
            values = label_values(warmed, match.group(2), selector)
            assert chosen[name] in values, f"{board['title']} ${name}: {query} -> {values}"


def test_every_rule_evaluates(warmed: str) -> None:
    """Every rule's expression runs through the query API, and Prometheus reports each rule
    healthy after evaluating it in its group."""
    for rule in queries.rules():
        api(warmed, "query", query=rule["expr"])
    expected = {rule.get("record") or rule["alert"] for rule in queries.rules()}

    def evaluated(loaded: list[dict[str, Any]]) -> bool:
        return all(not r["lastEvaluation"].startswith("0001-") for r in loaded)

    loaded = poll(
        lambda: [r for g in api(warmed, "rules")["groups"] for r in g["rules"]],
        until=evaluated,
        timeout=15,
        step=POLL_STEP,
    )
    assert {r["name"] for r in loaded} == expected
    assert len(loaded) == len(queries.rules())
    unhealthy = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not unhealthy


def test_records_the_dashboards_read_have_data(warmed: str) -> None:
    """Records of started and finished jobs and duration quantiles hold samples from the demo."""
    for record in (
        "source_type_name:background_jobs_started:rate5m",
        "source_type_outcome:background_jobs_finished:rate5m",
        "source_type:background_jobs_failure_ratio:rate5m",
        "source_type:background_jobs_duration_seconds:quantile_rate5m",
    ):
        assert api(warmed, "query", query=record)["result"], record


def exporter_series_names(text: str) -> set[str]:
    """Every series name a /metrics body can hold, including families with no sample yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_named_series_exists_in_the_exporter(exporter: str) -> None:
    """Each exporter series a dashboard, variable or rule reads is in the real /metrics
    (a typo in a query fails here), and each record read is defined by a rule."""
    served = exporter_series_names(requests.get(f"{exporter}/metrics", timeout=10).text)
    records = {rule["record"] for rule in queries.rules() if "record" in rule}
    exprs = [rule["expr"] for rule in queries.rules()]
    for board in queries.dashboards().values():
        exprs += [q.expr for q in queries.panel_queries(board)]
        exprs += list(queries.variable_queries(board).values())
    named = set().union(*(queries.metric_names(expr) for expr in exprs))
    assert named, "no series found in the artefacts"
    unknown = sorted(n for n in named if ":" not in n and n not in served)
    assert not unknown, f"not served by the exporter: {unknown}"
    unrecorded = sorted(n for n in named if ":" in n and n not in records)
    assert not unrecorded, f"read but never recorded: {unrecorded}"
    # Each job family of docs/contract.md §3 is used somewhere.
    for family in (
        "background_jobs_running",
        "background_jobs_pending",
        "background_jobs_started_total",
        "background_jobs_finished_total",
        "background_jobs_retries_total",
        "background_jobs_duration_seconds_bucket",
        "background_jobs_queue_wait_seconds_bucket",
        "background_jobs_oldest_start_timestamp_seconds",
        "job_exporter_source_up",
        "job_exporter_source_scrape_errors_total",
    ):
        assert family in named, f"{family} is in no dashboard or rule"
