"""How fast the dashboard opens with 10,000 jobs in the store, beside a same-run baseline.

Starts `job-exporter serve` on 127.0.0.1 with a fresh SQLite store, pushes JOBS jobs spread
over FUNCTIONS job functions (half still running) and creates API_JOBS job-API jobs, waits
for two history samples, then measures:

- baseline: the JSON requests each view makes, sent by plain HTTP (no page, no browser);
- page: opening each view in a fresh headless Chromium context (no cache) until its charts
  show data or its jobs table has rows;
- page, small store: the same against a second exporter holding only one job of each kind,
  so the difference to the line above is what the 10,000 jobs cost the page.

All run on the same machine, one after the other. `python -m bench --only dashboard` gives
the harness's ratio line (page load with 10,000 jobs over page load with the small store);
`python -m bench.dashboard` prints the table per view, medians and worst cases. Needs
Debian's `chromium` (scripts/setup installs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from bench.harness import Result
from bench.servers import serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TYPES = ("HTTP", "TASK", "CRON", "EXPORT", "WEBHOOK")

# What each view asks for when it opens, and what "ready" means in the page.
VIEWS = {
    "summary": (["/api/v1/stats/summary?points=300"], 3),
    "types": (["/api/v1/stats/types?points=300"], 3 * len(TYPES)),
    "name": (["/api/v1/stats/names?limit=200", "/api/v1/stats/name?points=300&{first}"], 3),
    "jobs": (["/api/v1/jobs?limit=20"], 0),
}
CHARTS_READY = """(count) => { const c = [...document.querySelectorAll('[data-chart]')];
    return c.length >= count && c.every(e => Number(e.dataset.points) > 0); }"""
TABLE_READY = "() => document.querySelectorAll('table.jobs tbody tr').length > 0"


def start_exporter(folder: Path) -> tuple[subprocess.Popen, str]:
    return serve(f"sqlite:///{folder / 'bench.db'}", "--max-series-per-source", "5000")


def fill(url: str, jobs: int, functions: int, api_jobs: int) -> float:
    """Push `jobs` jobs and create `api_jobs` API jobs; returns the seconds it took."""
    started = time.perf_counter()
    now_ms = time.time() * 1000
    session = requests.Session()
    batch: list[dict] = []
    for number in range(jobs):
        function = number % functions
        item = {
            "id": f"bench-{number}",
            "name": f"job_{function}",
            "backgroundJobType": TYPES[function % len(TYPES)],
            "startTimestamp": now_ms - 60_000 + number,
            "isFinished": number % 2 == 0,
        }
        if item["isFinished"]:
            item["finishTimestamp"] = item["startTimestamp"] + 1500
            item["status"] = "failed" if number % 20 == 0 else "completed"
        batch.append(item)
        if len(batch) == 1000 or number == jobs - 1:
            session.post(f"{url}/api/v1/push", json=batch, timeout=60).raise_for_status()
            batch = []
    for number in range(api_jobs):
        body = {"type": "REPORT", "name": f"report_{number % 50}", "payload": {"n": number}}
        session.post(f"{url}/api/v1/jobs", json=body, timeout=10).raise_for_status()
    return time.perf_counter() - started


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def baseline(url: str, paths: list[str], runs: int) -> tuple[list[float], int]:
    """The view's JSON requests in sequence, as the page sends them, over one connection."""
    session = requests.Session()
    sizes = [len(session.get(url + path, timeout=10).content) for path in paths]

    def fetch() -> None:
        for path in paths:
            session.get(url + path, timeout=10).raise_for_status()

    return timed(fetch, runs), sum(sizes)


def page_loads(url: str, view: str, charts: int, runs: int, chromium: str) -> list[float]:
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            for _ in range(runs + 1):  # the first warms the browser process; not counted
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{url}/#/{view}")
                if charts:
                    page.wait_for_function(CHARTS_READY, arg=charts, timeout=30_000)
                else:
                    page.wait_for_function(TABLE_READY, timeout=30_000)
                times.append((time.perf_counter() - started) * 1000)
                context.close()
        finally:
            browser.close()
    return times[1:]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def describe(times: list[float]) -> str:
    return f"{statistics.median(times):8.1f} {max(times):8.1f}"


