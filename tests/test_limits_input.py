"""The input limits of docs/contract.md §8: what a hostile client or source can make the
exporter hold, answer, follow or count is bounded.

Against real `serve` processes where the fault was seen there (memory of a huge bad push,
500s on deep JSON, unbounded push sources, redirects followed anywhere); in-process where
the rule alone is at stake (exact nesting levels, counting past the listed errors, the
exporter-wide series cap).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import DEFAULT_MAX_PUSH_SOURCES as MAX_PUSH_SOURCES
from exporter.sources.fetch import FetchError, FetchLimits, fetch
from exporter.tracking.decode import (
    MAX_LISTED_ERRORS,
    MAX_NESTING,
    InvalidDocument,
    decode_jobs,
    deeper_than,
)
from exporter.tracking.plan import OTHER
from tests.helpers.data import START_MS, job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, resident_mb
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource, Reply, serve_handler
from tests.helpers.waiting import poll

UP = "job_exporter_source_up"
ERRORS = "job_exporter_source_scrape_errors_total"
REFUSED = "job_exporter_push_refused_total"
FOLDED = "job_exporter_folded_jobs_total"
STARTED = "background_jobs_started_total"


def nested(levels: int, inner: str = "1") -> str:
    """JSON text of `levels` arrays one inside the other (0: just `inner`)."""
    return "[" * levels + inner + "]" * levels


def serve(tmp_path: Path, *args: str) -> ExporterProcess:
    return ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path / 's.db'}", *args
    )


def post(url: str, body: bytes | str, **kwargs: Any) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/json"}
    return requests.post(url, data=data, headers=headers, timeout=60, **kwargs)


# --- the nesting scan itself ----------------------------------------------------------


@pytest.mark.parametrize(("levels", "deep"), [(1, False), (63, False), (64, False), (65, True)])
def test_deeper_than_counts_levels_exactly(levels: int, deep: bool):
    assert deeper_than(nested(levels).encode(), MAX_NESTING) is deep
    objects = '{"a":' * levels + "1" + "}" * levels
    assert deeper_than(objects.encode(), MAX_NESTING) is deep


def test_brackets_inside_strings_are_not_nesting():
    text = json.dumps([{"name": "[" * 500, "other": '{\\"[[[' * 100}]).encode()
    assert not deeper_than(text, MAX_NESTING)
    assert deeper_than(json.dumps([{"a": "[[["}, json.loads(nested(70))]).encode(), 64)


def test_many_shallow_containers_are_not_deep():
    body = json.dumps([{"a": [1], "b": {"c": []}} for _ in range(20_000)]).encode()
    assert not deeper_than(body, MAX_NESTING)


# --- errorCount and at most 100 item errors --------------------------------------------


def test_decoding_lists_100_errors_and_counts_all_by_field():
    items = [job(f"ok-{n}") for n in range(5)] + [0] * 1000 + [job("x", finished="no")] * 7
    decoded = decode_jobs(json.dumps(items).encode(), START_MS)
    assert len(decoded.jobs) == 5
    assert len(decoded.errors) == 1007
    assert [error.index for error in decoded.errors.listed] == list(range(5, 105))
    assert all(error.message for error in decoded.errors.listed)
    assert decoded.invalid_by_field() == {"item": 1000, "isFinished": 7}
    assert [error.index for error in decoded.errors][-7:] == list(range(1005, 1012))


def test_a_push_400_lists_100_errors_and_says_how_many(exporter: Exporter):
    items = [job(f"j{n}", finished="maybe") for n in range(250)]
    response = post(f"{exporter.url}/api/v1/push", json.dumps(items))
    assert response.status_code == 400
    body = response.json()
    assert body["errorCount"] == 250
    assert len(body["errors"]) == MAX_LISTED_ERRORS == 100
    assert [error["index"] for error in body["errors"]] == list(range(100))
    assert {error["field"] for error in body["errors"]} == {"isFinished"}
    assert "250 invalid" in body["error"]


def test_a_scrape_counts_every_invalid_item_past_the_listed_ones(
    exporter: Exporter, job_source: JobSource
):
    job_source.serve_jobs([job("good")] + [job(f"bad{n}", finished="no") for n in range(150)])
    for scrapes in (1, 2):  # the second one through the memo of the first
        result = exporter.scrape()
        assert result.ok and result.invalid == 150
        metrics = exporter.metrics()
        invalid = metrics.value("job_exporter_invalid_jobs_total", source="app", field="isFinished")
        assert invalid == 150 * scrapes


# --- nesting: scraped sources ---------------------------------------------------------


def deep_job(job_id: str, levels: int) -> str:
    """A job item with an unknown field whose value nests so that the whole listing is
    `levels` deep (its array and the item's object are two of them)."""
    item = json.dumps(job(job_id))[:-1]
    return item + ', "meta": ' + nested(levels - 2) + "}"


@pytest.mark.parametrize(("levels", "ok"), [(64, True), (65, False), (1000, False)])
def test_a_scraped_body_deeper_than_64_is_invalid_json(
    exporter: Exporter, job_source: JobSource, levels: int, ok: bool
):
    job_source.reply = Reply(body=f"[{deep_job('a', levels)}]".encode())
    result = exporter.scrape()
    assert result.ok is ok, result
    metrics = exporter.metrics()
    assert metrics.value(UP, source="app") == (1 if ok else 0)
    assert metrics.value(ERRORS, source="app", reason="invalid_json") == (0 if ok else 1)


def test_a_deep_item_among_unchanged_ones_fails_the_scrape(
    exporter: Exporter, job_source: JobSource
):
    """A steady scrape decodes only the new items: a deep one among them is found too."""
    items = [json.dumps(job(f"j{n}")) for n in range(50)]
    job_source.reply = Reply(body=f"[{','.join(items)}]".encode())
    assert exporter.scrape().ok
    items[7] = deep_job("j7", 65)
    job_source.reply = Reply(body=f"[{','.join(items)}]".encode())
    result = exporter.scrape()
    assert result.reason == "invalid_json"
    assert exporter.metrics().value(UP, source="app") == 0


# --- nesting: API routes, exact levels -------------------------------------------------


def test_a_payload_may_nest_64_levels_in_all_not_65(exporter: Exporter):
    """The body's own object is a level: a payload 63 deep makes 64."""
    url = f"{exporter.url}/api/v1/jobs"
    for levels, status in ((64, 201), (65, 400)):
        body = '{"type": "T", "name": "n", "payload": ' + nested(levels - 1) + "}"
        response = post(url, body)
        assert response.status_code == status, response.text
        if status == 400:
            assert response.json()["errors"][0]["field"] == "payload"


def test_a_push_may_nest_64_levels_in_all_not_65(exporter: Exporter):
    url = f"{exporter.url}/api/v1/push"
    assert post(url, f"[{deep_job('a', 64)}]").status_code == 202
    deep = post(url, f"[{deep_job('b', 65)}]")
    assert deep.status_code == 400
    assert deep.json()["errors"][0]["field"] == "body"
    # One object, not in an array: its depth is its own (the array around it is ours).
    assert post(url, deep_job("c", 65)).status_code == 202  # 64 deep without the array
    assert post(url, deep_job("d", 66)).status_code == 400


# --- the exporter-wide series cap and the push source cap, in-process ---------------------


def test_series_fold_into_other_once_the_exporter_wide_cap_is_reached(make_exporter):
    exporter = make_exporter({}, max_series_per_source=20, max_series=30)
    for source in ("a", "b", "c"):
        items = [job(f"{source}{n}", name=f"name-{n}") for n in range(15)]
        assert post(f"{exporter.url}/api/v1/push?source={source}", json.dumps(items)).ok
    metrics = exporter.metrics()
    series = {s.labels for s in exporter.runtime.collector.view().series}
    assert len([s for s in series if s[2] != OTHER]) == 30
    assert metrics.value(FOLDED, source="a") in (None, 0)
    assert metrics.value(FOLDED, source="b") in (None, 0)
    assert metrics.value(FOLDED, source="c") == 15
    assert metrics.value(STARTED, source="c", type=OTHER, name=OTHER) == 15  # a new type
    # After a restart the budget starts from what the store holds: still full.
    exporter.close()
    again = make_exporter({}, max_series_per_source=20, max_series=30)
    post(f"{again.url}/api/v1/push?source=d", json.dumps([job("d1", name="fresh")]))
    assert again.metrics().value(STARTED, source="d", type=OTHER, name=OTHER) == 1


def test_the_push_source_cap_holds_across_a_restart(make_exporter):
    exporter = make_exporter({})
    for n in range(MAX_PUSH_SOURCES):
        response = post(f"{exporter.url}/api/v1/push?source=s{n}", json.dumps([job("1")]))
        assert response.status_code == 202
    exporter.close()
    again = make_exporter({})
    refused = post(f"{again.url}/api/v1/push?source=new", json.dumps([job("1")]))
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["field"] == "source"
    assert post(f"{again.url}/api/v1/push?source=s7", json.dumps([job("2")])).status_code == 202
    assert again.metrics().value(REFUSED, reason="sources") == 1


def test_a_refused_push_changes_the_counter_but_no_job_counts(make_exporter):
    exporter = make_exporter({})
    exporter.runtime.ingestor.max_push_sources = 1
    assert post(f"{exporter.url}/api/v1/push?source=one", json.dumps([job("1")])).ok
    before = exporter.runtime.store.snapshot().series
    assert post(f"{exporter.url}/api/v1/push?source=two", "[]").status_code == 429
    assert exporter.runtime.store.snapshot().series == before
    assert exporter.metrics().value(REFUSED, reason="sources") == 1


def test_an_invalid_push_takes_no_place_among_the_push_sources(make_exporter):
    exporter = make_exporter({})
    exporter.runtime.ingestor.max_push_sources = 1
    bad = post(f"{exporter.url}/api/v1/push?source=bad", json.dumps([job("1", finished=3)]))
    assert bad.status_code == 400
    assert post(f"{exporter.url}/api/v1/push?source=good", json.dumps([job("1")])).ok


# --- redirects, in-process ------------------------------------------------------------


class Redirector:
    """127.0.0.1 paths: /jobs redirects to `target` (a path here, or a URL elsewhere);
    /real answers the jobs."""

    def __init__(self, target: str, jobs: list[dict[str, Any]]) -> None:
        body = json.dumps(jobs).encode()
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/jobs"):
                    self.send_response(302)
                    self.send_header("Location", redirector.target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.target = target
        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere(job_source: JobSource) -> Iterator[Redirector]:
    job_source.serve_jobs([job("far")])
    redirector = Redirector(job_source.url, [])
    yield redirector
    redirector.close()


def test_a_redirect_to_another_port_is_refused_unless_allowed(
    elsewhere: Redirector, job_source: JobSource
):
    limits = FetchLimits.within(5, 1 << 20)
    with requests.Session() as session, pytest.raises(FetchError) as refused:
        fetch(session, elsewhere.url, limits)
    assert refused.value.reason == "http_status"
    assert "another host or port" in refused.value.detail
    assert job_source.requests == 0
    allowed = FetchLimits.within(5, 1 << 20, redirects_elsewhere=True)
    with requests.Session() as session:
        assert json.loads(fetch(session, elsewhere.url, allowed))[0]["id"] == "far"


def test_a_redirect_loop_ends_as_http_status():
    loop = Redirector("/jobs", [])
    try:
        with requests.Session() as session, pytest.raises(FetchError) as failed:
            fetch(session, loop.url, FetchLimits.within(5, 1 << 20))
        assert failed.value.reason == "http_status" and "redirects" in failed.value.detail
    finally:
        loop.close()


# --- against real serve processes -----------------------------------------------------


@pytest.mark.slow
def test_a_push_of_4_million_bad_items_answers_small_within_bounded_memory(tmp_path: Path):
    """Issue 20: an 8 MB `[0,0,...]` push got a 295 MB answer and took RSS to 2.36 GB."""
    exporter = serve(tmp_path)
    try:
        url = f"{exporter.url}/api/v1/push"
        assert post(url, json.dumps([job("warm")])).status_code == 202
        baseline = resident_mb(exporter.process.pid)
        body = b"[" + b",".join([b"0"] * 4_000_000) + b"]"
        done = threading.Event()
        peak = baseline

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.01):
                peak = max(peak, resident_mb(exporter.process.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            response = post(url, body)
        finally:
            done.set()
            sampler.join()
        print(
            f"8 MB push of 4,000,000 bad items: {len(response.content)} byte answer, "
            f"RSS {baseline:.0f} MB before, peak {peak:.0f} MB"
        )
        assert response.status_code == 400
        answer = response.json()
        assert answer["errorCount"] == 4_000_000
        assert len(answer["errors"]) == 100
        assert len(response.content) < 50_000
        assert peak - baseline < 600, f"resident memory grew {peak - baseline:.0f} MB"
        assert requests.get(f"{exporter.url}/healthz", timeout=5).status_code == 200
    finally:
        assert exporter.stop() == 0, exporter.log


@pytest.mark.slow
def test_the_101st_push_source_gets_429_and_metrics_stay_bounded(tmp_path: Path):
    exporter = serve(tmp_path)
    try:
        statuses = []
        with requests.Session() as session:
            for n in range(150):
                response = session.post(
                    f"{exporter.url}/api/v1/push",
                    params={"source": f"s{n}"},
                    data=json.dumps([job("1", name=f"name-{n}")]),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert response.json()["errors"][0]["field"] == "source"
        assert statuses == [202] * 100 + [429] * 50
        text = requests.get(f"{exporter.url}/metrics", timeout=10).text
        metrics = Metrics(text)
        print(f"/metrics after 150 push sources (100 taken): {len(text)} bytes")
        assert metrics.value(REFUSED, reason="sources") == 50
        assert metrics.value(STARTED, source="s99", type="TASK", name="name-99") == 1
        assert 'source="s100"' not in text
        assert len(text) < 400_000
    finally:
        assert exporter.stop() == 0, exporter.log


# Every route that reads a JSON body, with a body nesting 1,000 deep and the field a 400
# must name: the free-form field where it is one, the typed field, or the body.
DEEP = nested(1000)
DEEP_ROUTES = [
    ("/api/v1/push", DEEP, "body"),
    ("/api/v1/push", "[" + deep_job("a", 1000) + "]", "body"),
    ("/api/v1/jobs", '{"type": "T", "name": "n", "payload": ' + DEEP + "}", "payload"),
    ("/api/v1/jobs", DEEP, "body"),
    ("/api/v1/jobs/lease", '{"worker": ' + DEEP + "}", "worker"),
    ("/api/v1/jobs/x/heartbeat", '{"worker": "w", "leaseSeconds": ' + DEEP + "}", None),
    ("/api/v1/jobs/x/complete", '{"worker": "w", "result": ' + DEEP + "}", "result"),
    ("/api/v1/jobs/x/fail", '{"worker": "w", "error": ' + DEEP + "}", "error"),
    ("/api/v1/jobs/x/retry", DEEP, "body"),
    ("/api/v1/schedules", '{"type": "T", "name": "n", "payload": ' + DEEP + "}", "payload"),
    ("/api/v1/schedules/x/pause", DEEP, "body"),
    ("/api/v1/schedules/x/resume", DEEP, "body"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    process = serve(tmp_path_factory.mktemp("deep"))
    yield process
    assert process.stop() == 0, process.log
    assert "Traceback" not in process.log


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body", "field"), DEEP_ROUTES, ids=[r[0] for r in DEEP_ROUTES])
def test_json_nested_1000_deep_is_a_400_naming_the_field(
    served: ExporterProcess, path: str, body: str, field: str | None
):
    response = post(served.url + path, body)
    assert response.status_code == 400, response.text[:300]
    errors = response.json()["errors"]
    assert errors and errors[0]["field"] == (field or errors[0]["field"])
    if field is None:  # a typed field: named as msgspec's path names it
        assert errors[0]["field"].startswith("leaseSeconds")


@pytest.mark.slow
def test_64_levels_pass_and_65_do_not_in_a_real_process(served: ExporterProcess):
    url = f"{served.url}/api/v1/jobs"
    for levels, status in ((64, 201), (65, 400)):
        body = '{"type": "T", "name": "n", "payload": ' + nested(levels - 1) + "}"
        assert post(url, body).status_code == status


@pytest.mark.slow
def test_a_deeply_nested_source_is_invalid_json_and_down(tmp_path: Path, job_source: JobSource):
    """Issue 20: such a source failed unseen: nothing counted, `source_up` missing or 1."""
    deep = JobSource()
    deep.reply = Reply(body=nested(1000).encode())
    job_source.serve_jobs([job("a")])
    exporter = serve(
        tmp_path,
        "--source",
        f"deep={deep.url}",
        "--source",
        f"flips={job_source.url}",
        "--scrape-interval",
        "0.1",
    )
    try:

        def read() -> Metrics:
            return exporter.metrics()

        metrics = poll(read, until=lambda m: m.value(UP, source="flips") == 1)
        assert metrics.value(UP, source="flips") == 1
        job_source.reply = Reply(body=f"[{deep_job('a', 65)}]".encode())
        metrics = poll(
            read,
            until=lambda m: (
                (m.value(ERRORS, source="deep", reason="invalid_json") or 0) >= 1
                and (m.value(ERRORS, source="flips", reason="invalid_json") or 0) >= 1
            ),
        )
        for source in ("deep", "flips"):
            assert metrics.value(UP, source=source) == 0, source
            assert metrics.value(ERRORS, source=source, reason="invalid_json") >= 1
            assert metrics.value(ERRORS, source=source, reason="internal") == 0
        assert "nested more than 64 levels" in exporter.log
    finally:
        code = exporter.stop()
        deep.close()
    assert code == 0, exporter.log


@pytest.mark.slow
def test_redirects_elsewhere_are_refused_and_same_port_ones_followed(
    tmp_path: Path, job_source: JobSource
):
    job_source.serve_jobs([job("far")])
    away = Redirector(job_source.url, [])
    home = Redirector("/real", [job("near")])
    exporter = serve(
        tmp_path,
        "--source",
        f"away={away.url}",
        "--source",
        f"home={home.url}",
        "--scrape-interval",
        "0.1",
    )
    try:
        metrics = poll(
            exporter.metrics,
            until=lambda m: (
                (m.value(ERRORS, source="away", reason="http_status") or 0) >= 1
                and m.value(UP, source="home") == 1
            ),
        )
        assert metrics.value(UP, source="away") == 0
        assert metrics.value(ERRORS, source="away", reason="http_status") >= 1
        assert metrics.value(UP, source="home") == 1
        assert metrics.value(STARTED, source="home", type="TASK", name="send_email") == 1
        assert job_source.requests == 0
        assert "redirects to another host or port" in exporter.log
    finally:
        code = exporter.stop()
        away.close()
        home.close()
    assert code == 0, exporter.log


def test_fetch_refuses_an_unreadable_redirect_target():
    odd = Redirector("http://127.0.0.1:notaport/x", [])
    try:
        with requests.Session() as session, pytest.raises(FetchError) as refused:
            fetch(session, odd.url, FetchLimits.within(5, 1 << 20, redirects_elsewhere=True))
        assert refused.value.reason == "http_status"
    finally:
        odd.close()


def test_an_invalid_document_never_escapes_decoding_as_another_error():
    for body in (nested(5000).encode(), ("[" + nested(70) + "]").encode()):
        with pytest.raises(InvalidDocument):
            decode_jobs(body, START_MS)
