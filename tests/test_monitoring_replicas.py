"""Two replicas behind one real Prometheus count every job once, with the shipped rules.

Two `python -m exporter serve` replicas share one PostgreSQL; Debian's Prometheus scrapes both
every second and loads the rules the generator writes (with a 45 s rate window instead of 5m,
so the window fills within the test). A workload drives the job API at a known rate; then
every recording rule and the Summary's rate panels must be within 10% of the true figures,
while the raw `sum(rate(...))` beside them shows twice the truth: what the rules avoid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dashboards import queries, rules
from dashboards.config import DEFAULT, QUANTILES
from tests.helpers.postgres import PostgresCluster
from tests.helpers.processes import ExporterProcess
from tests.helpers.prometheus import api, prometheus_server, scraping
from tests.helpers.sources import JobSource

pytestmark = pytest.mark.slow

WINDOW = "45s"
CFG = dataclasses.replace(DEFAULT, rate_window=WINDOW)
TICK_S = 1.5  # the workload's period: jobs run, and wait in the queue, about one tick
NEW_PER_TICK = 4  # created each tick; the last of them fails once and is retried by hand
# Steady state per tick: 4 new jobs and 1 retried one start; 4 complete, 1 fails, 1 retry.
TRUE = {
    "started": 5 / TICK_S,
    "completed": 4 / TICK_S,
    "failed": 1 / TICK_S,
    "retries": 1 / TICK_S,
    "first_starts": NEW_PER_TICK / TICK_S,  # queue-wait observations
    "failure_ratio": 1 / 5,
}
# Every run and every wait lasts about one tick: in the (1, 2.5] bucket, where quantiles
# interpolate linearly.
BUCKET = (1.0, 2.5)
# Long enough for the rate window to hold only the steady workload, and a few seconds more.
WARM_S = 62.0
TOLERANCE = 0.10


class Workload:
    """The job API at a fixed pace, alternating between the replicas; counts what it did."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.session = requests.Session()
        self.stop = threading.Event()
        self.counts = {"started": 0, "completed": 0, "failed": 0, "retries": 0, "created": 0}
        self.late_ticks = 0
        self.error: BaseException | None = None
        self._calls = 0
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def _post(self, path: str, body: Any = None) -> requests.Response:
        self._calls += 1
        url = self.urls[self._calls % len(self.urls)]
        response = self.session.post(f"{url}/api/v1/jobs{path}", json=body, timeout=10)
        assert response.status_code in (200, 201, 204), (path, response.text)
        return response

    def _tick(self, leased: list[dict[str, Any]], to_fail: set[str]) -> list[dict[str, Any]]:
        for job in leased:
            if job["id"] in to_fail:
                to_fail.discard(job["id"])
                self._post(
                    f"/{job['id']}/fail", {"worker": "w", "error": "boom", "retryable": False}
                )
                self._post(f"/{job['id']}/retry")
                self.counts["failed"] += 1
                self.counts["retries"] += 1
            else:
                self._post(f"/{job['id']}/complete", {"worker": "w"})
                self.counts["completed"] += 1
        now_leased = []
        for _ in range(NEW_PER_TICK * 3):  # bounded: at most what can be due
            response = self._post("/lease", {"worker": "w", "types": ["RATE"], "leaseSeconds": 60})
            if response.status_code == 204:
                break
            now_leased.append(response.json())
        self.counts["started"] += len(now_leased)
        for n in range(NEW_PER_TICK):
            job = self._post("", {"type": "RATE", "name": "replica_rate", "maxAttempts": 1}).json()
            self.counts["created"] += 1
            if n == NEW_PER_TICK - 1:
                to_fail.add(job["id"])
        return now_leased

    def _run(self) -> None:
        leased: list[dict[str, Any]] = []
        to_fail: set[str] = set()
        start = time.monotonic()
        tick = 0
        try:
            while not self.stop.is_set():
                leased = self._tick(leased, to_fail)
                tick += 1
                wait = start + tick * TICK_S - time.monotonic()
                if wait < 0:
                    self.late_ticks += 1
                self.stop.wait(max(0.0, wait))  # the pace itself; stop ends it at once
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def app_source() -> Iterator[JobSource]:
    """A scraped source with no jobs (so the job API's workload is all the jobs there are):
    its health and ownership are per replica."""
    source = JobSource()
    source.serve_jobs([])
    yield source
    source.close()


