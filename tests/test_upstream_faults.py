"""Upstream faults: each reason counted, logged once per change, /metrics still answering."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time

import pytest

from tests.helpers.data import job
from tests.helpers.processes import free_port
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource, Reply

ERRORS = "job_exporter_source_scrape_errors_total"


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/jobs"


def assert_fault_counted(exporter: Exporter, reason: str, source: str = "app") -> None:
    metrics = exporter.metrics()  # /metrics answers while the source is broken
    assert metrics.value("job_exporter_source_up", source=source) == 0
    assert metrics.value(ERRORS, source=source, reason=reason) == 1
    others = {"connection", "timeout", "http_status", "invalid_json", "too_large", "internal"}
    others -= {reason}
    for other in others:
        assert metrics.value(ERRORS, source=source, reason=other) == 0


def test_anything_else_that_breaks_a_scrape_is_an_internal_error(
    exporter: Exporter, job_source: JobSource, monkeypatch, caplog
):
    """A fault nobody foresaw (here a bug injected into the ingest path) still ends the
    scrape as a failure: counted as `internal`, source_up 0, logged with its cause."""
    job_source.serve_jobs([job("a")])
    assert exporter.scrape().ok

    def broken(*args, **kwargs):
        raise RuntimeError("a bug on the ingest path")

    monkeypatch.setattr(exporter.runtime.ingestor, "ingest_listing", broken)
    job_source.serve_jobs([job("a"), job("b")])
    with caplog.at_level(logging.WARNING):
        assert exporter.scrape().reason == "internal"
    assert_fault_counted(exporter, "internal")
    assert "a bug on the ingest path" in caplog.text


def test_connection_refused(make_exporter):
    exporter = make_exporter({"app": closed_port_url()})
    assert exporter.scrape().reason == "connection"
    assert_fault_counted(exporter, "connection")


def test_timeout_when_the_source_hangs(make_exporter, job_source: JobSource):
    exporter = make_exporter({"app": job_source.url}, scrape_timeout=0.3)
    release = threading.Event()
    job_source.reply = Reply(hang=release)
    try:
        assert exporter.scrape().reason == "timeout"
    finally:
        release.set()
    assert_fault_counted(exporter, "timeout")


def test_timeout_when_the_source_trickles(make_exporter, job_source: JobSource):
    """Each byte arrives well within the read timeout; the whole scrape still may not."""
    exporter = make_exporter({"app": job_source.url}, scrape_timeout=0.5)
    job_source.reply = Reply(body=json.dumps([job("a")]).encode(), trickle_s=0.05)
    started = time.monotonic()
    assert exporter.scrape().reason == "timeout"
    assert time.monotonic() - started < 5
    assert_fault_counted(exporter, "timeout")


@pytest.mark.parametrize("status", [500, 503, 404])
def test_http_status(exporter: Exporter, job_source: JobSource, status: int):
    job_source.reply = Reply(status=status, body=b'{"error": "down"}')
    assert exporter.scrape().reason == "http_status"
    assert_fault_counted(exporter, "http_status")


@pytest.mark.parametrize(
    "body",
    [b"[{not json", b'{"jobs": []}', b'[{"id": "a"', b"", b"\xff\xfe\x00garbage", b'"text"'],
    ids=["malformed", "object", "truncated", "empty", "binary", "string"],
)
def test_invalid_json(exporter: Exporter, job_source: JobSource, body: bytes):
    job_source.reply = Reply(body=body)
    assert exporter.scrape().reason == "invalid_json"
    assert_fault_counted(exporter, "invalid_json")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_too_large(make_exporter, job_source: JobSource, chunked: bool):
    exporter = make_exporter({"app": job_source.url}, max_response_bytes=4096)
    body = json.dumps([job(f"job-{n}") for n in range(200)]).encode()
    job_source.reply = Reply(body=body, chunked=chunked)
    assert exporter.scrape().reason == "too_large"
    assert_fault_counted(exporter, "too_large")
    assert exporter.metrics().job("background_jobs_started_total") is None


def test_gzip_bodies_are_decoded_and_bombs_are_capped(make_exporter, job_source: JobSource):
    exporter = make_exporter({"app": job_source.url}, max_response_bytes=64 * 1024)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    job_source.reply = Reply(body=gzip.compress(json.dumps([job("a")]).encode()), headers=headers)
    assert exporter.scrape().ok
    bomb = b"[" + b" " * 10_000_000 + b"]"  # 10 MB of spaces: about 10 kB compressed
    job_source.reply = Reply(body=gzip.compress(bomb), headers=headers)
    assert exporter.scrape().reason == "too_large"
    metrics = exporter.metrics()
    assert metrics.value(ERRORS, source="app", reason="too_large") == 1
    assert metrics.job("background_jobs_started_total") == 1


def test_a_fault_is_logged_once_per_change_of_state(
    exporter: Exporter, job_source: JobSource, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="exporter.sources.scrape")
    job_source.reply = Reply(status=500)
    for _ in range(3):
        exporter.scrape()
    job_source.reply = Reply(body=b"nope")
    exporter.scrape()  # a different reason is a change worth a line
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    exporter.scrape()
    lines = [record.getMessage() for record in caplog.records]
    assert sum("failed (http_status)" in line for line in lines) == 1
    assert sum("failed (invalid_json)" in line for line in lines) == 1
    assert sum("scrape succeeded" in line for line in lines) == 1
    metrics = exporter.metrics()
    assert metrics.value(ERRORS, source="app", reason="http_status") == 3
    assert metrics.value("job_exporter_source_up", source="app") == 1


def test_a_broken_source_leaves_a_good_one_alone(make_exporter, job_source: JobSource):
    exporter = make_exporter({"app": job_source.url, "broken": closed_port_url()})
    job_source.serve_jobs([job("a")])
    assert exporter.scrape("app").ok
    assert not exporter.scrape("broken").ok
    metrics = exporter.metrics()
    assert metrics.value("job_exporter_source_up", source="app") == 1
    assert metrics.value("job_exporter_source_up", source="broken") == 0
    assert metrics.job("background_jobs_started_total") == 1
