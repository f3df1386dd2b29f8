"""`GET /api/v1/stats/durations`: each job function's usual run time, read from the stored
duration histogram with the one quantile implementation, cached per snapshot version."""

from __future__ import annotations

import pytest
import requests

from exporter.api.durations import DurationCache
from exporter.model.counts import DEFAULT_BUCKETS
from exporter.stats.quantiles import quantile
from tests.helpers.data import START_MS, job
from tests.helpers.served import Exporter


def durations(exporter: Exporter, **params: str) -> requests.Response:
    return requests.get(f"{exporter.url}/api/v1/stats/durations", params=params, timeout=10)


def push(exporter: Exporter, items: list[dict], source: str = "push") -> None:
    url = f"{exporter.url}/api/v1/push"
    answer = requests.post(url, json=items, params={"source": source}, timeout=10)
    assert answer.status_code == 202, answer.text


def finished(job_id: str, seconds: float, **fields) -> dict:
    return job(
        job_id,
        finished=True,
        finishTimestamp=START_MS + seconds * 1000,
        status="completed",
        **fields,
    )


def test_percentiles_per_function_agree_with_the_histogram(exporter: Exporter):
    # Ten runs of send_email: eight of 0.3 s, two of 40 s; one run of resize, 2 s.
    items = [finished(f"m{n}", 0.3) for n in range(8)] + [finished("m8", 40), finished("m9", 40)]
    push(exporter, [*items, finished("r", 2, name="resize")])
    push(exporter, [job("open")])  # a running job counts no duration
    answer = durations(exporter)
    assert answer.status_code == 200
    body = answer.json()
    assert body["quantiles"] == [0.5, 0.95, 0.99]
    by_name = {row["name"]: row for row in body["functions"]}
    assert set(by_name) == {"send_email", "resize"}
    mail = by_name["send_email"]
    assert (mail["source"], mail["type"], mail["count"]) == ("push", "TASK", 10)
    bounds = [*DEFAULT_BUCKETS, float("inf")]
    counts = [0.0] * len(bounds)
    counts[next(i for i, b in enumerate(bounds) if b >= 0.3)] = 8
    counts[next(i for i, b in enumerate(bounds) if b >= 40)] = 2
    for q, field in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert mail[field] == pytest.approx(quantile(q, bounds, counts))
    assert mail["p50"] <= 0.5 < 10 < mail["p95"]  # the two slow runs are the tail
    assert durations(exporter, name="resize").json()["functions"] == [by_name["resize"]]
    assert durations(exporter, source="app").json()["functions"] == []
    assert durations(exporter, type="TASK", name="nothing").json()["functions"] == []


def test_the_table_is_built_once_per_store_version(exporter: Exporter):
    push(exporter, [finished("a", 1)])
    durations(exporter)
    cache = exporter.app.extensions["job_exporter.durations"]
    assert isinstance(cache, DurationCache)
    built = cache.builds
    for _ in range(5):
        assert durations(exporter).json()["functions"][0]["count"] == 1
    assert cache.builds == built  # nothing written: the same table
    push(exporter, [finished("b", 1)])
    assert durations(exporter).json()["functions"][0]["count"] == 2
    assert cache.builds == built + 1


def test_no_runs_no_functions(exporter: Exporter):
    assert durations(exporter).json() == {"quantiles": [0.5, 0.95, 0.99], "functions": []}


@pytest.mark.parametrize("field", ["source", "type", "name"])
def test_a_too_long_filter_is_refused_by_name(exporter: Exporter, field: str):
    answer = durations(exporter, **{field: "x" * 201})
    assert answer.status_code == 400
    body = answer.json()
    assert [error["field"] for error in body["errors"]] == [field] and body["error"]
