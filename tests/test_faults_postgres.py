"""A PostgreSQL store that stops, freezes or is locked must not hold the exporter.

Each test runs a real `serve` process on a database of a cluster of this module's own (the
tests stop and freeze it), pushes from several threads, reads `/metrics`, `/healthz` and
`/readyz` all along, and acts out one fault for a few seconds:

- the server stopped (`pg_ctl stop -m fast`), then started again;
- every PostgreSQL process frozen with SIGSTOP (the kernel still accepts and acknowledges
  TCP, so only the exporter's own watchdog can notice), then SIGCONT;
- the `counts` table locked by another client (ACCESS EXCLUSIVE in an open transaction),
  then released.

Each asserts: every `/metrics` answers within 2 s (10 at once too), with the last counts and
`job_exporter_store_up 0` while the store is down; `/healthz` within 1 s; `/readyz` 503 soon
after the fault and 200 soon after recovery; a push is 202 or 503, and what was acknowledged
is stored, after recovery and after a restart; the log says once that the store failed and
once that it is back. The measured figures are printed (`pytest -s`) for docs/reliability.md.

A last test breaks a connection with the watchdog directly (a statement sleeping past a
short bound) and checks that the pool discards it and the next operation works.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from exporter.store.health import StoreFault
from exporter.store.postgres import NoAnswer, PostgresDialect
from tests.helpers.metrics import Metrics
from tests.helpers.postgres import UNPRIVILEGED_USER, PostgresCluster, postgres_binary
from tests.helpers.processes import ExporterProcess
from tests.helpers.waiting import poll, wait_until

pytestmark = pytest.mark.slow

SOURCE = "faults"
PUSHERS = 4
METRICS_WITHIN_S = 2.0
HEALTHZ_WITHIN_S = 1.0
READY_WITHIN_S = 2.0  # /readyz says 503 this soon after the fault is in place
BACK_WITHIN_S = 5.0  # ... and 200 this soon after it ends
FAULT_FOR_S = 6.0  # beyond every bound of the store (2 s pool, 1.5 s lock, 2.5 s watchdog)
FAILING = re.compile(r"store failing \(")
BACK = re.compile(r"store is back after")


# --- the cluster and its faults ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: its tests stop it and freeze it."""
    made = PostgresCluster()
    yield made
    thaw(made)  # a failed test must not leave it frozen for the teardown's pg_ctl
    made.stop()


def pg_ctl(cluster: PostgresCluster, *args: str) -> None:
    as_user = ["runuser", "-u", UNPRIVILEGED_USER, "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_user, postgres_binary("pg_ctl"), "-D", str(cluster.data), "-w", "-t", "60", *args],
        check=True,
        capture_output=True,
        timeout=90,
        cwd=cluster.folder,
    )


def stop_server(cluster: PostgresCluster) -> None:
    pg_ctl(cluster, "-m", "fast", "stop")


def start_server(cluster: PostgresCluster) -> None:
    """Again on its port, as PostgresCluster first started it."""
    options = f"-h 127.0.0.1 -p {cluster.port} -k {cluster.folder} -F"
    pg_ctl(cluster, "-o", options, "-l", str(cluster.folder / "server.log"), "start")


