"""The retry life cycle end to end over HTTP: automatic retries with exponential backoff and
jitter, bounded attempts, manual retry, lease expiry and heartbeats. The clock and the
jitter are injected, so backoff is stepped through, never slept on."""

from __future__ import annotations

import pytest

from exporter.jobs.queue import Backoff
from tests.helpers.data import START_MS, FixedRandom
from tests.helpers.served import live_server

JOBS = "/api/v1/jobs"
LABELS = ("TASK", "charge")


@pytest.fixture
def server(tmp_path, store_url):
    """On SQLite and on PostgreSQL. Jitter 0.5: attempt n waits exactly
    0.75 * min(cap, base * 2**(n-1))."""
    with live_server(
        tmp_path, rng=FixedRandom(0.5), backoff_base=2.0, backoff_cap=6.0, store=store_url
    ) as live:
        yield live


def fail(server, job_id: str, retryable: bool = True, worker: str = "w1") -> dict:
    body = {"worker": worker, "error": "gateway timeout", "retryable": retryable}
    return server.step(job_id, "fail", body)


def test_retryable_failures_back_off_until_attempts_run_out(server):
    clock = server.clock
    job = server.create("TASK", "charge", maxAttempts=4)
    clock.advance(1)  # queue wait of the first start: 1 s

    waits = []
    for attempt in range(1, 5):
        leased = server.lease("w1")
        assert (leased["id"], leased["attempts"]) == (job["id"], attempt)
        clock.advance(3)  # each run takes 3 s
        after = fail(server, job["id"])
        if attempt == 4:
            break
        assert after["status"] == "pending"
        assert after["worker"] is None
        wait_ms = after["nextAttemptAt"] - clock.now_ms()
        waits.append(wait_ms)
        clock.advance(wait_ms / 1000 - 0.001)
        assert server.lease("w1") is None  # not due a millisecond early
        clock.advance(0.001)

    # base 2 s doubling, capped at 6 s, jittered to 3/4: 1.5 s, 3 s, then the cap's 4.5 s.
    assert waits == [1500, 3000, 4500]
    assert after["status"] == "failed"
    assert after["attempts"] == 4
    assert after["lastError"] == "gateway timeout"
    assert after["nextAttemptAt"] is None or after["nextAttemptAt"] < clock.now_ms()

    metrics = server.metrics()
    assert metrics.job("background_jobs_started_total", *LABELS) == 4
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="failed") == 4
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="completed") == 0
    assert metrics.job("background_jobs_retries_total", *LABELS, trigger="automatic") == 3
    assert metrics.job("background_jobs_retries_total", *LABELS, trigger="manual") == 0
    assert metrics.job("background_jobs_pending", *LABELS) == 0
    assert metrics.job("background_jobs_running", *LABELS) == 0
    assert metrics.job("background_jobs_duration_seconds_count", *LABELS) == 4
    assert metrics.job("background_jobs_duration_seconds_sum", *LABELS) == 12
    # Queue wait is observed on the first start only.
    assert metrics.job("background_jobs_queue_wait_seconds_count", *LABELS) == 1
    assert metrics.job("background_jobs_queue_wait_seconds_sum", *LABELS) == 1

    # A manual retry gives the failed job one more run, due at once.
    retried = server.step(job["id"], "retry")
    assert (retried["status"], retried["nextAttemptAt"]) == ("pending", clock.now_ms())
    assert server.metrics().job("background_jobs_pending", *LABELS) == 1
    leased = server.lease("w9")
    assert leased["attempts"] == 5
    clock.advance(1)
    done = server.step(job["id"], "complete", {"worker": "w9"})
    assert done["status"] == "completed"

    metrics = server.metrics()
    assert metrics.job("background_jobs_retries_total", *LABELS, trigger="manual") == 1
    assert metrics.job("background_jobs_started_total", *LABELS) == 5
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="completed") == 1
    assert metrics.job("background_jobs_pending", *LABELS) == 0
    assert metrics.job("background_jobs_queue_wait_seconds_count", *LABELS) == 1


def test_a_non_retryable_failure_ends_the_job_at_once(server):
    job = server.create("TASK", "charge", maxAttempts=5)
    server.lease("w1")
    after = fail(server, job["id"], retryable=False)
    assert (after["status"], after["attempts"]) == ("failed", 1)
    metrics = server.metrics()
    assert metrics.job("background_jobs_retries_total", *LABELS, trigger="automatic") == 0


def test_a_retry_that_is_not_due_lets_other_jobs_through(server):
    first = server.create("TASK", "charge")
    second = server.create("TASK", "charge")
    server.lease("w1")
    fail(server, first["id"])
    assert server.lease("w2")["id"] == second["id"]
    assert server.lease("w3") is None


