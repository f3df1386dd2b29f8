"""Replicas on one PostgreSQL scrape each source once between them, and take a dead
owner's sources over within three scrape intervals, counting exactly (docs/contract.md §7)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers.data import job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until
from tests.test_replicas import serve as replica

pytestmark = pytest.mark.slow

INTERVAL_S = 0.5
OWNED = "job_exporter_source_owned"
APP = frozenset({("source", "app")})


def serve(url: str, source: JobSource) -> ExporterProcess:
    return replica(url, source, INTERVAL_S)


def owned(metrics: Metrics) -> float | None:
    return metrics.samples.get((OWNED, APP))


def counts(metrics: Metrics) -> tuple[float, float, float]:
    started = finished = running = 0.0
    for (name, _), value in metrics.samples.items():
        if name == "background_jobs_started_total":
            started += value
        elif name == "background_jobs_finished_total":
            finished += value
        elif name == "background_jobs_running":
            running += value
    return started, finished, running


def owner_of(replicas: list[ExporterProcess]) -> ExporterProcess | None:
    """The one replica that says it owns the source, once the others say they do not."""
    states = [owned(replica.metrics()) for replica in replicas]
    if sorted(states, key=lambda s: s or 0) != [0.0] * (len(replicas) - 1) + [1.0]:
        return None
    return replicas[states.index(1.0)]


def requests_between(source: JobSource, start: float, end: float) -> int:
    return sum(1 for moment in list(source.request_times) if start <= moment < end)


def test_three_replicas_scrape_once_and_take_over_a_dead_owner(postgres_cluster, job_source):
    url = postgres_cluster.new_database()
    first = [job(f"a{n}", name=f"task-{n % 3}") for n in range(30)]
    job_source.serve_jobs(first)
    replicas = [serve(url, job_source) for _ in range(3)]
    try:
        owner = wait_until(lambda: owner_of(replicas), timeout=20)
        standby = [replica for replica in replicas if replica is not owner]
        for replica in standby:  # a replica standing by describes no scrape of its own
            assert not any(
                name == "job_exporter_source_up" for name, _ in replica.metrics().samples
            )
        assert owner.metrics().samples[("job_exporter_source_up", APP)] == 1

        # About one request per interval reaches the app, not one per replica.
        window_start = time.monotonic()
        wait_until(lambda: time.monotonic() - window_start >= 20 * INTERVAL_S, timeout=30)
        seen = requests_between(job_source, window_start, time.monotonic())
        print(f"requests in 20 intervals with 3 replicas: {seen}")
        assert 16 <= seen <= 24

        # The owner dies without a word while 10 jobs finish and 5 new ones start.
        owner.kill()
        killed_at = time.monotonic()
        finished = [
            job(item["id"], name=item["name"], finished=True, status="completed")
            for item in first[:10]
        ]
        newcomers = [job(f"b{n}", name=f"task-{n % 3}") for n in range(5)]
        job_source.serve_jobs(finished + first[10:] + newcomers)
        successor = wait_until(lambda: owner_of(standby), timeout=20)
        after_kill = [moment for moment in list(job_source.request_times) if moment > killed_at]
        takeover_s = after_kill[0] - killed_at
        print(f"first scrape by another replica {takeover_s:.2f} s after SIGKILL")
        assert takeover_s <= 3 * INTERVAL_S + 0.25

        def agreed(wanted: tuple[float, float, float]) -> bool:
            return all(counts(replica.metrics()) == wanted for replica in standby)

        wait_until(lambda: agreed((35.0, 10.0, 25.0)), timeout=20)

        # A replica stopped cleanly hands its source over at once: the last one scrapes at
        # its next tick, well before the lease would run out.
        last = next(replica for replica in standby if replica is not successor)
        stopped_at = time.monotonic()
        assert successor.stop(signal.SIGTERM) == 0
        wait_until(lambda: owned(last.metrics()) == 1.0, timeout=20)
        after_stop = [moment for moment in list(job_source.request_times) if moment > stopped_at]
        print(f"first scrape by the last replica {after_stop[0] - stopped_at:.2f} s after SIGTERM")
        assert after_stop[0] - stopped_at <= 1.5 * INTERVAL_S + 0.25
        job_source.serve_jobs(finished + first[10:])  # the 5 newcomers vanish: lost, twice seen
        wait_until(lambda: counts(last.metrics()) == (35.0, 15.0, 20.0), timeout=20)
    finally:
        for replica in replicas:
            replica.kill()