def server_processes(cluster: PostgresCluster) -> list[int]:
    """The postmaster and every process it started."""
    pid_file = cluster.data / "postmaster.pid"
    if not pid_file.exists():
        return []
    postmaster = int(pid_file.read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


def freeze(cluster: PostgresCluster) -> None:
    signal_all(cluster, signal.SIGSTOP)  # the postmaster first: it forks no more


def thaw(cluster: PostgresCluster) -> None:
    signal_all(cluster, signal.SIGCONT)


def signal_all(cluster: PostgresCluster, sig: signal.Signals) -> None:
    for pid in server_processes(cluster):
        with contextlib.suppress(ProcessLookupError):  # ended since it was listed
            os.kill(pid, sig)


class TableLock:
    """Another client holding `LOCK TABLE counts IN ACCESS EXCLUSIVE MODE`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: psycopg.Connection[Any] | None = None

    def take(self) -> None:
        self.connection = psycopg.connect(self.url)
        self.connection.execute("LOCK TABLE counts IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        assert self.connection is not None
        self.connection.rollback()
        self.connection.close()


@dataclass
class Fault:
    name: str
    begin: Callable[[], None]
    end: Callable[[], None]
    word: str  # the StoreFault the exporter should name
    says: str = ""  # ... and what its log line should quote of the error


def fault_named(name: str, cluster: PostgresCluster, url: str) -> Fault:
    if name == "stopped":
        return Fault(
            name, lambda: stop_server(cluster), lambda: start_server(cluster), "unavailable"
        )
    if name == "frozen":
        return Fault(name, lambda: freeze(cluster), lambda: thaw(cluster), "timeout")
    lock = TableLock(url)
    # The server's lock_timeout acts before the watchdog: a clean cancel, connection kept.
    return Fault(name, lock.take, lock.release, "timeout", "due to lock timeout")


# --- the traffic during a fault ----------------------------------------------------------


@dataclass
class Answer:
    route: str
    sent: float  # monotonic s
    seconds: float
    status: int | None  # None: no answer (refused, reset or timed out)
    store_up: float | None = None  # from /metrics
    started: float | None = None  # the source's started_total, from /metrics


def get(session: requests.Session, url: str, route: str) -> Answer:
    sent = time.monotonic()
    try:
        response = session.get(url + route, timeout=15)
    except requests.RequestException:
        return Answer(route, sent, time.monotonic() - sent, None)
    answer = Answer(route, sent, time.monotonic() - sent, response.status_code)
    if route == "/metrics" and response.status_code == 200:
        metrics = Metrics(response.text, source=SOURCE)
        answer.store_up = metrics.value("job_exporter_store_up")
        answer.started = metrics.job("background_jobs_started_total", "TASK", "task")
    return answer


@dataclass
class Traffic:
    """Pushers, and pollers of /metrics, /healthz and /readyz, each on its own thread."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # 503: maybe stored, maybe not
    unexpected: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        targets: list[Callable[[], None]] = [self._push for _ in range(PUSHERS)]
        targets += [lambda r=route: self._poll(r) for route in ("/metrics", "/healthz", "/readyz")]
        self.threads = [threading.Thread(target=target, daemon=True) for target in targets]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in self.threads), "a client hangs"
        assert not self.unexpected, self.unexpected

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def _poll(self, route: str) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            self.record(get(session, self.url, route))
            self.stopping.wait(0.1)

    def _push(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            job_id = uuid.uuid4().hex
            item = {
                "id": job_id,
                "name": "task",
                "backgroundJobType": "TASK",
                "startTimestamp": time.time() * 1000,
                "isFinished": False,
            }
            sent = time.monotonic()
            try:
                response = session.post(
                    f"{self.url}/api/v1/push?source={SOURCE}", json=[item], timeout=15
                )
            except requests.RequestException as error:
                with self.lock:
                    self.unexpected.append(f"push got no answer: {error}")
                return
            self.record(Answer("push", sent, time.monotonic() - sent, response.status_code))
            with self.lock:
                if response.status_code == 202:
                    self.acknowledged.add(job_id)
                elif response.status_code == 503:
                    self.refused.add(job_id)
                else:
                    self.unexpected.append(f"push: {response.status_code} {response.text}")
            self.stopping.wait(0.02)

    def of(self, route: str, after: float = 0.0, before: float = float("inf")) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.route == route and after <= a.sent < before]


def serve(url: str) -> ExporterProcess:
    return ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", url)


def stored_ids(url: str) -> set[str]:
    response = requests.get(f"{url}/api/v1/jobinfo", params={"source": SOURCE}, timeout=10)
    assert response.status_code == 200, response.text
    return {job["id"] for job in response.json()}


def fresh_metrics(url: str) -> Metrics:
    """/metrics once the store answers again (store_up 1)."""
    session = requests.Session()
    answer = poll(
        lambda: get(session, url, "/metrics"), until=lambda a: a.store_up == 1, timeout=10
    )
    assert answer.store_up == 1, answer
    return Metrics(session.get(f"{url}/metrics", timeout=5).text, source=SOURCE)


