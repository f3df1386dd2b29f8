"""SIGKILL at random moments under load: nothing acknowledged is lost, no counter goes down,
nothing is counted twice. On SQLite and on PostgreSQL.

Client threads push jobs (a start event, then a finish event) and create, lease and complete
job-API jobs against a real `serve` process, while the test kills it with SIGKILL at seeded
random moments and restarts it on the same store and port. Each client keeps a ledger of the
requests that got a 2xx and retries the others until they do, as a real client would. Then:

- every acknowledged push and create is in the store (`/api/v1/jobinfo`, `/api/v1/jobs`),
  and every acknowledged completion left its job completed;
- every counter sample read from `/metrics` never went down from one read to the next,
  across every restart (the reads bracket each kill);
- the counts match the ledger exactly: a retried push counts nothing again, and each job-API
  run is started once and finished once (started = sum of attempts = completed + lost).
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, free_port
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = 8
KILLS = 10
PUSH_CLIENTS = 3
PRODUCERS = 2
WORKERS = 3
SOURCE = "crash"
RETRY_FOR_S = 30.0  # a client gives up on one request after this long: the test then fails
# Counters that belong to one process, not to the store: they start again at each restart.
# (job_exporter_store_errors_total counts what this process saw of its store.)
PER_PROCESS = ("process_", "python_", "job_exporter_store_errors_total")


def counter_samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample that may only grow: counters and histogram buckets, counts and sums."""
    grows = ("_total", "_bucket", "_count", "_sum")  # all observations are >= 0
    return {
        key: value
        for key, value in metrics.samples.items()
        if key[0].endswith(grows) and not key[0].startswith(PER_PROCESS)
    }


def job_sum(metrics: Metrics, family: str, source: str, **labels: str) -> float:
    """A job family summed over `type` and `name` for one source."""
    total = 0.0
    for (name, sample_labels), value in metrics.samples.items():
        found = dict(sample_labels)
        wanted = {"source": source, **labels}
        if name == family and all(found.get(key) == value_ for key, value_ in wanted.items()):
            total += value
    return total


