"""Resident memory of a serving exporter before and after it tracks 100,000 jobs of 2,000
pairs."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.data import encode, many_jobs
from bench.harness import Result
from bench.servers import StaticSource, free_port, stop, wait_for

JOBS = 100_000


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(quick: bool) -> list[Result]:
    source = StaticSource(b"[]")
    folder = tempfile.TemporaryDirectory()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--listen", f"127.0.0.1:{port}",
         "--store", f"sqlite:///{Path(folder.name, 'bench.db')}", "--source", f"app={source.url}",
         "--scrape-interval", "0.5", "--max-series-per-source", "2010", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(url, lambda r: 'job_exporter_source_up{source="app"} 1' in r.text)
        requests.get(url, timeout=30)
        before = resident_mb(process.pid)
        source.body = encode(many_jobs(JOBS))
        wait_for(url, lambda r: f'job_exporter_tracked_jobs{{source="app"}} {JOBS}' in r.text,
                 timeout=120)  # fmt: skip
        for _ in range(3):  # a few steady scrapes and renders, as in service
            requests.get(url, timeout=30)
        after = resident_mb(process.pid)
    finally:
        stop(process)
        source.close()
        folder.cleanup()
    return [
        Result("memory_100k_jobs", f"resident memory added by {JOBS:,} jobs, 2,000 pairs",
               after - before, 1.0, f"the process before loading them: {before:.0f} MB", "MB",
               60, at_most=True, absolute=True),
    ]  # fmt: skip
