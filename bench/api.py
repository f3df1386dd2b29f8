"""Push and job-API rates over HTTP, beside what users would otherwise use or could reach:
Pushgateway PUTs, raw sqlite3 inserts, and a no-op endpoint on the same app and server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import requests

from bench.data import START_MS
from bench.harness import Result
from bench.servers import free_port, stop, wait_for
from exporter.store.sqlite import SqliteStore
from exporter.store.tables import HEAD_COLUMNS

MARKS = ", ".join("?" * len(HEAD_COLUMNS.split(",")))  # a plain running job's columns

PUSH_BATCH = 500


def run(quick: bool) -> list[Result]:
    singles = 300 if quick else 2000
    rounds, per_round = (5, 4) if quick else (10, 8)
    batches = rounds * per_round
    cycles = 300 if quick else 2000
    folder = tempfile.TemporaryDirectory()
    results: list[Result] = []
    try:
        with _serve(f"sqlite:///{Path(folder.name, 'push.db')}") as url:
            session = requests.Session()
            # Bodies are encoded before the clock starts: the server's rate is measured.
            single_bodies = [_encode([_job(f"s{n}")]) for n in range(singles)]
            batch_bodies = [
                _encode([_job(f"b{n}-{k}") for k in range(PUSH_BATCH)]) for n in range(batches)
            ]
            push_rate = _rate(singles, lambda n: _push(session, url, single_bodies[n]))
            # Batches and the raw store take turns, a few batches each, so both see the
            # machine in the same state (on a shared 2-core machine it drifts by tens of %).
            raw = _RawStore(Path(folder.name, "raw.db"))
            pushed_s = raw_s = 0.0
            for first in range(0, batches, per_round):
                numbers = range(first, first + per_round)
                pushed_s += _timed(
                    lambda numbers=numbers: [_push(session, url, batch_bodies[n]) for n in numbers]
                )
                raw_s += _timed(lambda numbers=numbers: [raw.insert(n) for n in numbers])
            raw.close()
            batch_rate, raw_rate = batches * PUSH_BATCH / pushed_s, batches * PUSH_BATCH / raw_s
        with _pushgateway() as gateway:
            session = requests.Session()
            gateway_rate = _rate(singles, lambda n: _put(session, gateway, n, 1))
            gateway_batch = PUSH_BATCH * _rate(
                batches, lambda n: _put(session, gateway, n, PUSH_BATCH)
            )
        results += [
            Result(
                "push_single",
                "single-job pushes over one keep-alive session",
                push_rate,
                gateway_rate,
                "Pushgateway PUTs of one job's series, same client",
                "req/s",
                1.5,
                at_most=False,
            ),
            Result(
                "push_batched",
                f"pushes of {PUSH_BATCH} jobs a request",
                batch_rate,
                raw_rate,
                "raw sqlite3 executemany of the same rows into the store's schema",
                "jobs/s",
                0.5,
                at_most=False,
                note=f"Pushgateway PUTs of {PUSH_BATCH} series: {gateway_batch:.0f} series/s",
            ),
        ]
        for store, goal in (("sqlite", 0.5), ("postgresql", 0.35)):
            results.append(_lease_complete(store, goal, cycles, Path(folder.name)))
    finally:
        folder.cleanup()
    return results


def _lease_complete(store: str, goal: float, cycles: int, folder: Path) -> Result:
    cluster = None
    if store == "sqlite":
        url = f"sqlite:///{folder / 'queue.db'}"
    else:
        from tests.helpers.postgres import PostgresCluster

        cluster = PostgresCluster()
        url = cluster.new_database()
    try:
        with _serve(url) as base:
            session = requests.Session()
            for _ in range(cycles):
                session.post(
                    f"{base}/api/v1/jobs", json={"type": "WORK", "name": "step"}, timeout=30
                ).raise_for_status()
            ceiling = _concurrent_rate(
                4, cycles * 2, lambda s: s.get(f"{base}/healthz", timeout=30)
            )

            def lease_and_complete(s: requests.Session) -> None:
                leased = s.post(f"{base}/api/v1/jobs/lease", json={"worker": "w"}, timeout=30)
                if leased.status_code == 200:
                    job_id = leased.json()["id"]
                    s.post(
                        f"{base}/api/v1/jobs/{job_id}/complete", json={"worker": "w"}, timeout=30
                    ).raise_for_status()

            rate = 2 * _concurrent_rate(4, cycles, lease_and_complete)
            done = requests.get(
                f"{base}/api/v1/jobs", params={"status": "completed", "limit": 1}, timeout=30
            )
            done.raise_for_status()
    finally:
        if cluster is not None:
            cluster.stop()
    return Result(
        f"lease_complete_{store}",
        f"lease + complete requests/s, 4 workers, {store}",
        rate,
        ceiling,
        "a no-op endpoint on the same app and server",
        "req/s",
        goal,
        at_most=False,
    )


class _serve:
    """A real `job-exporter serve` process on a free port, as a context manager."""

    def __init__(self, store: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--store",
                store,
                "--max-body-bytes",
                str(8 * 1024 * 1024),
                "--threads",
                "8",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        wait_for(f"{url}/readyz")
        return url

    def __exit__(self, *exc: object) -> None:
        stop(self.process)


class _pushgateway:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        wait_for(f"{url}/-/ready")
        return url

    def __exit__(self, *exc: object) -> None:
        stop(self.process)


def _job(job_id: str) -> dict:
    return {
        "id": job_id,
        "name": "send_email",
        "startTimestamp": START_MS,
        "backgroundJobType": "TASK",
        "isFinished": False,
    }


def _encode(jobs: list[dict]) -> bytes:
    return msgspec.json.encode(jobs)


def _push(session: requests.Session, url: str, body: bytes) -> None:
    response = session.post(
        f"{url}/api/v1/push",
        params={"source": "bench"},
        data=body,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    if response.status_code != 202:
        raise RuntimeError(f"push refused: {response.status_code} {response.text[:200]}")


def _put(session: requests.Session, gateway: str, n: int, series: int) -> None:
    lines = ["# TYPE background_jobs_started_total counter"]
    lines += [
        f'background_jobs_started_total{{type="TASK",name="send_email",id="{n}-{k}"}} 1'
        for k in range(series)
    ]
    body = ("\n".join(lines) + "\n").encode()
    session.put(
        f"{gateway}/metrics/job/bench/instance/i{n % 50}", data=body, timeout=30
    ).raise_for_status()


def _rate(count: int, call) -> float:
    started = time.perf_counter()
    for n in range(count):
        call(n)
    return count / (time.perf_counter() - started)


def _concurrent_rate(threads: int, total: int, call) -> float:
    """Requests/s of `threads` clients, each with its own keep-alive session."""
    per_thread = total // threads

    def client() -> None:
        session = requests.Session()
        for _ in range(per_thread):
            call(session)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


class _RawStore:
    """The store's own limit: the same rows into the store's own schema (its migrations, its
    indexes), 500 to a transaction, WAL as the store runs it, with no HTTP and no logic."""

    def __init__(self, path: Path) -> None:
        SqliteStore(path).close()  # creates the schema exactly as the exporter does
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")

    def insert(self, n: int) -> None:
        rows = [
            (
                "bench",
                f"b{n}-{k}",
                "TASK",
                "send_email",
                "TASK",
                "send_email",
                START_MS,
                None,
                None,
                None,
                0,
            )
            for k in range(PUSH_BATCH)
        ]
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT INTO jobs ({HEAD_COLUMNS}) VALUES ({MARKS})", rows)
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
