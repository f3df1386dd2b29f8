"""Resident memory of a serving exporter before and after it tracks 100,000 jobs of 2,000
pairs: the peak over several scrapes, while 1% of the jobs finish between them, since a scrape
briefly holds the body and its decoded items and a single reading could fall either side."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.data import encode, finish_some, many_jobs
from bench.harness import Result
from bench.servers import StaticSource, free_port, stop, wait_for

JOBS = 100_000
SAMPLE_EVERY_S = 0.05


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
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{Path(folder.name, 'bench.db')}",
            "--source",
            f"app={source.url}",
            "--scrape-interval",
            "0.5",
            "--max-series-per-source",
            "2010",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(url, lambda r: 'job_exporter_source_up{source="app"} 1' in r.text)
        requests.get(url, timeout=30)
        before = resident_mb(process.pid)
        jobs = many_jobs(JOBS)
        source.body = encode(jobs)
        wait_for(
            url,
            lambda r: f'job_exporter_tracked_jobs{{source="app"}} {JOBS}' in r.text,
            timeout=120,
        )
        samples = []
        for _ in range(2 if quick else 6):  # steady scrapes (every 0.5 s) and renders
            finish_some(jobs, 0.01)
            source.body = encode(jobs)
            requests.get(url, timeout=30)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                samples.append(resident_mb(process.pid))
                time.sleep(SAMPLE_EVERY_S)
        after = max(samples)
        typical = statistics.median(samples)
    finally:
        stop(process)
        source.close()
        folder.cleanup()
    return [
        Result(
            "memory_100k_jobs",
            f"resident memory added by {JOBS:,} jobs, 2,000 pairs",
            after - before,
            1.0,
            f"the process before loading them: {before:.0f} MB",
            "MB",
            60,
            at_most=True,
            absolute=True,
            note=f"peak of {len(samples)} readings; their median was {typical - before:.0f} MB",
        ),
    ]