@dataclass
class ViewFigures:
    view: str
    json_ms: list[float]
    page_ms: list[float]
    small_page_ms: list[float]
    json_bytes: int


def measure(jobs: int, functions: int, api_jobs: int, runs: int) -> tuple[list[ViewFigures], str]:
    """Every view's figures, and a line describing the store and the exporter's memory."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium:
        raise SystemExit("chromium is not installed; scripts/setup installs it")
    with tempfile.TemporaryDirectory(prefix="job-exporter-bench-") as folder:
        (Path(folder) / "big").mkdir()
        (Path(folder) / "small").mkdir()
        process, url = start_exporter(Path(folder) / "big")
        small_process, small_url = start_exporter(Path(folder) / "small")
        try:
            fill_s = fill(url, jobs, functions, api_jobs)
            fill(small_url, len(TYPES), len(TYPES), 1)
            time.sleep(11)  # two history samples (every 5 s), so the charts have rates
            about = (
                f"{jobs:,} pushed jobs over {functions:,} functions and {api_jobs:,} API jobs"
                f" (filled in {fill_s:.1f} s); exporter RSS {rss_mb(process.pid):.0f} MB"
                f" (small store: {rss_mb(small_process.pid):.0f} MB)"
            )
            figures = []
            for view, (paths, charts) in VIEWS.items():
                queries = []
                for target in (url, small_url):
                    names = requests.get(f"{target}/api/v1/stats/names?limit=1", timeout=10)
                    first = names.json()["names"][0]
                    query = f"source={first['source']}&type={first['type']}&name={first['name']}"
                    queries.append([path.format(first=query) for path in paths])
                json_times, size = baseline(url, queries[0], runs * 4)
                figures.append(
                    ViewFigures(
                        view,
                        json_times,
                        page_loads(url, view, charts, runs, chromium),
                        page_loads(small_url, view, charts, runs, chromium),
                        size,
                    )
                )
            return figures, about
        finally:
            for running in (process, small_process):
                running.terminate()
                running.wait(15)


def run(quick: bool) -> list[Result]:
    """For `python -m bench`: do 10,000 jobs slow the page down? (the views' median loads)"""
    figures, about = measure(10_000, 2_000, 1_000, runs=3 if quick else 7)
    print(f"  {about}")
    for f in figures:
        print(
            f"  {f.view}: page {statistics.median(f.page_ms):.0f} ms, small store "
            f"{statistics.median(f.small_page_ms):.0f} ms, its JSON by plain HTTP "
            f"{statistics.median(f.json_ms):.1f} ms"
        )
    big = statistics.median(t for f in figures for t in f.page_ms)
    small = statistics.median(t for f in figures for t in f.small_page_ms)
    json_ms = statistics.median(t for f in figures for t in f.json_ms)
    return [
        Result(
            "dashboard_10k_jobs",
            "a view opens in headless Chromium, 10,000 jobs stored",
            big,
            small,
            "the same with one job per type stored",
            "ms",
            1.5,
            at_most=True,
            note=f"the views' JSON alone by plain HTTP: {json_ms:.1f} ms (median)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="pushed jobs")
    parser.add_argument("--functions", type=int, default=2_000, help="distinct job functions")
    parser.add_argument("--api-jobs", type=int, default=1_000, help="job-API jobs")
    parser.add_argument("--runs", type=int, default=5, help="measured loads per view")
    args = parser.parse_args()
    figures, about = measure(args.jobs, args.functions, args.api_jobs, args.runs)
    print(f"store: {about}")
    print(
        f"\n{'view':8} {'JSON baseline ms':>17} {'page ms':>17} "
        f"{'page ms, small store':>21}  {'JSON bytes':>10}"
    )
    print(f"{'':8}" + f" {'median':>8} {'max':>8}" * 3)
    for f in figures:
        print(
            f"{f.view:8} {describe(f.json_ms)} {describe(f.page_ms)} "
            f"{describe(f.small_page_ms)}     {f.json_bytes:>10}"
        )
    print(
        "\npage: navigation start to charts with data (or job rows), fresh context;"
        "\nbaseline: the same JSON requests by plain HTTP; all in this run."
    )


if __name__ == "__main__":
    main()
