"""`/api/v1/stats/...` and the page's files, over real HTTP with a manual clock."""

from __future__ import annotations

from importlib import resources

import msgspec
import pytest
import requests

from exporter.api import stats_schemas
from tests.helpers.data import START_MS, job
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource


def get(exporter: Exporter, path: str, **params: object) -> requests.Response:
    return requests.get(f"{exporter.url}{path}", params=params, timeout=5)


def run_a_minute(exporter: Exporter, job_source: JobSource) -> None:
    """Two jobs start, one finishes after 4 s and one fails; a sample every 5 s.

    A finished CRON job is there before the first sample: what appears in a store that was
    empty is found rather than started, and gets no rate.
    """
    seed = job("seed", type="CRON", name="cleanup", finished=True)
    job_source.serve_jobs([seed])
    exporter.scrape()
    exporter.runtime.history.sample()
    job_source.serve_jobs([seed, job("a"), job("b", type="HTTP", name="POST /hook")])
    exporter.scrape()
    exporter.clock.advance(5)
    exporter.runtime.history.sample()
    job_source.serve_jobs(
        [
            seed,
            job("a", finished=True, finishTimestamp=START_MS + 4000, status="completed"),
            job("b", type="HTTP", name="POST /hook", finished=True, status="failed"),
        ]
    )
    exporter.clock.advance(5)
    exporter.scrape()
    exporter.runtime.history.sample()


def test_summary_has_totals_and_moving_series(exporter: Exporter, job_source: JobSource):
    run_a_minute(exporter, job_source)
    answer = get(exporter, "/api/v1/stats/summary").json()
    assert answer["step"] == 5 and answer["span"] >= 3600
    assert answer["totals"] == {
        "running": 0,
        "pending": 0,
        "started": 3,
        "completed": 2,
        "failed": 1,
        "lost": 0,
    }
    series = answer["series"]
    assert series["t"] == [START_MS, START_MS + 5000, START_MS + 10_000]
    assert series["running"] == [0, 2, 0]
    assert series["started"] == [None, 24.0, 0.0]  # 2 jobs in 5 s
    assert series["completed"] == [None, 0.0, 12.0]
    # 4 s sent by "a"; "b" sent no finishTimestamp: 10 s from its start to being seen finished
    assert series["avgDuration"] == [None, None, 7.0]
    # One run in the 2.5-5 s bucket, one in the 5-10 s bucket, as histogram_quantile reads them
    assert series["p50"] == [None, None, 5.0]
    assert series["p95"] == [None, None, 9.5]
    assert series["p99"] == [None, None, 9.9]


def test_types_give_one_series_per_type(exporter: Exporter, job_source: JobSource):
    run_a_minute(exporter, job_source)
    answer = get(exporter, "/api/v1/stats/types", points=2).json()
    assert [entry["type"] for entry in answer["types"]] == ["CRON", "HTTP", "TASK"]
    http = answer["types"][1]
    # Three samples thinned to two: every second one back from the newest, rates exact.
    assert http["t"] == [START_MS, START_MS + 10_000]
    assert http["failed"] == [None, 6.0]
    assert get(exporter, "/api/v1/stats/types", limit=1).json()["types"][0]["type"] in {
        "CRON",
        "HTTP",
        "TASK",
    }


