"""Exemplars: OpenMetrics bucket lines name the latest job that landed in them.

Each kind of source feeds them where its durations and queue waits are observed: scraped
jobs, pushed jobs and job-API runs. Pages are read over HTTP and parsed with
prometheus_client's OpenMetrics parser, which checks the exemplar syntax and its
128-character label limit.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter.model.counts import CountKind
from exporter.model.exemplars import MAX_ID_CHARS, Exemplar
from exporter.sources.scrape import ScrapeResult
from tests.helpers.data import START_MS, job
from tests.helpers.served import Exporter, LiveServer, live_server
from tests.helpers.sources import JobSource

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
DURATION = "background_jobs_duration_seconds_bucket"
QUEUE_WAIT = "background_jobs_queue_wait_seconds_bucket"
Found = dict[tuple[str, str, str, str, str], tuple[str, float, float]]


def exemplars_of(text: str) -> Found:
    """(sample, source, type, name, le) -> (job_id, value, timestamp) of every exemplar."""
    found: Found = {}
    for family in parse_om(text):
        for sample in family.samples:
            if sample.exemplar is None:
                continue
            labels = sample.labels
            key = (sample.name, labels["source"], labels["type"], labels["name"], labels["le"])
            exemplar = sample.exemplar
            assert set(exemplar.labels) == {"job_id"}
            found[key] = (exemplar.labels["job_id"], exemplar.value, float(exemplar.timestamp))
    return found


def read_exemplars(base_url: str) -> Found:
    response = requests.get(f"{base_url}/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    return exemplars_of(response.text)


def seconds(ms: float) -> float:
    return ms / 1000


def scrape(exporter: Exporter, source: JobSource, jobs: list[dict]) -> ScrapeResult:
    source.serve_jobs(jobs)
    result = exporter.scrape()
    assert result.ok, result
    return result


# --- scraped jobs ---------------------------------------------------------------------------


def test_scraped_jobs_name_their_buckets_and_a_later_one_takes_its_bucket_over(
    exporter: Exporter, job_source: JobSource
):
    clock = exporter.clock
    first_at = seconds(clock.now_ms())
    listed = [
        job("fast", start_ms=START_MS - 300, finished=True, finishTimestamp=START_MS),
        job("middling", start_ms=START_MS - 2000, finished=True, finishTimestamp=START_MS),
        job("slow", start_ms=START_MS - 7000, finished=True, finishTimestamp=START_MS),
        job("running", start_ms=START_MS - 1000),
        job("queued", enqueueTimestamp=START_MS - 4000),
        job("other", type="CRON", name="report", finished=True, finishTimestamp=START_MS + 50),
    ]
    scrape(exporter, job_source, listed)
    app = ("app", "TASK", "send_email")
    assert read_exemplars(exporter.url) == {
        (DURATION, *app, "0.5"): ("fast", 0.3, first_at),
        (DURATION, *app, "2.5"): ("middling", 2.0, first_at),
        (DURATION, *app, "10.0"): ("slow", 7.0, first_at),
        (QUEUE_WAIT, *app, "5.0"): ("queued", 4.0, first_at),
        (DURATION, "app", "CRON", "report", "0.1"): ("other", 0.05, first_at),
    }

    # Ten seconds later: another fast job takes the 0.5 bucket over, a run that will be
    # retried ends failed after 1.5 s (the 2.5 bucket), and the running job finishes (seen
    # finished now: 11 s).
    clock.advance(10)
    later_at = seconds(clock.now_ms())
    finished = job("running", start_ms=START_MS - 1000, finished=True)
    faster = job("faster", start_ms=START_MS, finished=True, finishTimestamp=START_MS + 450)
    flaky = job(
        "flaky", start_ms=START_MS + 1000, status="retrying", finishTimestamp=START_MS + 2500
    )
    scrape(exporter, job_source, [*listed[:3], finished, listed[4], listed[5], faster, flaky])
    assert read_exemplars(exporter.url) == {
        (DURATION, *app, "0.5"): ("faster", 0.45, later_at),
        (DURATION, *app, "2.5"): ("flaky", 1.5, later_at),
        (DURATION, *app, "10.0"): ("slow", 7.0, first_at),
        (DURATION, *app, "30.0"): ("running", 11.0, later_at),
        (QUEUE_WAIT, *app, "5.0"): ("queued", 4.0, first_at),
        (DURATION, "app", "CRON", "report", "0.1"): ("other", 0.05, first_at),
    }


def test_the_text_format_has_no_exemplars(exporter: Exporter, job_source: JobSource):
    scrape(exporter, job_source, [job("a", finished=True, finishTimestamp=START_MS + 200)])
    assert read_exemplars(exporter.url)  # OpenMetrics has one
    plain = requests.get(f"{exporter.url}/metrics", timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "#" not in "".join(line for line in plain.text.splitlines() if "_bucket{" in line)


def test_an_id_that_prometheus_would_not_give_back_gives_no_exemplar(
    exporter: Exporter, job_source: JobSource
):
    """Over 128 characters with the label name, or with a character OpenMetrics escapes
    (Prometheus keeps exemplar label values escaped): no exemplar rather than a wrong one.
    The limit counts characters, not bytes."""
    at = seconds(exporter.clock.now_ms())
    longest = "ü" * MAX_ID_CHARS  # with the label name, exactly the 128 characters allowed
    plain = "plain-id"
    scrape(
        exporter,
        job_source,
        [
            job(plain, finished=True, finishTimestamp=START_MS + 200),
            job(longest, finished=True, finishTimestamp=START_MS + 2000),
            job("y" * (MAX_ID_CHARS + 1), finished=True, finishTimestamp=START_MS + 20_000),
            job('say "hi"', finished=True, finishTimestamp=START_MS + 40_000),
            job("back\\slash", finished=True, finishTimestamp=START_MS + 100_000),
            job("line\nfeed", finished=True, finishTimestamp=START_MS + 400_000),
        ],
    )
    app = ("app", "TASK", "send_email")
    found = read_exemplars(exporter.url)
    assert found == {
        (DURATION, *app, "0.5"): (plain, 0.2, at),
        (DURATION, *app, "2.5"): (longest, 2.0, at),
    }
    # Such an id later in a bucket that has an exemplar leaves that one in place, and one
    # listed after it in the same scrape is the bucket's exemplar.
    exporter.clock.advance(1)
    later = [
        job(f"{n}", start_ms=START_MS + 500, finished=True, finishTimestamp=START_MS + 700)
        for n in ("y" * 200, 'q"uote')
    ]
    scrape(exporter, job_source, later)
    assert read_exemplars(exporter.url) == found
    exporter.clock.advance(1)
    kept = job("kept", start_ms=START_MS + 500, finished=True, finishTimestamp=START_MS + 900)
    after = [
        job(f"{n}", start_ms=START_MS + 500, finished=True, finishTimestamp=START_MS + 800)
        for n in ("z" * 200, 'n"ew')
    ]
    scrape(exporter, job_source, [*later, kept, *after])
    assert read_exemplars(exporter.url)[(DURATION, *app, "0.5")] == ("kept", 0.4, at + 2)


def test_a_write_that_fails_records_no_exemplar(exporter: Exporter, job_source: JobSource):
    scrape(exporter, job_source, [job("running")])
    board = exporter.runtime.exemplars
    before = board.current()
    exporter.runtime.store.close()  # the plan is made; its write fails
    job_source.serve_jobs([job("running", finished=True, finishTimestamp=START_MS + 300)])
    assert exporter.scrape().reason == "store"
    assert board.current() == before


def test_a_new_exemplar_is_not_hidden_by_the_page_cache(exporter: Exporter, job_source):
    """The page is cached on the store's state; an exemplar recorded after its write
    committed (a scrape in between sees the counts without it) must still show at once."""
    scrape(exporter, job_source, [job("a", finished=True, finishTimestamp=START_MS + 200)])
    page = exporter.runtime.metrics_page
    (first, _), _ = page.render(OPENMETRICS, False)  # the cached part, the process part
    assert page.render(OPENMETRICS, False)[0][0] is first  # cached while nothing changes
    late = Exemplar("b", 0.25, seconds(START_MS) + 1)
    bucket = ("TASK", "send_email", CountKind.DURATION_BUCKET, "0.5")
    exporter.runtime.exemplars.record("app", {bucket: late})
    again = b"".join(page.render(OPENMETRICS, False)[0])
    assert exemplars_of(again.decode())[(DURATION, "app", "TASK", "send_email", "0.5")][0] == "b"


def test_a_page_of_stale_counts_shows_no_exemplars(exporter: Exporter, job_source):
    """While the store does not answer, /metrics shows the last counts read; exemplars
    recorded since may not be in them, so that page shows none (and says the store is
    down)."""
    scrape(exporter, job_source, [job("a", finished=True, finishTimestamp=START_MS + 200)])
    assert read_exemplars(exporter.url)
    exporter.runtime.store.close()  # every store call now fails
    response = requests.get(f"{exporter.url}/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert exemplars_of(response.text) == {}
    assert "\njob_exporter_store_up 0\n" in response.text
    assert "background_jobs_duration_seconds_bucket{" in response.text  # the last counts


# --- pushed jobs ----------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path) -> LiveServer:
    with live_server(tmp_path) as live:
        yield live


def test_pushed_jobs_name_their_buckets_and_a_later_one_takes_its_bucket_over(server):
    first_at = seconds(server.clock.now_ms())
    push = "/api/v1/push?source=billing"
    started = job("slow", start_ms=START_MS - 5000, enqueueTimestamp=START_MS - 5500)
    assert server.post(push, [started]).status_code == 202
    done = [
        job("quick", start_ms=START_MS - 200, finished=True, finishTimestamp=START_MS),
        job("slow", start_ms=START_MS - 5000, finished=True, finishTimestamp=START_MS + 40_000),
    ]
    assert server.post(push, done).status_code == 202
    billing = ("billing", "TASK", "send_email")
    assert read_exemplars(server.base_url) == {
        (QUEUE_WAIT, *billing, "0.5"): ("slow", 0.5, first_at),
        (DURATION, *billing, "0.5"): ("quick", 0.2, first_at),
        (DURATION, *billing, "60.0"): ("slow", 45.0, first_at),
    }
    server.clock.advance(3)
    quicker = job("quicker", start_ms=START_MS, finished=True, finishTimestamp=START_MS + 300)
    assert server.post(push, [quicker]).status_code == 202
    found = read_exemplars(server.base_url)
    assert found[(DURATION, *billing, "0.5")] == ("quicker", 0.3, first_at + 3)
    assert found[(DURATION, *billing, "60.0")] == ("slow", 45.0, first_at)


# --- job-API runs ---------------------------------------------------------------------------


def test_job_api_runs_name_their_buckets_and_a_later_one_takes_its_bucket_over(server):
    clock = server.clock
    start = seconds(clock.now_ms())
    first = server.create()["id"]
    second = server.create()["id"]
    clock.advance(0.2)
    assert server.lease("w1")["id"] == first  # waited 0.2 s
    clock.advance(2)
    server.step(first, "complete", {"worker": "w1"})  # ran 2 s
    assert server.lease("w2")["id"] == second  # waited 2.2 s
    clock.advance(0.3)
    refused = server.post(f"/api/v1/jobs/{second}/complete", {"worker": "w1"})
    assert refused.status_code == 409  # another worker's lease: nothing recorded
    server.step(second, "fail", {"worker": "w2", "error": "boom", "retryable": True})  # 0.3 s
    api = ("api", "TASK", "send_email")
    assert read_exemplars(server.base_url) == {
        (QUEUE_WAIT, *api, "0.5"): (first, 0.2, start + 0.2),
        (QUEUE_WAIT, *api, "2.5"): (second, 2.2, start + 2.2),
        (DURATION, *api, "2.5"): (first, 2.0, start + 2.2),
        (DURATION, *api, "0.5"): (second, 0.3, start + 2.5),
    }
    # The retry's run: no queue wait again (first start only), a duration in the 2.5 bucket.
    clock.advance(60)
    assert server.lease("w3")["id"] == second
    clock.advance(1.5)
    server.step(second, "complete", {"worker": "w3"})
    found = read_exemplars(server.base_url)
    assert found[(DURATION, *api, "2.5")] == (second, 1.5, start + 64)
    assert found[(QUEUE_WAIT, *api, "2.5")] == (second, 2.2, start + 2.2)
