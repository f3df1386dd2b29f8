"""Issue 23, "cost grows with the series, not with the jobs kept": each request's and
scrape's cost at 10,000 retained finished jobs beside the same at 1,000,000 and 10,000,000
(SQLite) and 1,000,000 (PostgreSQL), measured in one run; and a prune of 1,000,000 expired
jobs while `/metrics` is read every 100 ms.

Each store is made by the exporter's own migrations, then filled straight with SQL (a push
per job would take hours at 10M): finished jobs within the retention period, a third each
of a pushed source, a scraped source and completed job-API jobs, random uuid4 ids, always
the same 3 x 40 series, and `tracked_counts` raised by what was added. The series' counts
come from real pushes and job-API calls once the exporter runs. The exporters of one store
run side by side, scraping their own 10,000-job listing (1% of it changes before each
scrape) every half second, and are measured in turn, round after round, so all sizes see
this shared machine in the same state. Each figure is a median over the rounds; a ratio is
the largest size's figure over the smallest's.

`--quick` (CI): SQLite 10k and 200k, PostgreSQL 10k and 100k, a prune of 100,000.
`python -m bench --only scale` gives the harness's lines; `python -m bench.scale` too,
with `--sqlite`, `--postgres` and `--prune` to choose sizes.
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import requests

from bench.harness import Result
from bench.memory import resident_mb
from bench.servers import StaticSource, serve, stop
from exporter.store import open_store

DAY_MS = 86_400_000.0
TYPES = ("TASK", "HTTP", "CRON")
NAMES = tuple(f"job_{n}" for n in range(40))
SERIES = [(t, n) for t in TYPES for n in NAMES]  # the same 120 series at every size
PUSHED, SCRAPED, API = "pushed", "app", "api"
LISTED = 10_000  # the scraped source's listing
LISTED_RUNNING = 2_000
CHANGE = LISTED // 100  # items that change between two scrapes
SCRAPE_INTERVAL_S = 0.5
BATCH = 500
RATIO_GOAL = 1.3
MEMORY_GOAL_MB = 60.0
PRUNE_GOAL_MS = 100.0
RECENT = 3_000  # recent finished jobs beside the prune's expired ones
READ_EVERY_S = 0.1


# ---------------------------------------------------------------- rows


def _rows(rng: random.Random, count: int, now_ms: float, old: bool = False) -> Iterator[tuple]:
    """(id, type, name, start_ms, finish_ms, finished_at_ms, outcome) of finished jobs,
    finished over the last 6 days (or 8 to 9 days ago, past the 7-day retention, if old)."""
    for n in range(count):
        job_type, name = SERIES[n % len(SERIES)]
        ago = (8 + rng.random()) * DAY_MS if old else rng.random() * 6 * DAY_MS
        finished = now_ms - ago
        took = 100 + rng.random() * 60_000
        outcome = "failed" if n % 10 == 0 else "completed"
        yield str(uuid.uuid4()), job_type, name, finished - took, finished, finished, outcome


def _chunks(rows: Iterator[tuple], size: int = 50_000) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _split(retained: int) -> dict[str, int]:
    third = retained // 3
    return {PUSHED: retained - 2 * third, SCRAPED: third, API: third}


# ---------------------------------------------------------------- filling the stores


def fill_sqlite(path: Path, per_source: dict[str, int], *, old: int = 0) -> None:
    """The exporter's schema (its migrations), then the rows straight in: the secondary
    indexes are dropped while filling and made again from their own SQL."""
    open_store(f"sqlite:///{path}").close()
    rng = random.Random(len(path.name) + sum(per_source.values()))
    now_ms = time.time() * 1000
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -2000000")  # 2 GB, for 10M random-key inserts
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('jobs', 'queue_jobs')"
        ).fetchall()
        db.execute("BEGIN")
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        # Settled (schema step 11), as a running store's rows are but its newest.
        jobs = (
            "INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms,"
            " finish_ms, finished_at_ms, outcome, missing, settled)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1)"
        )
        plan = [(source, count, False) for source, count in per_source.items() if source != API]
        if old:
            plan.append((PUSHED, old, True))
        for source, count, expired in plan:
            for chunk in _chunks(_rows(rng, count, now_ms, expired)):
                db.executemany(
                    jobs,
                    [(source, i, t, n, t, n, s, f, a, o) for i, t, n, s, f, a, o in chunk],
                )
        queue = (
            "INSERT INTO queue_jobs (id, type, name, label_type, label_name, status,"
            " attempts, max_attempts, worker, created_ms, started_ms, finished_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, 3, 'w', ?, ?, ?)"
        )
        for chunk in _chunks(_rows(rng, per_source.get(API, 0), now_ms)):
            db.executemany(
                queue, [(i, t, n, t, n, o, s - 50, s, f) for i, t, n, s, f, _, o in chunk]
            )
        for _, sql in indexes:
            db.execute(sql)
        added = dict(per_source)
        added[PUSHED] = added.get(PUSHED, 0) + old
        db.executemany(
            "INSERT INTO tracked_counts VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET jobs = tracked_counts.jobs + excluded.jobs",
            [item for item in added.items() if item[1]],
        )
        db.execute("COMMIT")
        _check_sqlite(db, added)
    finally:
        db.close()


def _check_sqlite(db: sqlite3.Connection, added: dict[str, int]) -> None:
    kept = dict(db.execute("SELECT source, jobs FROM tracked_counts").fetchall())
    real = dict(db.execute("SELECT source, COUNT(*) FROM jobs GROUP BY source").fetchall())
    (real[API],) = db.execute("SELECT COUNT(*) FROM queue_jobs").fetchone()
    for source, count in added.items():
        if not (kept.get(source, 0) == real.get(source, 0) == count):
            raise RuntimeError(f"{source}: kept {kept.get(source)}, rows {real.get(source)}")


_PG_JOBS = """
INSERT INTO jobs (source, id, type, name, label_type, label_name, start_ms, finish_ms,
                  finished_at_ms, outcome, missing)