def test_an_expired_lease_ends_the_run_lost_and_requeues(server):
    clock = server.clock
    job = server.create("TASK", "charge", maxAttempts=2)
    server.lease("w1", leaseSeconds=10)
    running = server.metrics()
    assert running.job("background_jobs_running", *LABELS) == 1
    oldest = running.job("background_jobs_oldest_start_timestamp_seconds", *LABELS)
    assert oldest == START_MS / 1000

    clock.advance(10)
    assert server.runtime.sweeper.leases() == 0  # expires after, not at, its end
    clock.advance(0.001)
    assert server.runtime.sweeper.leases() == 1
    assert server.runtime.sweeper.leases() == 0  # counted once

    after = server.get(f"{JOBS}/{job['id']}").json()
    assert (after["status"], after["lastError"], after["worker"]) == (
        "pending",
        "lease expired",
        None,
    )
    # The worker that lost its lease can no longer finish the run.
    late = server.post(f"{JOBS}/{job['id']}/complete", {"worker": "w1"})
    assert late.status_code == 409

    metrics = server.metrics()
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="lost") == 1
    assert metrics.job("background_jobs_duration_seconds_count", *LABELS) == 0
    assert metrics.job("background_jobs_retries_total", *LABELS, trigger="automatic") == 1
    assert metrics.job("background_jobs_running", *LABELS) == 0
    assert (
        metrics.value(
            "background_jobs_oldest_start_timestamp_seconds",
            source="api",
            type="TASK",
            name="charge",
        )
        is None
    )
    assert metrics.job("background_jobs_pending", *LABELS) == 1

    # Its last attempt lost too: no attempts remain, so the job fails.
    clock.advance(after["nextAttemptAt"] / 1000 - clock.now_ms() / 1000)
    assert server.lease("w2", leaseSeconds=5)["attempts"] == 2
    clock.advance(6)
    assert server.runtime.sweeper.leases() == 1
    final = server.get(f"{JOBS}/{job['id']}").json()
    assert (final["status"], final["lastError"]) == ("failed", "lease expired")
    metrics = server.metrics()
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="lost") == 2
    assert metrics.job("background_jobs_pending", *LABELS) == 0
    assert metrics.job("background_jobs_started_total", *LABELS) == 2


def test_an_expired_lease_is_not_held_even_before_the_sweep(server):
    job = server.create("TASK", "charge")
    server.lease("w1", leaseSeconds=5)
    server.clock.advance(6)
    response = server.post(f"{JOBS}/{job['id']}/heartbeat", {"worker": "w1"})
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "worker"


def test_heartbeats_keep_a_long_run_alive(server):
    job = server.create("TASK", "charge")
    server.lease("w1", leaseSeconds=5)
    for _ in range(10):
        server.clock.advance(4)
        server.step(job["id"], "heartbeat", {"worker": "w1", "leaseSeconds": 5})
        assert server.runtime.sweeper.leases() == 0
    done = server.step(job["id"], "complete", {"worker": "w1"})
    assert done["finishedAt"] - done["startedAt"] == 40_000
    metrics = server.metrics()
    assert metrics.job("background_jobs_duration_seconds_sum", *LABELS) == 40
    assert metrics.job("background_jobs_finished_total", *LABELS, outcome="lost") == 0


def test_the_series_cap_folds_api_job_names(tmp_path):
    with live_server(tmp_path, max_series_per_source=2) as server:
        for name in ("a", "b", "c", "d"):
            server.create("TASK", name)
        metrics = server.metrics()
        assert metrics.job("background_jobs_pending", "TASK", "a") == 1
        assert metrics.job("background_jobs_pending", "TASK", "b") == 1
        assert metrics.job("background_jobs_pending", "TASK", "__other__") == 2
        assert metrics.value("job_exporter_folded_jobs_total", source="api") == 2
        # The job keeps its real name; only its labels fold.
        names = {job["name"] for job in server.get(JOBS).json()["jobs"]}
        assert names == {"a", "b", "c", "d"}


def test_counts_and_jobs_survive_a_restart(tmp_path):
    with live_server(tmp_path, rng=FixedRandom(0.5)) as server:
        job = server.create("TASK", "charge")
        server.lease("w1")
        fail(server, job["id"])
        before = server.metrics().samples
        clock_ms = server.clock.now_ms()
    from exporter.clock import ManualClock

    with live_server(tmp_path, clock=ManualClock(clock_ms)) as again:
        assert again.get(f"{JOBS}/{job['id']}").json()["status"] == "pending"
        after = again.metrics().samples
        job_samples = {k: v for k, v in before.items() if k[0].startswith("background_jobs")}
        assert {k: after.get(k) for k in job_samples} == job_samples


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected_ms"),
    [
        (1, 0.0, 500),  # half of the nominal 1 s at the least
        (1, 1.0, 1000),  # all of it at the most
        (3, 0.5, 3000),  # nominal 4 s
        (20, 1.0, 300_000),  # never beyond the cap
    ],
)
def test_backoff_doubles_with_jitter_up_to_the_cap(attempt, jitter, expected_ms):
    assert Backoff(base_s=1.0, cap_s=300.0).delay_ms(attempt, jitter) == expected_ms


def test_finished_jobs_are_forgotten_after_retention_but_stay_counted(tmp_path):
    with live_server(tmp_path, retention_days=1) as server:
        done = server.create("TASK", "charge")
        server.lease("w1")
        server.step(done["id"], "complete", {"worker": "w1"})
        waiting = server.create("TASK", "charge")
        server.clock.advance(24 * 3600)
        assert server.runtime.sweeper.finished_api_jobs() == 0  # kept for the whole day
        server.clock.advance(1)
        assert server.runtime.sweeper.finished_api_jobs() == 1
        assert server.get(f"{JOBS}/{done['id']}").status_code == 404
        assert server.get(f"{JOBS}/{waiting['id']}").json()["status"] == "pending"
        metrics = server.metrics()
        assert metrics.job("background_jobs_finished_total", *LABELS, outcome="completed") == 1
        assert metrics.job("background_jobs_pending", *LABELS) == 1