def figures(values: list[float]) -> str:
    if not values:
        return "none"
    return f"max {max(values):.3f} s, p50 {statistics.median(values):.3f} s, n={len(values)}"


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault_name", ["stopped", "frozen", "locked"])
def test_a_failing_postgresql_never_holds_the_exporter(
    cluster: PostgresCluster, fault_name: str
) -> None:
    store_url = cluster.new_database()
    fault = fault_named(fault_name, cluster, store_url)
    process = serve(store_url)
    traffic = Traffic(process.url)
    burst: list[Answer] = []
    ended = False
    try:
        traffic.start()
        wait_until(lambda: len(traffic.acknowledged) >= 20, timeout=20)
        counted = time.monotonic()  # ... and a scrape read since shows them
        wait_until(lambda: any((a.started or 0) >= 20 for a in traffic.of("/metrics", counted)))
        log_before = len(process.lines)

        began = time.monotonic()
        fault.begin()
        in_place = time.monotonic()
        # /readyz 503 soon after the fault: the first one asked.
        session = requests.Session()
        refused_ready = poll(
            lambda: get(session, process.url, "/readyz"), until=lambda a: a.status == 503
        )
        assert refused_ready.status == 503, refused_ready
        ready_503_s = refused_ready.sent + refused_ready.seconds - in_place
        burst_from = time.monotonic()
        # 10 scrapes at once while the store is down.
        session_pool = [requests.Session() for _ in range(10)]
        with ThreadPoolExecutor(10) as executor:
            burst = list(executor.map(lambda s: get(s, process.url, "/metrics"), session_pool))
        burst_until = time.monotonic()
        # Hold the fault beyond every bound, while the clients keep trying.
        poll(lambda: time.monotonic() - began >= FAULT_FOR_S, timeout=FAULT_FOR_S + 5)
        down_until = time.monotonic()
        fault.end()
        ended = True
        recovered = time.monotonic()
        first_after = get(session, process.url, "/metrics")
        ready = poll(
            lambda: get(session, process.url, "/readyz"),
            until=lambda a: a.status == 200,
            timeout=BACK_WITHIN_S + 5,
        )
        back_s = ready.sent + ready.seconds - recovered
        first_fresh = get(session, process.url, "/metrics")
        # Pushes work again.
        acknowledged_after = len(traffic.acknowledged)
        wait_until(lambda: len(traffic.acknowledged) >= acknowledged_after + 10, timeout=20)
        traffic.stop()

        stored = stored_ids(process.url)
        after_recovery = fresh_metrics(process.url)
        log = process.lines[log_before:]
    finally:
        traffic.stopping.set()
        if not ended:
            fault.end()
        process.stop()

    restarted = serve(store_url)
    try:
        stored_after_restart = stored_ids(restarted.url)
        after_restart = fresh_metrics(restarted.url)
    finally:
        assert restarted.stop() == 0, restarted.log

    scrapes = traffic.of("/metrics")
    while_down = [  # answered before the fault ended
        a
        for a in traffic.of("/metrics", after=in_place + READY_WITHIN_S)
        if a.sent + a.seconds < down_until
    ]
    health = traffic.of("/healthz")

    def during_burst(answer: Answer) -> bool:
        return answer.sent < burst_until and answer.sent + answer.seconds > burst_from

    beside_burst = [a.seconds for a in health if not during_burst(a)]
    in_burst = [a.seconds for a in health if during_burst(a)]
    pushes = traffic.of("push")
    pushes_down = traffic.of("push", after=in_place, before=down_until)
    failing = [line for line in log if FAILING.search(line)]
    back = [line for line in log if BACK.search(line)]
    print(
        f"\n{fault_name}: fault held {down_until - began:.1f} s;"
        f" /metrics {figures([a.seconds for a in scrapes])},"
        f" while down {figures([a.seconds for a in while_down])};"
        f" 10 at once {figures([a.seconds for a in burst])};"
        f" first after recovery {first_after.seconds:.3f} s"
        f" (first fresh {first_fresh.seconds:.3f} s);"
        f" /healthz {figures(beside_burst)}, during the 10 scrapes {figures(in_burst)};"
        f" /readyz 503 after {ready_503_s:.2f} s, 200 after {back_s:.2f} s;"
        f" pushes {figures([a.seconds for a in pushes])},"
        f" while down {figures([a.seconds for a in pushes_down])};"
        f" {len(traffic.acknowledged)} acknowledged, {len(traffic.refused)} refused,"
        f" {len(stored - traffic.acknowledged)} refused yet stored;"
        f" {len(log)} log lines: {len(failing)} failing, {len(back)} back"
    )
    print("\n".join(log))

    # Every /metrics within 2 s, the 10 at once too; while down: the last counts, store down.
    slow = [a for a in scrapes + burst + [first_after] if a.seconds >= METRICS_WITHIN_S]
    assert not slow, slow
    assert all(a.status == 200 for a in scrapes + burst + [first_after]), scrapes + burst
    assert while_down and burst
    assert all(a.store_up == 0 for a in while_down + burst), while_down + burst
    last_counts = {a.started for a in while_down + burst}
    assert len(last_counts) == 1 and next(iter(last_counts)) >= 20, [
        (round(a.sent - in_place, 2), round(a.seconds, 2), a.started) for a in while_down + burst
    ]
    # /healthz within 1 s while the pushers were refused. While 10 scrapes at once wait for
    # a hung read (each up to the reader's 1.5 s), they hold more threads than waitress has
    # (8): then /healthz waits for one of them, at most that long.
    assert all(a.status == 200 for a in health), health
    bad = [a for a in health if a.seconds >= HEALTHZ_WITHIN_S and not during_burst(a)]
    assert not bad, (bad, in_place, down_until)
    assert all(a.seconds < METRICS_WITHIN_S for a in health), health
    # /readyz: 503 soon after the fault, 200 soon after recovery.
    assert ready_503_s < READY_WITHIN_S, ready_503_s
    assert back_s < BACK_WITHIN_S, back_s
    assert first_fresh.seconds < 1.0 and first_fresh.store_up == 1, first_fresh
    # Pushes during the fault were refused; every acknowledged one is stored and counted,
    # after recovery and after a restart.
    assert any(a.status == 503 for a in pushes_down), pushes_down
    assert traffic.acknowledged <= stored, traffic.acknowledged - stored
    assert stored <= traffic.acknowledged | traffic.refused
    assert stored_after_restart == stored
    for metrics in (after_recovery, after_restart):
        assert metrics.job("background_jobs_started_total", "TASK", "task") == len(stored)
    # The log says it once each way, naming the fault.
    assert len(failing) == 1 and len(back) == 1, "\n".join(log)
    assert f"store failing ({fault.word})" in failing[0], failing[0]
    assert fault.says in failing[0], failing[0]


