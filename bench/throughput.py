"""/metrics requests per second under wrk: the exporter, a Flask + prometheus_client app,
and a real Pushgateway, all holding the same 2,000 pairs' series."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.data import encode, pair_jobs
from bench.harness import Result
from bench.servers import StaticSource, free_port, stop, wait_for, wrk

PAIRS = 2000


SLOW_BASELINE_S = 10


def run(quick: bool) -> list[Result]:
    seconds = 3 if quick else 10
    source = StaticSource(encode(pair_jobs(PAIRS)))
    folder = tempfile.TemporaryDirectory()
    processes: list[subprocess.Popen] = []
    try:
        port = free_port()
        processes.append(
            _start(
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
                "3600",
                "--max-series-per-source",
                str(PAIRS + 10),
                "--log-level",
                "warning",
            )
        )
        exporter_url = f"http://127.0.0.1:{port}/metrics"
        wait_for(exporter_url, lambda r: r.text.count("background_jobs_started_total{") == PAIRS)
        exposition = requests.get(exporter_url, timeout=30).text
        ours = wrk(exporter_url, seconds)

        series_file = Path(folder.name, "series.prom")
        series_file.write_text(exposition)
        flask_port = free_port()
        processes.append(
            _start(sys.executable, "-m", "bench.baseline", str(flask_port), str(series_file))
        )
        flask_url = f"http://127.0.0.1:{flask_port}/metrics"
        wait_for(flask_url)
        # One page takes this app about a second and 4 connections queue behind each other:
        # give it long enough to finish several, or quick mode counts none (a ratio of inf).
        flask = wrk(flask_url, max(seconds, SLOW_BASELINE_S))

        gateway_port = free_port()
        processes.append(
            _start("prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{gateway_port}")
        )
        gateway = f"http://127.0.0.1:{gateway_port}"
        wait_for(f"{gateway}/-/ready")
        pushed = requests.put(f"{gateway}/metrics/job/bench", data=exposition.encode(), timeout=60)
        pushed.raise_for_status()
        wait_for(f"{gateway}/metrics", lambda r: "background_jobs_started_total{" in r.text)
        pushgateway = wrk(f"{gateway}/metrics", seconds)
    finally:
        for process in processes:
            stop(process)
        source.close()
        folder.cleanup()
    what = f"/metrics requests/s under wrk, {PAIRS} pairs"
    return [
        Result(
            "throughput_vs_flask",
            what,
            ours,
            flask,
            "Flask + prometheus_client on waitress",
            "req/s",
            20,
            at_most=False,
        ),
        Result(
            "throughput_vs_pushgateway",
            what,
            ours,
            pushgateway,
            "Prometheus Pushgateway (Go)",
            "req/s",
            1,
            at_most=False,
        ),
    ]


def _start(*command: str) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
