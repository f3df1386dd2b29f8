"""SIGHUP makes `serve` read its --config file's sources again, without a restart."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.data import job
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow


def up_sources(process: ExporterProcess) -> set[str]:
    samples = process.metrics().samples
    return {
        dict(labels)["source"]
        for name, labels in samples
        if name == "job_exporter_source_up" and samples[(name, labels)] == 1
    }


def lost(process: ExporterProcess) -> dict[str, float]:
    found: dict[str, float] = {}
    for (name, labels), value in process.metrics().samples.items():
        tags = dict(labels)
        if name == "background_jobs_finished_total" and tags["outcome"] == "lost" and value:
            found[tags["source"]] = found.get(tags["source"], 0) + value
    return found


def config(path: Path, sources: dict[str, str], interval: float = 0.2) -> None:
    lines = [f"scrape-interval: {interval}", "source:"]
    lines += [f"  {name}: {url}" for name, url in sources.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def second_source():
    source = JobSource()
    yield source
    source.close()


def test_sighup_adds_removes_and_changes_sources(tmp_path, job_source, second_source):
    job_source.serve_jobs([job("a1")])
    second_source.serve_jobs([job("b1"), job("b2")])
    path = tmp_path / "exporter.yml"
    config(path, {"first": job_source.url})
    process = ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path}/s.db",
        "--config", str(path), "--push-lost-after", "1",
    )  # fmt: skip
    try:
        wait_until(lambda: up_sources(process) == {"first"}, timeout=20)

        config(path, {"second": second_source.url})
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(re.compile(r"reloaded sources: added second; removed first"))
        wait_until(lambda: up_sources(process) == {"second"}, timeout=20)
        stopped_at = time.monotonic()
        wait_until(lambda: second_source.requests >= 5, timeout=20)
        assert not [t for t in job_source.request_times if t > stopped_at]  # no longer scraped
        # The removed source's running job is swept as an unreported pushed job is (after
        # --push-lost-after), and the new source's jobs are not taken for pushed ones.
        process.wait_for_log(re.compile(r"pushed job\(s\) not reported in time; counted lost"))
        assert lost(process) == {"first": 1}

        # A file that does not read keeps every source; a changed option other than the
        # sources is named as needing a restart.
        path.write_text("source: [not, a, mapping\n")
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(re.compile(r"reload failed, the sources stay as they were"))
        config(path, {"second": second_source.url}, interval=0.3)
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(re.compile(r"scrape-interval changed; a reload takes only"))
        process.wait_for_log(re.compile(r"reloaded sources: none changed"))
        assert process.process.poll() is None
        assert up_sources(process) == {"second"}
        assert lost(process) == {"first": 1}
    finally:
        assert process.stop() == 0


def test_sighup_without_a_config_file_is_ignored_and_said(tmp_path, job_source):
    job_source.serve_jobs([])
    process = ExporterProcess(
        "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path}/s.db",
        "--source", f"app={job_source.url}",
    )  # fmt: skip
    try:
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(re.compile(r"received SIGHUP: ignored, there is no --config file"))
        assert process.metrics().samples  # still serving
    finally:
        assert process.stop() == 0
