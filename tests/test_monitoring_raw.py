"""Every panel of the three dashboards has data on a Prometheus that loaded none of our rules.

Most teams' Prometheus loads only its own rule files: the dashboards must not need ours. This
starts the demo exporter and Debian's Prometheus with no `rule_files` at all, scraping the
demo every second, adds to the demo's traffic what it lacks (a schedule whose jobs no worker
takes, so a fire stays unanswered), and runs every panel query of every dashboard the way
Grafana would send it (every variable on All, `$__rate_interval` one minute, the dashboard's
time range), polling until each returns data.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dashboards import queries
from dashboards.config import DEFAULT
from tests.helpers.processes import ExporterProcess
from tests.helpers.prometheus import api, prometheus_server, scraping, wait_for
from tests.helpers.waiting import poll

pytestmark = pytest.mark.slow

# Grafana's $__rate_interval for a 15 s scrape interval (four intervals) is a minute; this
# Prometheus scrapes every second, so a minute holds plenty of samples.
RATE_INTERVAL = "1m"
ALL = {"source": ".*", "type": ".*", "name": ".*", "job": ".*", "datasource": "prometheus"}
DATA_DEADLINE = 120.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo exporter, plus a schedule firing every 2 s whose type no demo worker takes."""
    process = ExporterProcess(
        "demo", "--listen", "127.0.0.1:0", cwd=tmp_path_factory.mktemp("demo")
    )
    try:
        wait_for(
            "demo /healthz",
            lambda: requests.get(f"{process.url}/healthz", timeout=2).status_code == 200,
            30,
            process.process,
        )
        created = requests.post(
            f"{process.url}/api/v1/schedules",
            json={"type": "BATCH", "name": "unworked_nightly", "intervalSeconds": 2},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        yield process.url
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.stop(timeout=10)
        process.kill()


@pytest.fixture(scope="module")
def bare_prometheus(demo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping the demo every second, with no rule files; yields its URL."""
    folder = tmp_path_factory.mktemp("bare-prometheus")
    with prometheus_server(folder, scraping(DEFAULT.exporter_job, [demo])) as url:
        yield url


def returns_data(prometheus: str, expr: str, instant: bool, since: float) -> bool:
    """Whether the query, as Grafana sends it, has any sample: now for a stat, anywhere in
    the dashboard's time range (here: since Prometheus started) for a graph."""
    if instant:
        return bool(api(prometheus, "query", query=expr)["result"])
    now = time.time()
    data = api(prometheus, "query_range", query=expr, start=since, end=now, step="1s")
    return bool(data["result"])


def panel_queries() -> list[tuple[str, queries.PanelQuery]]:
    """Every panel query of every dashboard, by dashboard file."""
    return [
        (filename, query)
        for filename, board in queries.dashboards().items()
        for query in queries.panel_queries(board)
    ]


def test_prometheus_loaded_no_rules(bare_prometheus: str) -> None:
    """The premise: this Prometheus has no recording or alerting rule at all."""
    assert api(bare_prometheus, "rules")["groups"] == []


def test_every_panel_has_data_without_our_rules(bare_prometheus: str, demo: str) -> None:
    """All 3 dashboards, every panel query, All selected: each returns data."""
    since = time.time() - 5
    found = panel_queries()
    assert len(found) >= 60
    waiting: list[tuple[str, queries.PanelQuery]] = []
    for filename, query in found:
        expr = queries.expand(query.expr, ALL, RATE_INTERVAL)
        assert "$" not in expr, expr
        waiting.append((filename, query))

    def empty() -> list[str]:
        return [
            f"{filename} {q.panel} [{q.ref_id}]"
            for filename, q in waiting
            if not returns_data(
                bare_prometheus, queries.expand(q.expr, ALL, RATE_INTERVAL), q.instant, since
            )
        ]

    missing = poll(empty, until=lambda missing: not missing, timeout=DATA_DEADLINE, step=1.0)
    assert not missing, "panels without data on a Prometheus without rules:\n" + "\n".join(missing)
    print(f"\nall {len(found)} panel queries have data")


def test_every_variable_lists_values_without_our_rules(bare_prometheus: str) -> None:
    """Each variable's `label_values` query lists values from the raw series."""
    for board in queries.dashboards().values():
        for name, query in queries.variable_queries(board).items():
            selector, _, label = query.removeprefix("label_values(").rstrip(")").rpartition(", ")
            values: Any = api(
                bare_prometheus,
                f"label/{label}/values",
                **{"match[]": queries.expand(selector, ALL, RATE_INTERVAL)},
            )
            assert values, f"{board['title']} ${name}: {query}"
