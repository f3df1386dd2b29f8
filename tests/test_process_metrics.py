"""`process_*` and `python_*` (prometheus_client's own collectors): their values from a
fixture /proc, partial output when it fails, and fresh on every /metrics answer beside the
cached job families, in text, OpenMetrics and gzip."""

from __future__ import annotations

import gc
import logging
import resource
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.metrics.process import ProcessMetrics
from tests.helpers.data import job
from tests.helpers.processes import promtool_check_metrics
from tests.helpers.served import Exporter

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROCESS_FAMILIES = {
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds",  # `_total` on its sample
    "process_open_fds",
    "process_max_fds",
    "python_info",
    "python_gc_objects_collected",
    "python_gc_objects_uncollectable",
    "python_gc_collections",
}
TICKS = 100  # clock ticks a second, as the fixture's stat counts them


def fake_proc(root: Path) -> Path:
    """A /proc holding what the process collector reads: boot time, the process's stat
    (start 500 ticks after boot, 250 + 50 ticks of CPU, 8 MiB virtual, 100 pages
    resident), its open files limit and three open descriptors."""
    (root / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    me = root / "self"
    (me / "fd").mkdir(parents=True)
    for fd in ("0", "1", "2"):
        (me / "fd" / fd).write_text("")
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 6, "500", str(8 << 20), "100"]
    (me / "stat").write_text(f"42 (job-exporter) {' '.join(fields)}\n")
    (me / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            4096                 8192                 files\n"
    )
    return root


def fake_platform() -> SimpleNamespace:
    return SimpleNamespace(
        python_version_tuple=lambda: ("3", "12", "1"),
        python_version=lambda: "3.12.1",
        python_implementation=lambda: "CPython",
        system=lambda: "Linux",
    )


def test_values_come_from_the_process_and_the_platform(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("os.sysconf", lambda name: TICKS)
    metrics = ProcessMetrics(proc=str(fake_proc(tmp_path)), platform=fake_platform())
    value = metrics.registry.get_sample_value
    assert value("process_cpu_seconds_total") == 3.0
    assert value("process_start_time_seconds") == 1_700_000_005.0
    assert value("process_virtual_memory_bytes") == 8 << 20
    assert value("process_resident_memory_bytes") == 100 * resource.getpagesize()
    assert value("process_open_fds") == 3
    assert value("process_max_fds") == 4096
    info = {
        "implementation": "CPython",
        "major": "3",
        "minor": "12",
        "patchlevel": "1",
        "version": "3.12.1",
    }
    assert value("python_info", info) == 1
    assert value("python_gc_collections_total", {"generation": "2"}) is not None
    names = {family.name for family in parse_text(metrics.render().decode())}
    assert names == PROCESS_FAMILIES


def test_a_missing_proc_leaves_the_other_families(tmp_path: Path):
    metrics = ProcessMetrics(proc=str(tmp_path / "nothing"))
    names = {family.name for family in parse_text(metrics.render().decode())}
    assert not any(name.startswith("process_") for name in names)
    assert {"python_info", "python_gc_collections"} <= names


def test_a_failing_collector_renders_nothing_and_says_so_once(tmp_path: Path, caplog):
    metrics = ProcessMetrics(proc=str(fake_proc(tmp_path)))

    class Broken:
        def collect(self):
            raise RuntimeError("broken")

    metrics.registry.register(Broken())
    with caplog.at_level(logging.ERROR, logger="exporter.metrics.process"):
        assert metrics.render() == b""
        assert metrics.render(openmetrics=True) == b""
    assert len(caplog.records) == 1


def gunzip_one_member(body: bytes) -> str:
    """The body as one gzip member, wholly consumed (a client that reads one member, as
    curl does, must see everything)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = decoder.decompress(body) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b""
    return text.decode()


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_every_answer_has_fresh_process_metrics_after_the_cached_ones(
    exporter: Exporter, job_source, openmetrics: bool, gzipped: bool
):
    job_source.serve_jobs([job("a")])
    exporter.scrape()
    headers = {
        "Accept": OPENMETRICS if openmetrics else "*/*",
        "Accept-Encoding": "gzip" if gzipped else "identity",
    }

    def page() -> str:
        response = requests.get(f"{exporter.url}/metrics", headers=headers, timeout=5, stream=True)
        body = response.raw.read()
        assert int(response.headers["Content-Length"]) == len(body)
        return gunzip_one_member(body) if gzipped else body.decode()

    def collections(text: str) -> float:
        parse = parse_om if openmetrics else parse_text
        (family,) = [f for f in parse(text) if f.name == "python_gc_collections"]
        return sum(s.value for s in family.samples if s.labels["generation"] == "2")

    first = page()
    gc.collect()  # a full collection: generation 2's count moves, the store's state does not
    second = page()
    assert collections(second) == collections(first) + 1
    families = {f.name for f in (parse_om if openmetrics else parse_text)(second)}
    assert families >= PROCESS_FAMILIES
    assert "background_jobs_started" in families or "background_jobs_started_total" in families
    if openmetrics:
        assert second.endswith("# EOF\n") and second.count("# EOF") == 1
    else:
        checked = promtool_check_metrics(second)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_cached_part_is_reused_while_the_process_part_is_fresh(exporter: Exporter):
    page = exporter.runtime.metrics_page
    (cached, fresh), _ = page.render(None, True)
    gc.collect()
    (cached_again, fresh_again), _ = page.render(None, True)
    assert cached_again is cached
    assert fresh_again != fresh