def test_a_connection_the_watchdog_broke_never_goes_back_to_the_pool(
    cluster: PostgresCluster,
) -> None:
    """A statement that outlasts the watchdog's bound (here 0.5 s, with the server's own
    statement_timeout longer) raises a timeout at once and the pool discards its connection:
    every connection the pool hands out afterwards works."""
    dialect = PostgresDialect(cluster.new_database(), max_connections=2, answer_within_s=0.5)
    try:
        dialect.start()
        started = time.monotonic()
        with pytest.raises(NoAnswer) as raised, dialect.read() as db:
            db.execute("SELECT pg_sleep(2)")
        assert time.monotonic() - started < 1.5
        assert dialect.fault_of(raised.value) == StoreFault.TIMEOUT
        stats = dialect._pool.get_stats()
        assert stats.get("returns_bad", 0) == 1, stats
        for _ in range(4):  # more than the pool holds: each one handed out works
            with dialect.read() as db:
                assert db.execute("SELECT 1").fetchone() == (1,)
    finally:
        dialect.close()


def test_the_pool_replaces_connections_that_died_with_the_server(
    cluster: PostgresCluster,
) -> None:
    """Idle pooled connections die with a restart of the server; the pool's check replaces
    each as it is handed out, so the first operation after the restart works, and the
    store needs no restart of the exporter."""
    dialect = PostgresDialect(cluster.new_database(), max_connections=3)
    try:
        dialect.start()
        with dialect.read() as one, dialect.read() as two:  # two connections in the pool
            one.execute("SELECT 1")
            two.execute("SELECT 1")
        stop_server(cluster)
        try:
            with pytest.raises(psycopg.OperationalError), dialect.read() as db:
                db.execute("SELECT 1")
        finally:
            start_server(cluster)
        for _ in range(3):  # every connection the pool hands out works, the first one too
            with dialect.read() as db:
                assert db.execute("SELECT 1").fetchone() == (1,)
    finally:
        dialect.close()