@pytest.fixture(scope="module")
def replicas(cluster: PostgresCluster, app_source: JobSource) -> Iterator[list[str]]:
    """Two `serve` replicas on one new PostgreSQL database, both configured to scrape the
    source `app`; yields their base URLs."""
    store = cluster.new_database()
    started = []
    try:
        for _ in range(2):
            started.append(
                ExporterProcess(
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--store",
                    store,
                    "--source",
                    f"app={app_source.url}",
                    "--scrape-interval",
                    "1",
                )
            )
        yield [replica.url for replica in started]
    finally:
        for replica in started:
            with contextlib.suppress(Exception):
                replica.stop(timeout=10)
            replica.kill()


@pytest.fixture(scope="module")
def prometheus(replicas: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping both replicas every second, with the generated rules (45 s
    window) evaluated every second; yields its base URL."""
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "rules").mkdir()
    for filename, groups in rules.rule_files(CFG).items():
        (folder / "rules" / filename).write_text(rules.render(groups), encoding="utf-8")
    config = {
        **scraping(DEFAULT.exporter_job, replicas),
        "rule_files": ["rules/*.rules.yml"],
    }
    with prometheus_server(folder, config) as url:
        yield url


@pytest.fixture(scope="module")
def measured(prometheus: str, replicas: list[str]) -> Iterator[str]:
    """The workload running steadily for WARM_S seconds (and on while the tests read)."""
    workload = Workload(replicas)
    workload.start()
    deadline = time.monotonic() + WARM_S
    workload.stop.wait(max(0.0, deadline - time.monotonic()))
    assert workload.error is None, workload.error
    assert workload.late_ticks <= 2, f"the workload fell behind {workload.late_ticks} ticks"
    print(f"\nworkload after {WARM_S:g} s: {workload.counts}")
    yield prometheus
    workload.finish()
    assert workload.error is None, workload.error


SEEN: list[str] = []


def value(prometheus: str, expr: str) -> float:
    """The single value of an instant query (fails when it has none or several)."""
    SEEN.append(expr)
    result = api(prometheus, "query", query=expr)["result"]
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def near(measured_value: float, truth: float, what: str) -> None:
    print(f"{what}: {measured_value:.4f} (true {truth:.4f})")
    assert truth * (1 - TOLERANCE) <= measured_value <= truth * (1 + TOLERANCE), what


def test_every_recording_rule_shows_the_true_rate(measured: str) -> None:
    """Each record of the generated rules, summed over its labels, is the true figure."""
    p = measured
    finest, coarse = "source_type_name", "source_type"
    for level in (finest, coarse):
        near(value(p, f"sum({rules.started(level, CFG)})"), TRUE["started"], f"started {level}")
        outcome = f"{level}_outcome"
        for kind in ("completed", "failed"):
            expr = f'sum({rules.finished(outcome, CFG)}{{outcome="{kind}"}})'
            near(value(p, expr), TRUE[kind], f"{kind} {level}")
        near(
            value(p, f'{rules.failure_ratio(level, CFG)}{{type="RATE"}}'),
            TRUE["failure_ratio"],
            f"failure ratio {level}",
        )
        buckets = rules.buckets(rules.DURATION, f"{level}_le", CFG)
        runs = TRUE["completed"] + TRUE["failed"]
        near(value(p, f'sum({buckets}{{le="{BUCKET[1]:g}"}})'), runs, f"duration le 2.5 {level}")
        assert value(p, f'sum({buckets}{{le=~"1|1[.]0"}})') == 0
        for q in QUANTILES:
            expr = f'{rules.quantile(rules.DURATION, level, cfg=CFG)}{{quantile="{q}"}}'
            near(value(p, expr), BUCKET[0] + (BUCKET[1] - BUCKET[0]) * q, f"duration p{q} {level}")
    baseline = rules.quantile(rules.DURATION, finest, CFG.stuck_baseline_window, CFG)
    near(value(p, baseline), BUCKET[0] + (BUCKET[1] - BUCKET[0]) * 0.95, "duration p95 6h")
    waits = rules.buckets(rules.QUEUE_WAIT, f"{finest}_le", CFG)
    near(value(p, f'sum({waits}{{le="2.5"}})'), TRUE["first_starts"], "queue wait le 2.5")
    for q in QUANTILES:
        expr = f'{rules.quantile(rules.QUEUE_WAIT, finest, cfg=CFG)}{{quantile="{q}"}}'
        near(value(p, expr), BUCKET[0] + (BUCKET[1] - BUCKET[0]) * q, f"queue wait p{q}")
    near(value(p, f"sum({rules.retries(f'{finest}_trigger', CFG)})"), TRUE["retries"], "retries")
    # Every record of the generated files was read above.
    read = {name for name in queries.metric_names(" ".join(SEEN))}
    assert read == {r["record"] for r in rules.recording_rules(CFG)}


def test_raw_sum_doubles_what_the_rules_show(measured: str) -> None:
    """Beside the rules, the naive `sum(rate(...))` over both replicas is twice the truth."""
    p = measured
    started = value(p, f"sum(rate(background_jobs_started_total[{WINDOW}]))")
    near(started, 2 * TRUE["started"], "raw sum(rate(started)) over 2 replicas")
    failed = value(p, f'sum(rate(background_jobs_finished_total{{outcome="failed"}}[{WINDOW}]))')
    near(failed, 2 * TRUE["failed"], "raw sum(rate(failed)) over 2 replicas")
    assert value(p, "count(up == 1)") == 2


def summary_panel(title: str) -> list[str]:
    board = queries.dashboards()["summary.json"]
    found = [q.expr for q in queries.panel_queries(board) if q.panel == title]
    assert found, title
    return found


ALL = {"source": ".*", "type": ".*", "name": ".*", "job": ".*", "datasource": "prometheus"}


def panel_series(prometheus: str, expr: str) -> dict[str, float]:
    """A panel query as Grafana sends it (All selected, $__rate_interval as the window),
    by its legend label."""
    result = api(prometheus, "query", query=queries.expand(expr, ALL, WINDOW))["result"]
    return {
        ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items())): float(s["value"][1])
        for s in result
    }


def test_summary_rate_panels_show_the_true_rate(measured: str) -> None:
    """The Summary's started and finished panels, raw queries of both replicas, show the
    true rates (not twice them)."""
    (started,) = summary_panel("Started per second")
    near(panel_series(measured, started)["type=RATE"], TRUE["started"], "panel started")
    (finished,) = summary_panel("Finished per second by outcome")
    series = panel_series(measured, finished)
    near(series["outcome=completed"], TRUE["completed"], "panel completed")
    near(series["outcome=failed"], TRUE["failed"], "panel failed")
    assert series["outcome=lost"] == 0
    (lost,) = summary_panel("Lost per second by type")
    assert panel_series(measured, lost) == {"type=RATE": 0}
    (ratio,) = summary_panel("Failure ratio by type")
    near(
        panel_series(measured, ratio)["source=api,type=RATE"], TRUE["failure_ratio"], "panel ratio"
    )
    running_pending = summary_panel("Running and pending")
    # Jobs leased in the last tick run (5), the ones created in it wait (4): once, not twice.
    running = panel_series(measured, running_pending[0])["type=RATE"]
    pending = panel_series(measured, running_pending[1])["type=RATE"]
    print(f"panel running {running:g} pending {pending:g}")
    assert running <= 5 and pending <= NEW_PER_TICK + 1


def test_source_health_counts_each_source_once(measured: str, replicas: list[str]) -> None:
    """The Summary's health panels show one line per source whichever replicas serve it, and
    the source alerts stay silent: the source is up, and owned by exactly one replica (once
    the exporter serves `job_exporter_source_owned`)."""
    (up, source_up) = summary_panel("Exporter and sources up")
    assert set(panel_series(measured, up).values()) == {1}
    assert len(panel_series(measured, up)) == 2
    assert panel_series(measured, source_up) == {"source=app": 1}
    served = "job_exporter_source_owned" in requests.get(f"{replicas[0]}/metrics", timeout=10).text
    (owned,) = summary_panel("Replicas scraping each source")
    if served:
        assert panel_series(measured, owned) == {"source=app": 1}
    else:
        print("job_exporter_source_owned not served by this exporter yet")
    alerts = {r["alert"]: r["expr"] for r in rules.exporter_alert_rules(CFG)}
    for name in ("JobExporterSourceDown", "JobExporterSourceUnowned", "JobExporterScrapeErrors"):
        assert api(measured, "query", query=alerts[name])["result"] == [], name
