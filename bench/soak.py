"""`python -m bench.soak [--minutes N | --quick] [--store URL]`: mixed load, start vs end.

A real `serve` process takes, for N minutes (10 by default; `--quick` is 30 s for CI):
scrapes of a source whose job list changes every second (jobs start, finish, vanish), pushes
of start and finish events, job-API create, lease and complete, and `/metrics` reads. It
samples the process's resident memory and every request's latency, and prints the first and
the last window of the run beside each other, so a leak or a slowdown that grows with time
(memory held per job, a store query that scans more as rows pile up) shows as drift.

It is not part of `python -m bench`: those figures are ratios against a baseline in a
minute or two; this one is a duration. It exits 1 when any request fails (a 5xx, a refused
connection) or the process dies, so CI catches breakage while the drift stays informative.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.memory import resident_mb
from bench.servers import StaticSource, free_port, stop, wait_for

KINDS = ("metrics", "push", "create", "lease", "complete")


@dataclass
class Samples:
    """Latencies by kind and memory, each stamped with seconds since the load began."""

    started: float = field(default_factory=time.monotonic)
    latency: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    memory: list[tuple[float, float]] = field(default_factory=list)
    tracked: list[tuple[float, float]] = field(default_factory=list)  # job_exporter_tracked_jobs
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(
        self, kind: str, began: float, response: requests.Response | None, ok: tuple[int, ...]
    ) -> None:
        took = time.monotonic() - began
        with self.lock:
            self.latency[kind].append((began - self.started, took))
            if response is None or response.status_code not in ok:
                what = "no answer" if response is None else f"{response.status_code}"
                self.failures.append(f"{kind}: {what}")


class ChangingSource(StaticSource):
    """An app whose job list moves every second: new jobs start, running ones finish, and
    finished ones drop off the list after a while, over 40 names."""

    def __init__(self, seed: int) -> None:
        super().__init__(b"[]")
        self.rng = random.Random(seed)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count()
        self.step()

    def step(self) -> None:
        now_ms = time.time() * 1000
        for job in list(self.jobs.values()):
            if not job["isFinished"] and self.rng.random() < 0.3:
                job.update(
                    isFinished=True,
                    finishTimestamp=now_ms,
                    status="failed" if self.rng.random() < 0.1 else "completed",
                )
            elif job["isFinished"] and now_ms - job["finishTimestamp"] > 5000:
                del self.jobs[job["id"]]
        for _ in range(self.rng.randint(5, 30)):
            job_id = f"scraped-{next(self.ids)}"
            self.jobs[job_id] = {
                "id": job_id,
                "name": f"task-{self.rng.randrange(40)}",
                "backgroundJobType": self.rng.choice(["HTTP", "TASK", "CRON"]),
                "startTimestamp": now_ms,
                "isFinished": False,
            }
        self.body = json.dumps(list(self.jobs.values())).encode()


def load(url: str, stop_at: float, samples: Samples, seed: int) -> list[threading.Thread]:
    """One thread per kind of client; each runs until `stop_at` (monotonic seconds)."""

    def call(
        session: requests.Session,
        kind: str,
        method: str,
        path: str,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response | None:
        began = time.monotonic()
        try:
            response = session.request(method, url + path, json=body, timeout=30)
        except requests.RequestException:
            response = None
        samples.record(kind, began, response, ok)
        return response

    def metrics_reader() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            response = call(session, "metrics", "GET", "/metrics")
            if response is not None and response.ok:
                tracked = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in response.text.splitlines()
                    if line.startswith("job_exporter_tracked_jobs{")
                )
                with samples.lock:
                    samples.tracked.append((samples.now(), tracked))
            time.sleep(0.2)  # a handful of Prometheus servers scraping every second or so

    def pusher() -> None:
        session, rng = requests.Session(), random.Random(seed)
        for n in itertools.count():
            if time.monotonic() >= stop_at:
                return
            now_ms = time.time() * 1000
            batch = [
                {
                    "id": f"push-{n}-{k}",
                    "name": f"pushed-{rng.randrange(20)}",
                    "backgroundJobType": "TASK",
                    "startTimestamp": now_ms,
                    "isFinished": False,
                }
                for k in range(10)
            ]
            call(session, "push", "POST", "/api/v1/push?source=soak", batch, ok=(202,))
            for item in batch:
                item.update(isFinished=True, finishTimestamp=now_ms + rng.randint(1, 900))
            call(session, "push", "POST", "/api/v1/push?source=soak", batch, ok=(202,))
            time.sleep(0.05)

    def producer() -> None:
        session, rng = requests.Session(), random.Random(seed + 1)
        while time.monotonic() < stop_at:
            body = {"type": "SOAK", "name": f"step-{rng.randrange(10)}", "payload": {"n": 1}}
            call(session, "create", "POST", "/api/v1/jobs", body, ok=(201,))
            time.sleep(0.02)

    def worker(n: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            leased = call(
                session,
                "lease",
                "POST",
                "/api/v1/jobs/lease",
                {"worker": f"soak-{n}", "types": ["SOAK"]},
                ok=(200, 204),
            )
            if leased is None or leased.status_code != 200:
                time.sleep(0.05)
                continue
            job_id = leased.json()["id"]
            call(
                session,
                "complete",
                "POST",
                f"/api/v1/jobs/{job_id}/complete",
                {"worker": f"soak-{n}"},
            )

    targets = [metrics_reader, pusher, producer, lambda: worker(0), lambda: worker(1)]
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def window(points: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for at, value in points if start <= at < end]


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def report(samples: Samples, seconds: float, span: float) -> None:
    """The first and last `span` seconds of the run, side by side."""
    late = seconds - span
    print(f"{'':28}{'first ' + f'{span:.0f} s':>14}{'last ' + f'{span:.0f} s':>14}{'drift':>9}")

    def row(label: str, first: float, last: float, unit: str) -> None:
        drift = (last / first - 1) * 100 if first else float("nan")
        print(f"{label:28}{first:>11.2f} {unit:<2}{last:>11.2f} {unit:<2}{drift:>+8.0f}%")

    memory_first = window(samples.memory, 0, span)
    memory_last = window(samples.memory, late, seconds + 1)
    row("resident memory", max(memory_first), max(memory_last), "MB")
    tracked_first = window(samples.tracked, 0, span)
    tracked_last = window(samples.tracked, late, seconds + 1)
    row("jobs tracked (k)", max(tracked_first) / 1000, max(tracked_last) / 1000, "")
    for kind in KINDS:
        first = [v * 1000 for v in window(samples.latency[kind], 0, span)]
        last = [v * 1000 for v in window(samples.latency[kind], late, seconds + 1)]
        row(
            f"{kind} p50 ({len(first)}/{len(last)})",
            quantile(first, 0.5),
            quantile(last, 0.5),
            "ms",
        )
        row(f"{kind} p99", quantile(first, 0.99), quantile(last, 0.99), "ms")
    tenth = seconds / 10
    timeline = [
        max(window(samples.memory, k * tenth, (k + 1) * tenth) or [float("nan")]) for k in range(10)
    ]
    print("resident memory by tenth of the run (MB): " + " ".join(f"{m:.0f}" for m in timeline))
    total = sum(len(points) for points in samples.latency.values())
    print(
        f"requests: {total:,} in {seconds:.0f} s ({total / seconds:.0f}/s), "
        f"failed: {len(samples.failures)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--quick", action="store_true", help="30 seconds (CI)")
    parser.add_argument("--seconds", type=float, help="length in seconds (overrides the rest)")
    parser.add_argument("--store", help="store URL (default: a SQLite file in a temp folder)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seconds = args.seconds or (30.0 if args.quick else args.minutes * 60)
    span = max(5.0, min(60.0, seconds / 10))  # the windows compared

    folder = tempfile.TemporaryDirectory()
    store = args.store or f"sqlite:///{Path(folder.name, 'soak.db')}"
    source = ChangingSource(args.seed)
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
            store,
            "--source",
            f"app={source.url}",
            "--scrape-interval",
            "1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    samples = Samples()
    try:
        wait_for(f"{url}/metrics", lambda r: 'job_exporter_source_up{source="app"} 1' in r.text)
        print(f"soak: {seconds:.0f} s of mixed load on {store.split(':')[0]}", flush=True)
        samples = Samples()
        stop_at = time.monotonic() + seconds
        threads = load(url, stop_at, samples, args.seed)
        next_step = time.monotonic()
        while (now := time.monotonic()) < stop_at:
            if process.poll() is not None:
                samples.failures.append(f"the exporter exited with {process.returncode}")
                break
            if now >= next_step:
                source.step()
                samples.memory.append((samples.now(), resident_mb(process.pid)))
                next_step += 1.0
            time.sleep(min(0.1, max(0.0, next_step - time.monotonic())))
        for thread in threads:
            thread.join(60)
        samples.memory.append((samples.now(), resident_mb(process.pid)))
    finally:
        stop(process)
        source.close()
        folder.cleanup()
    report(samples, seconds, span)
    if samples.failures:
        print("failures (first 10): " + "; ".join(samples.failures[:10]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