@dataclass
class Ledger:
    """What the clients were told: only a 2xx counts as acknowledged."""

    requests: int = 0
    resent: int = 0  # sent again after a refusal or a cut-off answer
    push_started: set[str] = field(default_factory=set)
    push_finished: dict[str, str] = field(default_factory=dict)  # id -> status
    created: dict[str, str] = field(default_factory=dict)  # job id -> client token
    create_attempts: set[str] = field(default_factory=set)  # tokens sent
    completed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Clients:
    """The load: push clients, job producers and workers, all retrying through restarts."""

    def __init__(self, url: str, ledger: Ledger, rng_seed: int) -> None:
        self.url = url
        self.ledger = ledger
        self.stop = threading.Event()  # producers and pushers stop making new work
        self.drained = threading.Event()  # workers stop
        self.errors: list[BaseException] = []
        self.seed = rng_seed
        self.threads = [
            *(self._thread(self._push_client, n) for n in range(PUSH_CLIENTS)),
            *(self._thread(self._producer, n) for n in range(PRODUCERS)),
            *(self._thread(self._worker, n) for n in range(WORKERS)),
        ]

    def _thread(self, target: Any, n: int) -> threading.Thread:
        def run() -> None:
            try:
                target(n)
            except BaseException as error:  # reported by the test, not lost in a thread
                self.errors.append(error)

        return threading.Thread(target=run, name=f"{target.__name__}-{n}", daemon=True)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(RETRY_FOR_S * 2)
            assert not thread.is_alive(), f"{thread.name} is stuck"
        assert not self.errors, self.errors

    def request(
        self,
        session: requests.Session,
        method: str,
        path: str,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        settle: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send until a status in `ok` (acknowledged) or `settle` comes back; connection
        errors and 503s while the exporter is down or starting are retried."""
        deadline = time.monotonic() + RETRY_FOR_S
        first = True
        while True:
            with self.ledger.lock:
                self.ledger.requests += 1
                self.ledger.resent += 0 if first else 1
            first = False
            try:
                response = session.request(method, self.url + path, json=body, timeout=10)
            except requests.RequestException:  # refused, reset, or cut off mid-answer
                response = None
            if response is not None and response.status_code in ok + settle:
                return response
            if response is not None and response.status_code not in (502, 503):
                raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer within {RETRY_FOR_S} s")
            self.drained.wait(0.02)  # a short pause between resends, cut short at the end

    def _push_client(self, n: int) -> None:
        session = requests.Session()
        rng = random.Random(self.seed * 100 + n)
        for count in itertools.count():
            if self.stop.is_set():
                return
            job_id = f"push-{n}-{count}"
            item = {
                "id": job_id,
                "name": f"task-{count % 3}",
                "backgroundJobType": "TASK",
                "startTimestamp": time.time() * 1000,
                "isFinished": False,
            }
            self.request(session, "POST", f"/api/v1/push?source={SOURCE}", item)
            with self.ledger.lock:
                self.ledger.push_started.add(job_id)
            status = "failed" if rng.random() < 0.2 else "completed"
            finish = {
                **item,
                "isFinished": True,
                "status": status,
                "finishTimestamp": item["startTimestamp"] + rng.randint(1, 5000),
            }
            self.request(session, "POST", f"/api/v1/push?source={SOURCE}", [finish])
            with self.ledger.lock:
                self.ledger.push_finished[job_id] = status

    def _producer(self, n: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            token = uuid.uuid4().hex
            with self.ledger.lock:
                self.ledger.create_attempts.add(token)
            body = {
                "type": "CRASH",
                "name": f"step-{n}",
                "payload": {"token": token},
                "maxAttempts": 100,
            }
            job = self.request(session, "POST", "/api/v1/jobs", body, ok=(201,)).json()
            with self.ledger.lock:
                self.ledger.created[job["id"]] = token

    def _worker(self, n: int) -> None:
        session = requests.Session()
        rng = random.Random(self.seed * 1000 + n)
        worker = f"worker-{n}"
        while not self.drained.is_set():
            leased = self.request(
                session, "POST", "/api/v1/jobs/lease", {"worker": worker, "leaseSeconds": 2}
            )
            if leased.status_code == 204:
                self.drained.wait(0.02)
                continue
            job_id = leased.json()["id"]
            self.drained.wait(rng.uniform(0, 0.05))  # the work: a kill may land here
            # 409: this worker's lease is gone (a complete applied just before a kill, or
            # a lease that expired while the exporter was down); the store tells which.
            done = self.request(
                session,
                "POST",
                f"/api/v1/jobs/{job_id}/complete",
                {"worker": worker},
                ok=(200,),
                settle=(409,),
            )
            if done.status_code == 200:
                with self.ledger.lock:
                    self.ledger.completed.add(job_id)


def all_api_jobs(url: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1000", "type": "CRASH", **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{url}/api/v1/jobs", params=params, timeout=10).json()
        jobs.extend(page["jobs"])
        cursor = page["nextCursor"]
        if cursor is None:
            return jobs


def test_sigkill_under_load_loses_nothing_acknowledged_and_counts_nothing_twice(
    store_url: str,
) -> None:
    rng = random.Random(SEED)
    port = free_port()  # one for every incarnation of the exporter: clients keep one URL
    url = f"http://127.0.0.1:{port}"

    def serve() -> ExporterProcess:
        return ExporterProcess(
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            store_url,
            "--backoff-base",
            "0.05",
            "--backoff-cap",
            "0.2",
            "--threads",
            "16",
        )

    reads: list[tuple[str, Metrics]] = []
    ledger = Ledger()
    process = serve()
    clients = Clients(url, ledger, SEED)
    clients.start()
    try:
        for kill in range(KILLS):
            wait_until(lambda: len(ledger.completed) + len(ledger.push_finished) > 0)
            clients.stop.wait(rng.uniform(0.2, 1.5))  # let load run for a random while
            reads.append((f"before kill {kill + 1}", process.metrics()))
            process.kill()  # SIGKILL: no handler runs, mid-request and mid-transaction
            assert process.process.returncode == -signal.SIGKILL
            process = serve()
            reads.append((f"after restart {kill + 1}", process.metrics()))
            assert not clients.errors, clients.errors
        clients.stop.set()

        # Workers finish every job that exists, including runs lost to a kill and requeued.
        def all_completed() -> bool:
            assert not clients.errors, clients.errors
            statuses = Counter(job["status"] for job in all_api_jobs(url))
            return set(statuses) <= {"completed"}

        wait_until(all_completed, timeout=60, step=1)
        clients.drained.set()
        clients.join()
        final = process.metrics()
        reads.append(("final", final))
        jobinfo = requests.get(f"{url}/api/v1/jobinfo", params={"source": SOURCE}, timeout=30)
        pushed = {job["id"]: job for job in jobinfo.json()}
        api_jobs = {job["id"]: job for job in all_api_jobs(url)}
    finally:
        clients.stop.set()
        clients.drained.set()
        assert process.stop() == 0, process.log

    # Nothing acknowledged is lost.
    missing_starts = ledger.push_started - pushed.keys()
    assert not missing_starts, missing_starts
    for job_id, status in ledger.push_finished.items():
        assert pushed[job_id]["isFinished"] is True, pushed[job_id]
        assert pushed[job_id]["status"] == status, pushed[job_id]
    assert not ledger.created.keys() - api_jobs.keys()
    assert all(api_jobs[job_id]["status"] == "completed" for job_id in ledger.completed)
    # A create whose answer a kill cut off is resent with the same token, and creates the
    # job again: create has no idempotency key, so such tokens may show twice. Every job in
    # the store is still one a client asked for.
    tokens = Counter(job["payload"]["token"] for job in api_jobs.values())
    assert set(tokens) <= ledger.create_attempts
    assert set(ledger.created.values()) <= set(tokens)
    duplicates = sum(count - 1 for count in tokens.values())

    # No counter ever went down, across every restart.
    for (before_name, before), (after_name, after) in itertools.pairwise(reads):
        old, new = counter_samples(before), counter_samples(after)
        went_down = {key: (old[key], new.get(key)) for key in old if new.get(key, -1) < old[key]}
        assert not went_down, f"{before_name} -> {after_name}: {went_down}"

    # Nothing counted twice: the counts are the ledger's, exactly.
    assert job_sum(final, "background_jobs_started_total", SOURCE) == len(ledger.push_started)
    for status in ("completed", "failed"):
        expected = sum(1 for s in ledger.push_finished.values() if s == status)
        got = job_sum(final, "background_jobs_finished_total", SOURCE, outcome=status)
        assert got == expected, (status, got, expected)
    assert job_sum(final, "background_jobs_running", SOURCE) == 0
    runs = sum(job["attempts"] for job in api_jobs.values())
    assert job_sum(final, "background_jobs_started_total", "api") == runs
    completed = job_sum(final, "background_jobs_finished_total", "api", outcome="completed")
    lost = job_sum(final, "background_jobs_finished_total", "api", outcome="lost")
    assert completed == len(api_jobs) >= len(ledger.completed)
    assert completed + lost == runs
    assert job_sum(final, "background_jobs_finished_total", "api", outcome="failed") == 0
    assert job_sum(final, "background_jobs_running", "api") == 0

    print(
        f"\ncrash safety ({store_url.split(':')[0]}): {KILLS} SIGKILLs survived, "
        f"{ledger.requests} requests ({ledger.resent} of them resends while it was down), "
        f"{len(ledger.push_started)} pushed jobs, {len(api_jobs)} API jobs "
        f"({duplicates} created again by a resent create), "
        f"{runs} runs of which {lost:.0f} lost to a kill, {len(reads)} /metrics reads compared, "
        f"0 acknowledged items lost"
    )
