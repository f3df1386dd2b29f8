"""How fast `GET /api/v1/tracked` pages through 100,000 tracked jobs, beside a same-run
baseline without schema step 8's `jobs_started`; and what that index costs a push.

Starts two `job-exporter serve` processes on 127.0.0.1 with fresh SQLite stores; in the
second ("bare") `jobs_started` is dropped right after it starts. Its sibling `jobs_status`
stays: since issue 23 the kept counts and the retention prune read along it (SQLite is told
`INDEXED BY jobs_status`), so a store without it refuses every write, loudly. Both are
filled through the real push route, batch for batch in turn (so both see this shared
machine in the same state, and the batches' times compare the index's write cost): JOBS
jobs over SOURCES sources, about 10% running, 18% failed (with an error), 2% pending, the
rest completed, then the finishes of 4% (two in five of the running ones), plus 200
running jobs of a source whose lost-after time is 5 s, left to be counted lost. Then each
list route is asked N times over one keep-alive connection on each server, in turn: its
first page, then the pages its `next` cursors lead to (page 20 starts again at the top).
Figures are p50 / p99 of the N answers, JSON read whole, goal < 50 ms. A `q` search (part
of an id) has no index to use: it scans, and its figure is reported as it is.

`python -m bench --only tracked` gives the harness's lines; `python -m bench.tracked`
prints the table.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import requests

from bench.harness import Result
from bench.servers import serve
from exporter.store.tables import TRACKED_INDEXES

DROPPED = tuple(name for name in TRACKED_INDEXES if name != "jobs_status")

SOURCES = ("billing", "mailer", "etl", "search", "media")
LOST_SOURCE = "lossy"
TYPES = ("TASK", "HTTP", "CRON")
BATCH = 1000
GOAL_MS = 50.0
PAGES = 20  # cursor pages followed before starting at the top again
ROUTES = {
    "newest (default)": {},
    "running, oldest first": {"status": "running", "order": "oldest"},
    "failed": {"status": "failed"},
}
ERROR = "Traceback (most recent call last):\n  File 'tasks.py', line 9\nValueError: bad input"


def start_exporter(store: Path) -> tuple[subprocess.Popen, str]:
    return serve(f"sqlite:///{store}", "--push-lost-after-for", f"{LOST_SOURCE}=5")


def drop_indexes(store: Path) -> None:
    with sqlite3.connect(store, timeout=10) as db:
        for name in DROPPED:
            db.execute(f"DROP INDEX {name}")


def batches(jobs: int, now_ms: float) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(source, encoded batch) in push order, encoded before any clock starts: the new
    jobs, then finishes of two in five of their running ones (a finish rewrites a row's
    `outcome`, so it moves the row in jobs_status)."""
    out = []
    finishes = []
    for first in range(0, jobs, BATCH):
        source = SOURCES[(first // BATCH) % len(SOURCES)]
        items = []
        for n in range(first, min(first + BATCH, jobs)):
            kind = n % 50
            start = now_ms - 3_600_000 + n * 30  # an hour of starts, oldest first
            item = {
                "id": f"{source}-{n:07}",
                "name": f"job_{n % 200}",
                "backgroundJobType": TYPES[n % len(TYPES)],
                "startTimestamp": start,
                "isFinished": kind >= 6,
            }
            if kind < 5:
                pass  # running
            elif kind == 5:
                item["status"] = "pending"
            elif kind < 15:
                item.update(status="failed", finishTimestamp=start + 800, error=ERROR)
            else:
                item.update(status="completed", finishTimestamp=start + 1500)
            items.append(item)
        out.append((source, msgspec.json.encode(items)))
        done = [
            dict(item, isFinished=True, status="completed", finishTimestamp=now_ms)
            for item in items
            if int(item["id"].rsplit("-", 1)[1]) % 50 < 2
        ]
        finishes.append((source, msgspec.json.encode(done)))
    return out, finishes


def push(session: requests.Session, url: str, source: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = session.post(
        f"{url}/api/v1/push",
        params={"source": source},
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    if answer.status_code != 202:
        raise RuntimeError(f"push refused: {answer.status_code} {answer.text[:200]}")
    return elapsed


def fill(urls: list[str], jobs: int, lost: int) -> tuple[list[float], list[float]]:
    """Push the same jobs to every server, batch for batch in turn; seconds per server
    for the new jobs, and for the finishes."""
    now_ms = time.time() * 1000
    bodies, finishes = batches(jobs, now_ms)
    sessions = [requests.Session() for _ in urls]
    spent = [0.0] * len(urls)
    for source, body in bodies:
        for n, url in enumerate(urls):
            spent[n] += push(sessions[n], url, source, body)
    finishing = [0.0] * len(urls)
    for source, body in finishes:
        for n, url in enumerate(urls):
            finishing[n] += push(sessions[n], url, source, body)
    lossy = [
        {
            "id": f"l-{n}",
            "name": "sync",
            "backgroundJobType": "TASK",
            "isFinished": False,
            "startTimestamp": now_ms - 60_000 + n,
        }
        for n in range(lost)
    ]
    for n, url in enumerate(urls):
        push(sessions[n], url, LOST_SOURCE, msgspec.json.encode(lossy))
    deadline = time.monotonic() + 60
    for url in urls:
        while True:
            page = sessions[0].get(f"{url}/api/v1/tracked", params={"status": "lost"}, timeout=30)
            if page.json()["jobs"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the lost-after sweep never counted the lossy jobs lost")
            time.sleep(1)  # the sweep runs every 5 s; nothing to wait on but the clock
    return spent, finishing


def time_route(session: requests.Session, url: str, params: dict, runs: int) -> list[float]:
    """`runs` answers of a route: its first page and the pages its cursors lead to."""
    times = []
    cursor = None
    page_number = 0
    for _ in range(runs):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        started = time.perf_counter()
        answer = session.get(f"{url}/api/v1/tracked", params=query, timeout=30)
        body = answer.json()
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or not body["jobs"]:
            raise RuntimeError(f"{params}: {answer.status_code} {str(body)[:200]}")
        page_number += 1
        cursor = body["next"] if page_number < PAGES else None
        if cursor is None:
            page_number = 0
    return times


def p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Figures:
    route: str
    indexed: list[float]
    bare: list[float]


def measure(jobs: int, runs: int) -> tuple[list[Figures], tuple[list[float], list[float]], str]:
    with tempfile.TemporaryDirectory(prefix="job-exporter-bench-tracked-") as folder:
        stores = [Path(folder, "indexed.db"), Path(folder, "bare.db")]
        started = [start_exporter(store) for store in stores]
        try:
            drop_indexes(stores[1])
            urls = [url for _, url in started]
            push_s, finish_s = fill(urls, jobs, lost=200)
            session = requests.Session()
            figures = []
            routes = dict(ROUTES)
            routes["q search (part of an id)"] = {"q": "r-00012"}
            for route, params in routes.items():
                # in turn, a tenth at a time, so both see the machine in the same state
                indexed: list[float] = []
                bare: list[float] = []
                for _ in range(10):
                    indexed += time_route(session, urls[0], params, max(1, runs // 10))
                    bare += time_route(session, urls[1], params, max(1, runs // 10))
                figures.append(Figures(route, indexed, bare))
            about = (
                f"{jobs + 200:,} tracked jobs over {len(SOURCES) + 1} sources"
                f" (SQLite), {runs} requests per route and store"
            )
            return figures, (push_s, finish_s), about
        finally:
            for process, _ in started:
                process.terminate()
                process.wait(15)


def run(quick: bool) -> list[Result]:
    """For `python -m bench`: the tracked list's pages under 50 ms with 100,000 jobs."""
    jobs, runs = (20_000, 100) if quick else (100_000, 400)
    figures, (push_s, finish_s), about = measure(jobs, runs)
    print(f"  {about}")
    results = []
    for f in figures:
        line = (
            f"{f.route}: p50 {p(f.indexed, 0.5):.1f} ms, p99 {p(f.indexed, 0.99):.1f} ms;"
            f" without step 8's jobs_started p50 {p(f.bare, 0.5):.1f} ms,"
            f" p99 {p(f.bare, 0.99):.1f} ms"
        )
        print(f"  {line}")
        if f.route.startswith("q search"):
            continue  # a scan either way: reported, not a goal
        name = "tracked_" + re.sub(r"[^a-z]+", "_", f.route.lower()).strip("_")
        results.append(
            Result(
                name,
                f"GET /api/v1/tracked, {f.route}, {jobs // 1000}k jobs, p99",
                p(f.indexed, 0.99),
                p(f.bare, 0.99),
                f"the same without schema step 8's jobs_started, p99 {p(f.bare, 0.99):.1f} ms",
                "ms",
                GOAL_MS,
                at_most=True,
                absolute=True,
                note=f"p50 {p(f.indexed, 0.5):.1f} ms (without: {p(f.bare, 0.5):.1f} ms)",
            )
        )
    q = figures[-1]
    results.append(
        Result(
            "tracked_push_with_indexes",
            f"pushing {jobs:,} jobs in batches of {BATCH}, with step 8's jobs_started",
            push_s[0],
            push_s[1],
            "the same batches into a store without it, in turn",
            "s",
            1.25,
            at_most=True,
            note=(
                f"the q search scans: p50 {p(q.indexed, 0.5):.1f} ms,"
                f" p99 {p(q.indexed, 0.99):.1f} ms"
            ),
        )
    )
    results.append(
        Result(
            "tracked_finish_with_indexes",
            f"pushing the finishes of {jobs // 25:,} running jobs, with step 8's jobs_started",
            finish_s[0],
            finish_s[1],
            "the same finishes into a store without it, in turn",
            "s",
            1.25,
            at_most=True,
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=400, help="requests per route and store")
    args = parser.parse_args()
    figures, (push_s, finish_s), about = measure(args.jobs, args.runs)
    print(f"store: {about}")
    print(f"push: {push_s[0]:.2f} s with step 8's jobs_started, {push_s[1]:.2f} s without")
    print(f"finishes: {finish_s[0]:.2f} s with step 8's jobs_started, {finish_s[1]:.2f} s without")
    print(f"\n{'route':28} {'p50 ms':>8} {'p99 ms':>8} {'bare p50':>9} {'bare p99':>9}")
    for f in figures:
        print(
            f"{f.route:28} {p(f.indexed, 0.5):8.1f} {p(f.indexed, 0.99):8.1f}"
            f" {p(f.bare, 0.5):9.1f} {p(f.bare, 0.99):9.1f}"
        )


if __name__ == "__main__":
    main()