SELECT %(source)s, gen_random_uuid()::text, t, n, t, n, f - d, f, f,
       CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END, 0
FROM (SELECT g, (ARRAY['TASK', 'HTTP', 'CRON'])[1 + g %% 3] AS t, 'job_' || (g / 3) %% 40 AS n,
             %(now)s - %(base)s - random() * %(spread)s AS f, 100 + random() * 60000 AS d
      FROM generate_series(1, %(count)s) AS g) AS made
"""
_PG_QUEUE = """
INSERT INTO queue_jobs (id, type, name, label_type, label_name, status, attempts,
                        max_attempts, worker, created_ms, started_ms, finished_ms)
SELECT gen_random_uuid()::text, t, n, t, n,
       CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END, 1, 3, 'w', f - d - 50, f - d, f
FROM (SELECT g, (ARRAY['TASK', 'HTTP', 'CRON'])[1 + g %% 3] AS t, 'job_' || (g / 3) %% 40 AS n,
             %(now)s - random() * %(spread)s AS f, 100 + random() * 60000 AS d
      FROM generate_series(1, %(count)s) AS g) AS made
"""


def fill_postgres(url: str, per_source: dict[str, int], *, old: int = 0) -> None:
    """Like fill_sqlite, with INSERT ... SELECT generate_series; then ANALYZE, as
    autovacuum would have by the time a store holds this many rows."""
    import psycopg

    open_store(url).close()
    now_ms = time.time() * 1000
    with psycopg.connect(url, autocommit=True) as db:
        indexes = db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('jobs', 'queue_jobs')"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        with db.transaction():
            for name, _ in indexes:
                db.execute(f"DROP INDEX {name}")
            for source, count in per_source.items():
                if source != API and count:
                    db.execute(
                        _PG_JOBS,
                        {"source": source, "now": now_ms, "base": 0.0, "spread": 6 * DAY_MS}
                        | {"count": count},
                    )
            if old:
                db.execute(
                    _PG_JOBS,
                    {"source": PUSHED, "now": now_ms, "base": 8 * DAY_MS, "spread": DAY_MS}
                    | {"count": old},
                )
            if per_source.get(API):
                db.execute(
                    _PG_QUEUE, {"now": now_ms, "spread": 6 * DAY_MS, "count": per_source[API]}
                )
            for _, sql in indexes:
                db.execute(sql)
            added = dict(per_source)
            added[PUSHED] = added.get(PUSHED, 0) + old
            for source, count in added.items():
                if count:
                    db.execute(
                        "INSERT INTO tracked_counts VALUES (%s, %s) ON CONFLICT (source)"
                        " DO UPDATE SET jobs = tracked_counts.jobs + excluded.jobs",
                        (source, count),
                    )
        db.execute("ANALYZE")
        kept: dict[str, int] = dict(
            db.execute("SELECT source, jobs FROM tracked_counts").fetchall()
        )
        real: dict[str, int] = dict(
            db.execute("SELECT source, COUNT(*) FROM jobs GROUP BY source").fetchall()
        )
        (real[API],) = db.execute("SELECT COUNT(*) FROM queue_jobs").fetchall()[0]
        for source, count in added.items():
            if not (kept.get(source, 0) == real.get(source, 0) == count):
                raise RuntimeError(f"{source}: kept {kept.get(source)}, rows {real.get(source)}")


# ---------------------------------------------------------------- the scraped source


class ChangingListing(StaticSource):
    """A scraped app's jobs endpoint: 10,000 jobs, about 2,000 running; after each answer
    (off its path) 1% of them change for the next: 50 running jobs finish, 50 new ones
    start, and the 50 finished longest ago leave the list."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        now_ms = time.time() * 1000
        self.jobs: list[dict[str, Any]] = []
        for n in range(LISTED):
            item = self._job(n, now_ms - 600_000 + n * 50)
            if n < LISTED - LISTED_RUNNING:
                self._finish(item, now_ms - 600_000 + n * 55)
            self.jobs.append(item)
        self.count = LISTED
        self.served = 0
        # The second answer waits for this (30 s at most), so the first scrape's own
        # duration stays on /metrics long enough to be read (see Exporter.first_scrape).
        self.first_read = threading.Event()
        super().__init__(msgspec.json.encode(self.jobs))

    def before_answer(self) -> None:
        if self.served == 1:
            self.first_read.wait(30)

    def answered(self) -> None:
        self.advance()

    def _job(self, n: int, start_ms: float) -> dict[str, Any]:
        job_type, name = SERIES[n % len(SERIES)]
        return {
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "name": name,
            "backgroundJobType": job_type,
            "startTimestamp": start_ms,
            "isFinished": False,
        }

    @staticmethod
    def _finish(item: dict[str, Any], at_ms: float) -> None:
        item.update(isFinished=True, finishTimestamp=at_ms, status="completed")

    def advance(self) -> None:
        now_ms = time.time() * 1000
        running = [item for item in self.jobs if not item["isFinished"]]
        for item in running[: CHANGE // 2]:
            self._finish(item, now_ms)
        kept = self.jobs[CHANGE // 2 :]  # the oldest listed are finished: they leave
        for _ in range(CHANGE // 2):
            kept.append(self._job(self.count, now_ms))
            self.count += 1
        self.jobs = kept
        self.body = msgspec.json.encode(kept)
        self.served += 1


# ---------------------------------------------------------------- one exporter


_SAMPLE = re.compile(r'^(job_exporter_[a-z_]+)(?:\{source="([^"]+)"\})? (\S+)$', re.M)


def samples(text: str) -> dict[tuple[str, str], float]:
    """The exporter's own gauges of a /metrics page, per source ("" for those of none)."""
    return {(m[1], m[2] or ""): float(m[3]) for m in _SAMPLE.finditer(text)}


@dataclass
class Figures:
    store: str
    size: int
    after_change: list[float] = field(default_factory=list)
    steady: dict[float, float] = field(default_factory=dict)  # last success -> duration
    push_one: list[float] = field(default_factory=list)
    push_batch: list[float] = field(default_factory=list)
    lease_complete: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    first_scrape: float | None = None  # reported, no goal: see Exporter.first_scrape
    refused: int = 0  # POSTs answered 503 (store unavailable) and sent again


class Exporter:
    """`job-exporter serve` on a filled store, with its own changing listing."""

    def __init__(self, store: str, url: str, size: int, per_source: dict[str, int]) -> None:
        self.listing = ChangingListing(seed=size)
        self.process, self.url = serve(
            url,
            "--source",
            f"{SCRAPED}={self.listing.url}",
            "--scrape-interval",
            str(SCRAPE_INTERVAL_S),
            "--max-body-bytes",
            str(8 * 1024 * 1024),
        )
        self.session = requests.Session()
        self.figures = Figures(store, size)
        self.rng = random.Random(size + 7)
        self.expected = dict(per_source)
        self.steady_from = 0.0

    def close(self) -> None:
        stop(self.process)
        self.listing.close()

    def metrics(self) -> str:
        answer = self.session.get(f"{self.url}/metrics", timeout=60)
        answer.raise_for_status()
        return answer.text

    def record_scrapes(self, text: str) -> dict[tuple[str, str], float]:
        found = samples(text)
        at = found.get(("job_exporter_source_last_success_timestamp_seconds", SCRAPED))
        took = found.get(("job_exporter_source_scrape_duration_seconds", SCRAPED))
        if at is not None and took is not None and at > self.steady_from:
            self.figures.steady[at] = took
        return found

    def post(self, path: str, **options: Any) -> requests.Response:
        """A POST, sent again (as the answer asks) while the store is unavailable (503,
        e.g. a write lock held past its 2 s wait), for 30 s at most: what a client sees
        is the time until the request was acknowledged. The refusals are counted."""
        deadline = time.monotonic() + 30
        while True:
            answer = self.session.post(f"{self.url}{path}", timeout=120, **options)
            if answer.status_code != 503 or time.monotonic() > deadline:
                return answer
            self.figures.refused += 1
            time.sleep(0.05)

    def push(self, body: bytes, source: str = PUSHED) -> float:
        started = time.perf_counter()
        answer = self.post(
            "/api/v1/push",
            params={"source": source},
            data=body,
            headers={"Content-Type": "application/json"},
        )
        took = time.perf_counter() - started
        if answer.status_code != 202:
            raise RuntimeError(
                f"{self.figures.store} {self.figures.size:,}: push refused:"
                f" {answer.status_code} {answer.text[:200]}"
            )
        return took

    def new_jobs(self, count: int, finished: bool) -> bytes:
        now_ms = time.time() * 1000
        items = []
        for n in range(count):
            job_type, name = SERIES[self.rng.randrange(len(SERIES))]
            item: dict[str, Any] = {
                "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "name": name,
                "backgroundJobType": job_type,
                "startTimestamp": now_ms - 2_000 - n,
                "isFinished": finished,
            }
            if finished:
                item.update(finishTimestamp=now_ms - n, status="completed")
            items.append(item)
        self.expected[PUSHED] += count
        return msgspec.json.encode(items)

    def create(self, job_type: str, name: str) -> None:
        answer = self.post("/api/v1/jobs", json={"type": job_type, "name": name})
        answer.raise_for_status()
        self.expected[API] += 1

    def lease_and_complete(self) -> float:
        started = time.perf_counter()
        leased = self.post("/api/v1/jobs/lease", json={"worker": "w"})
        if leased.status_code != 200:
            raise RuntimeError(f"no job to lease: {leased.status_code} {leased.text[:200]}")
        done = self.post(f"/api/v1/jobs/{leased.json()['id']}/complete", json={"worker": "w"})
        took = time.perf_counter() - started
        done.raise_for_status()
        return took

    def first_scrape(self, limit_s: float = 300) -> None:
        """Wait for the first scrape, check its count and keep its own duration (the
        listing holds its second answer until then): 10,000 listed jobs, none known yet,
        while the store keeps finished ones, so all are asked of the store. Reported, no
        goal."""
        deadline = time.monotonic() + limit_s
        try:
            while True:
                found = samples(self.metrics())
                # store_up 0: the counts shown are the last ones read (the store did not
                # answer within /metrics' budget, as just after a large fill), not this scrape's.
                fresh = found.get(("job_exporter_store_up", "")) == 1
                if fresh and found.get(("job_exporter_source_up", SCRAPED)) == 1:
                    tracked = found.get(("job_exporter_tracked_jobs", SCRAPED))
                    if tracked != self.expected[SCRAPED] + LISTED:
                        raise RuntimeError(
                            f"{self.figures.store} {self.figures.size:,}: first scrape left"
                            f" {tracked} {SCRAPED} jobs, not {self.expected[SCRAPED] + LISTED}"
                        )
                    took = found.get(("job_exporter_source_scrape_duration_seconds", SCRAPED))
                    self.figures.first_scrape = took
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.figures.store}: no first scrape in {limit_s:.0f} s")
                time.sleep(0.05)
        finally:
            self.listing.first_read.set()

    def seed(self) -> None:
        """Every series' counts through the real routes: a running and a finished job
        pushed, a job-API job created, leased and completed. Then the kept counts are
        checked against what was filled and sent."""
        for job_type, name in SERIES:
            now_ms = time.time() * 1000
            batch = [
                {
                    "id": str(uuid.uuid4()),
                    "name": name,
                    "backgroundJobType": job_type,
                    "startTimestamp": now_ms - 5_000,
                    "isFinished": finished,
                }
                | ({"finishTimestamp": now_ms, "status": "completed"} if finished else {})
                for finished in (False, True)
            ]
            self.push(msgspec.json.encode(batch))
            self.expected[PUSHED] += 2
            self.create(job_type, name)
            self.lease_and_complete()
        deadline = time.monotonic() + 120
        while True:
            found = samples(self.metrics())
            tracked = {s: found.get(("job_exporter_tracked_jobs", s)) for s in (PUSHED, API)}
            if found.get(("job_exporter_store_up", "")) == 1 and (
                found.get(("job_exporter_source_up", SCRAPED)) == 1
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.figures.store} {self.figures.size}: no scrape in 120 s")
            time.sleep(0.2)
        for source, count in tracked.items():
            if count != self.expected[source]:
                raise RuntimeError(
                    f"{self.figures.store} {self.figures.size:,}: tracked {source} {count},"
                    f" expected {self.expected[source]}"
                )
        scraped = found.get(("job_exporter_tracked_jobs", SCRAPED), 0)
        if scraped < self.expected[SCRAPED] + LISTED:
            raise RuntimeError(f"tracked {SCRAPED} {scraped}: fewer than filled and listed")
        # Scrapes from now on are steady ones (the first decoded 10,000 new jobs).
        self.steady_from = time.time() + 2 * SCRAPE_INTERVAL_S

    def round(self, quick: bool) -> None:
        f = self.figures
        for _ in range(2 if quick else 3):
            self.push(self.new_jobs(1, finished=True))  # a change, untimed
            started = time.perf_counter()
            text = self.metrics()
            f.after_change.append(time.perf_counter() - started)
            self.record_scrapes(text)
        for n in range(4 if quick else 6):
            f.push_one.append(self.push(self.new_jobs(1, finished=n % 2 == 1)))
        for _ in range(2):
            body = self.new_jobs(BATCH, finished=True)
            f.push_batch.append(self.push(body))
        pairs = 4 if quick else 6
        for n in range(pairs):
            job_type, name = SERIES[n]
            self.create(job_type, name)
        for _ in range(pairs):
            f.lease_complete.append(self.lease_and_complete())

    def finish(self, steady_wanted: int, deadline: float) -> None:
        """Wait (bounded) for enough steady scrapes, check the counts, read RSS."""
        while len(self.figures.steady) < steady_wanted and time.monotonic() < deadline:
            self.record_scrapes(self.metrics())
            time.sleep(SCRAPE_INTERVAL_S / 2)
        if len(self.figures.steady) < 3:
            raise RuntimeError(f"{self.figures.store}: {len(self.figures.steady)} steady scrapes")
        found = samples(self.metrics())
        for source in (PUSHED, API):
            got = found.get(("job_exporter_tracked_jobs", source))
            if got != self.expected[source]:
                raise RuntimeError(f"tracked {source} {got}, expected {self.expected[source]}")
        self.figures.rss_mb = resident_mb(self.process.pid)


def measure_store(
    store: str, urls: Sequence[str], sizes: Sequence[int], quick: bool, fill: Callable
) -> list[Figures]:
    """Fill one store per size, start an exporter on each, and measure them in turn."""
    exporters: list[Exporter] = []
    try:
        for url, size in zip(urls, sizes, strict=True):
            started = time.monotonic()
            per_source = _split(size)
            fill(url, per_source)
            print(f"  {store} {size:,}: filled in {time.monotonic() - started:.0f} s", flush=True)
            exporters.append(Exporter(store, url, size, per_source))
            exporters[-1].first_scrape()
        for exporter in exporters:
            exporter.seed()
        # Full mode goes on for over a minute, so that the work a source's writes do once
        # a minute (the retention prune's look for expired jobs) falls among the samples
        # and shows in the max figures.
        started = time.monotonic()
        rounds, at_least_s = (16, 0) if quick else (24, 65)
        n = 0
        while n < rounds or (time.monotonic() - started < at_least_s and n < 60):
            order = exporters if n % 2 == 0 else exporters[::-1]
            for exporter in order:
                exporter.round(quick)
            n += 1
        print(f"  {store}: {n} rounds in {time.monotonic() - started:.0f} s", flush=True)
        deadline = time.monotonic() + 30
        for exporter in exporters:
            exporter.finish(12 if quick else 20, deadline)
        return [exporter.figures for exporter in exporters]
    finally:
        for exporter in exporters:
            exporter.close()


# ---------------------------------------------------------------- prune


@dataclass
class PruneFigures:
    expired: int
    reads_ms: list[float]
    baseline_ms: list[float]
    took_s: float
    how: str


def measure_prune(store_url: str, expired: int, quick: bool) -> PruneFigures:
    """A store with `expired` finished jobs past retention and RECENT recent ones, all of
    the pushed source: /metrics read every 100 ms from start-up until the tracked count
    falls to the recent ones (a push starts the prune if start-up did not)."""
    process, url = serve(store_url)
    session = requests.Session()
    reads: list[float] = []
    limit = time.monotonic() + (120 if quick else 600)
    pusher: threading.Thread | None = None
    how = "at start-up"
    started_at = time.monotonic()
    pruned_at: float | None = None
    try:
        first = time.monotonic()
        while True:
            began = time.perf_counter()
            answer = session.get(f"{url}/metrics", timeout=60)
            reads.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            tracked = samples(answer.text).get(("job_exporter_tracked_jobs", PUSHED))
            target = RECENT + (1 if pusher else 0)
            if tracked is not None and tracked <= target:
                if tracked != target:
                    raise RuntimeError(f"the prune left {tracked} jobs, not {target}")
                pruned_at = time.monotonic()
                break
            if pusher is None and tracked == RECENT + expired and time.monotonic() - first > 3:
                # Not pruning at start-up: a write to the source prunes (once a minute).
                how = "on the first push (none at start-up within 3 s)"
                now_ms = time.time() * 1000
                job = {
                    "id": str(uuid.uuid4()),
                    "name": NAMES[0],
                    "backgroundJobType": TYPES[0],
                    "startTimestamp": now_ms - 1000,
                    "isFinished": False,
                }
                pusher = threading.Thread(
                    target=requests.post,
                    args=(f"{url}/api/v1/push",),
                    kwargs={"params": {"source": PUSHED}, "json": [job], "timeout": 600},
                    daemon=True,
                )
                started_at = time.monotonic()
                pusher.start()
            if time.monotonic() > limit:
                raise RuntimeError(f"prune not done in time: {tracked} {PUSHED} jobs tracked")
            time.sleep(max(0.0, READ_EVERY_S - (time.perf_counter() - began)))
        if pusher is not None:
            pusher.join(60)
        baseline: list[float] = []
        stop_at = time.monotonic() + 5
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            session.get(f"{url}/metrics", timeout=60).raise_for_status()
            baseline.append((time.perf_counter() - began) * 1000)
            time.sleep(max(0.0, READ_EVERY_S - (time.perf_counter() - began)))
    finally:
        stop(process)
    return PruneFigures(expired, reads, baseline, pruned_at - started_at, how)


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------- the run


FIGURES = (
    ("after_change", "/metrics right after a change", "ms"),
    ("steady", "steady scrape of 10,000 jobs (its own duration)", "ms"),
    ("push_one", "single-job push", "ms"),
    ("push_batch", f"{BATCH}-job push", "ms"),
    ("lease_complete", "lease + complete", "ms"),
)


def _median_ms(figures: Figures, key: str) -> float:
    values = getattr(figures, key)
    if isinstance(values, dict):
        values = list(values.values())
    return statistics.median(values) * 1000


def _max_ms(figures: Figures, key: str) -> float:
    values = getattr(figures, key)
    if isinstance(values, dict):
        values = list(values.values())
    return max(values) * 1000


def print_table(all_figures: list[Figures]) -> None:
    head = f"  {'store':10} {'retained':>11}"
    head += (
        "".join(f" {key:>15}" for key, _, _ in FIGURES) + f" {'RSS MB':>8} {'first':>8} {'503s':>5}"
    )
    print(head)
    for f in all_figures:
        line = f"  {f.store:10} {f.size:>11,}"
        for key, _, _ in FIGURES:
            line += f" {_median_ms(f, key):7.1f}/{_max_ms(f, key):7.1f}"
        first = "-" if f.first_scrape is None else f"{f.first_scrape * 1000:.0f}"
        print(f"{line} {f.rss_mb:8.1f} {first:>8} {f.refused:5}")
    print(
        "  (each figure: median/max ms; first: the first scrape's own duration, ms, no goal;"
        " 503s: requests refused as the store was unavailable, sent again and timed whole)",
        flush=True,
    )


def results_of(all_figures: list[Figures], prune: PruneFigures | None) -> list[Result]:
    results = []
    for store in dict.fromkeys(f.store for f in all_figures):
        mine = sorted((f for f in all_figures if f.store == store), key=lambda f: f.size)
        small, big = mine[0], mine[-1]
        for key, what, unit in FIGURES:
            results.append(
                Result(
                    f"scale_{key}_{store}",
                    f"{what}, {big.size:,} retained jobs, {store}",
                    _median_ms(big, key),
                    _median_ms(small, key),
                    f"the same at {small.size:,} retained jobs, same run",
                    unit,
                    RATIO_GOAL,
                    at_most=True,
                    note=(
                        f"max {_max_ms(big, key):.1f} ms at {big.size:,},"
                        f" {_max_ms(small, key):.1f} ms at {small.size:,}"
                        + "".join(
                            f"; {f.refused} POSTs answered 503 at {f.size:,}, sent again"
                            for f in mine
                            if f.refused and key == "push_one"
                        )
                    ),
                )
            )
        if store == "sqlite":
            results.append(
                Result(
                    "scale_memory_sqlite",
                    f"resident memory added by {big.size:,} retained jobs over {small.size:,}",
                    big.rss_mb - small.rss_mb,
                    small.rss_mb,
                    f"the exporter at {small.size:,}: {small.rss_mb:.0f} MB",
                    "MB",
                    MEMORY_GOAL_MB,
                    at_most=True,
                    absolute=True,
                    note=f"{big.rss_mb:.0f} MB at {big.size:,}",
                )
            )
    if prune is not None:
        results.append(
            Result(
                "scale_prune_metrics_p99",
                f"/metrics read every 100 ms while {prune.expired:,} expired jobs are pruned, p99",
                _p(prune.reads_ms, 0.99),
                _p(prune.baseline_ms, 0.99),
                f"the same reads with no prune, p99 {_p(prune.baseline_ms, 0.99):.1f} ms",
                "ms",
                PRUNE_GOAL_MS,
                at_most=True,
                absolute=True,
                note=(
                    f"prune {prune.how}, took {prune.took_s:.1f} s; {len(prune.reads_ms)} reads,"
                    f" p50 {_p(prune.reads_ms, 0.5):.1f} ms, max {max(prune.reads_ms):.1f} ms;"
                    f" no prune p50 {_p(prune.baseline_ms, 0.5):.1f} ms"
                ),
            )
        )
    return results


def measure(
    sqlite_sizes: Sequence[int], postgres_sizes: Sequence[int], prune_size: int, quick: bool
) -> tuple[list[Figures], PruneFigures | None]:
    all_figures: list[Figures] = []
    prune = None
    with tempfile.TemporaryDirectory(prefix="job-exporter-bench-scale-") as folder:
        if sqlite_sizes:
            paths = [Path(folder, f"scale-{size}.db") for size in sqlite_sizes]
            all_figures += measure_store(
                "sqlite",
                [f"sqlite:///{path}" for path in paths],
                sqlite_sizes,
                quick,
                lambda url, per_source: fill_sqlite(Path(url[len("sqlite:///") :]), per_source),
            )
            for path in paths:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        if postgres_sizes:
            from tests.helpers.postgres import PostgresCluster

            cluster = PostgresCluster()
            try:
                urls = [cluster.new_database() for _ in postgres_sizes]
                all_figures += measure_store(
                    "postgresql", urls, postgres_sizes, quick, fill_postgres
                )
            finally:
                cluster.stop()
        if prune_size:
            path = Path(folder, "prune.db")
            fill_sqlite(path, {PUSHED: RECENT}, old=prune_size)
            prune = measure_prune(f"sqlite:///{path}", prune_size, quick)
    return all_figures, prune


def sizes(quick: bool) -> tuple[list[int], list[int], int]:
    if quick:
        return [10_000, 200_000], [10_000, 100_000], 100_000
    return [10_000, 1_000_000, 10_000_000], [10_000, 1_000_000], 1_000_000


def run(quick: bool) -> list[Result]:
    sqlite_sizes, postgres_sizes, prune_size = sizes(quick)
    all_figures, prune = measure(sqlite_sizes, postgres_sizes, prune_size, quick)
    print_table(all_figures)
    return results_of(all_figures, prune)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sqlite", type=int, nargs="*", help="retained jobs per SQLite store")
    parser.add_argument("--postgres", type=int, nargs="*", help="per PostgreSQL store")
    parser.add_argument("--prune", type=int, help="expired jobs to prune (0: none)")
    args = parser.parse_args()
    sqlite_sizes, postgres_sizes, prune_size = sizes(args.quick)
    if args.sqlite is not None:
        sqlite_sizes = args.sqlite
    if args.postgres is not None:
        postgres_sizes = args.postgres
    if args.prune is not None:
        prune_size = args.prune
    all_figures, prune = measure(sqlite_sizes, postgres_sizes, prune_size, args.quick)
    print_table(all_figures)
    for result in results_of(all_figures, prune):
        result.print()


if __name__ == "__main__":
    main()
