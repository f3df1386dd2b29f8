"""RQ tasks the RQ source's tests enqueue and a real `rq worker` runs.

The app has no code of ours: the exporter reads RQ's own registries. Tasks that must wait
for the test (a slow one, one to be killed) block on a Redis list instead of sleeping, so the
test decides when they end; they find Redis through the job RQ is running.
"""

from __future__ import annotations

import os

from redis import Redis
from rq import get_current_job


def _redis() -> Redis:
    job = get_current_job()
    assert job is not None, "run by an RQ worker"
    return job.connection


def succeed(value: int) -> int:
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def flaky(key: str, failures: int) -> str:
    """Fails its first `failures` runs (counted in Redis under `key`), then succeeds."""
    runs = _redis().incr(f"test:flaky:{key}")
    if runs <= failures:
        raise RuntimeError(f"flaky run {runs} of {key} failed")
    return f"succeeded on run {runs}"


def gated_flaky(gate: str, failures: int) -> str:
    """Like `flaky`, but each run first waits for the test to push to the list `gate`, so the
    test sees every run running before it ends."""
    connection = _redis()
    connection.blpop([gate], timeout=60)
    runs = connection.incr(f"test:flaky:{gate}")
    if runs <= failures:
        raise RuntimeError(f"gated run {runs} failed")
    return f"succeeded on run {runs}"


def behind(value: int) -> int:
    """Queued behind a slow task (its own name, so its counts are its own)."""
    return value


def noop() -> None:
    return None


def slow(release: str) -> str:
    """Runs until the test pushes to the list `release` (at most a minute)."""
    _redis().blpop([release], timeout=60)
    return "released"


def doomed(pids: str) -> None:
    """Reports its work-horse's pid on the list `pids`, then waits to be killed."""
    connection = _redis()
    connection.rpush(pids, os.getpid())
    connection.blpop([f"{pids}:never"], timeout=120)