def test_names_list_and_one_function(exporter: Exporter, job_source: JobSource):
    run_a_minute(exporter, job_source)
    names = get(exporter, "/api/v1/stats/names", q="hook").json()
    assert names["names"] == [
        {
            "source": "app",
            "type": "HTTP",
            "name": "POST /hook",
            "running": 0,
            "started": 1,
            "failed": 1,
        }
    ]
    assert names["total"] == 1
    one = get(exporter, "/api/v1/stats/name", source="app", type="HTTP", name="POST /hook")
    assert one.status_code == 200
    assert one.json()["series"]["failed"][-1] is not None


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/stats/summary", {"points": "many"}, "points"),
        ("/api/v1/stats/summary", {"points": "1"}, "points"),
        ("/api/v1/stats/summary", {"window": "nan"}, "window"),
        ("/api/v1/stats/summary", {"window": "99999999"}, "window"),
        ("/api/v1/stats/summary", {"window": "86401"}, "window"),
        ("/api/v1/stats/types", {"window": "0"}, "window"),
        (
            "/api/v1/stats/name",
            {"source": "app", "type": "T", "name": "n", "window": "x"},
            "window",
        ),
        ("/api/v1/stats/failing", {"window": "-1"}, "window"),
        ("/api/v1/stats/failing", {"window": "90000"}, "window"),
        ("/api/v1/stats/failing", {"limit": "0"}, "limit"),
        ("/api/v1/stats/failing", {"limit": "101"}, "limit"),
        ("/api/v1/stats/failing", {"limit": "ten"}, "limit"),
        ("/api/v1/stats/types", {"limit": "0"}, "limit"),
        ("/api/v1/stats/names", {"q": "x" * 201}, "q"),
        ("/api/v1/stats/name", {"type": "TASK", "name": "send_email"}, "source"),
        ("/api/v1/stats/name", {"source": "app", "type": "TASK"}, "name"),
    ],
)
def test_bad_parameters_get_a_400_naming_the_field(exporter: Exporter, path, params, field):
    response = get(exporter, path, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["field"] == field and body["error"]


def test_every_window_up_to_a_day_is_answered_from_the_tier_that_covers_it(
    exporter: Exporter, job_source: JobSource
):
    run_a_minute(exporter, job_source)
    young = get(exporter, "/api/v1/stats/summary", window=86400).json()
    assert young["step"] == 5 and len(young["series"]["t"]) == 3  # all there is, finest
    for _ in range(725):  # an hour more of 5 s samples fills the fine tiers
        exporter.clock.advance(5)
        exporter.runtime.history.sample()
    for path in ("/api/v1/stats/summary", "/api/v1/stats/types"):
        for window, step in ((900, 5), (3600, 5), (6 * 3600, 60), (24 * 3600, 60)):
            answer = get(exporter, path, window=window, points=300)
            assert answer.status_code == 200, (path, window)
            assert answer.json()["step"] == step and answer.json()["span"] >= 24 * 3600
    one = {"source": "app", "type": "HTTP", "name": "POST /hook"}
    assert get(exporter, "/api/v1/stats/name", window=3600, **one).json()["step"] == 30
    day = get(exporter, "/api/v1/stats/name", window=86400, **one).json()
    assert day["step"] == 600 and day["series"]["failed"][-1] is not None


def test_failing_lists_the_functions_with_failed_runs(exporter: Exporter, job_source: JobSource):
    run_a_minute(exporter, job_source)
    answer = get(exporter, "/api/v1/stats/failing", window=900).json()
    assert answer["window"] == 900 and answer["step"] == 30
    assert answer["failing"] == [
        {
            "source": "app",
            "type": "HTTP",
            "name": "POST /hook",
            "failures": 1,
            "failed": 1,
            "lost": 0,
            "finished": 1,
            "ratio": 1.0,
        }
    ]
    assert (
        get(exporter, "/api/v1/stats/failing", window=86400).json()["failing"]
        == (answer["failing"])
    )
    assert get(exporter, "/api/v1/stats/failing").json()["window"] == 3600  # the default


def test_an_unknown_function_is_a_json_404(exporter: Exporter):
    response = get(exporter, "/api/v1/stats/name", source="app", type="TASK", name="nope")
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "name"


def test_the_page_and_its_modules_are_served(exporter: Exporter):
    page = get(exporter, "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'src="/ui/app.js"' in page.text
    module = get(exporter, "/ui/app.js")
    assert module.headers["Content-Type"].startswith("text/javascript")
    assert module.headers["Cache-Control"] == "no-cache"
    assert get(exporter, "/ui/vendor/uPlot.esm.js").status_code == 200
    missing = get(exporter, "/ui/nothing.js")
    assert missing.status_code == 404 and "error" in missing.json()
    assert get(exporter, "/ui/../app.py").status_code == 404


def test_the_page_ships_as_package_data():
    static = resources.files("exporter.web") / "static"
    names = {entry.name for entry in static.iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names
    vendor = {entry.name for entry in (static / "vendor").iterdir()}
    assert {"uPlot.esm.js", "uPlot.min.css", "uPlot.LICENSE"} <= vendor


def test_answers_match_the_shapes_the_openapi_document_gives(
    exporter: Exporter, job_source: JobSource
):
    run_a_minute(exporter, job_source)
    shapes = {
        "/api/v1/stats/summary": stats_schemas.SummaryStats,
        "/api/v1/stats/types": stats_schemas.TypesStats,
        "/api/v1/stats/names": stats_schemas.NameList,
        "/api/v1/stats/failing": stats_schemas.FailingStats,
    }
    for path, shape in shapes.items():
        msgspec.json.decode(get(exporter, path).content, type=shape, strict=True)
    one = get(exporter, "/api/v1/stats/name", source="app", type="TASK", name="send_email")
    msgspec.json.decode(one.content, type=stats_schemas.NameStats, strict=True)
    described = get(exporter, "/api/openapi.json").json()["paths"]
    assert {"/api/v1/stats/summary", "/api/v1/stats/name"} <= described.keys()
    failing = described["/api/v1/stats/failing"]["get"]
    assert {p["name"] for p in failing["parameters"]} == {"window", "limit"}
    assert "400" in failing["responses"]
