"""The Dramatiq broker and actors the integration tests run (`dramatiq tests.apps.dramatiq_actors`).

Like a user's module, it builds the broker and adds the middleware at import; the broker and
the exporter come from `TEST_DRAMATIQ_BROKER` and `TEST_EXPORTER_URL`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from exporter.integrations.dramatiq import JobExporterMiddleware

WAIT_LIMIT_S = 120

broker = RedisBroker(url=os.environ["TEST_DRAMATIQ_BROKER"])
broker.add_middleware(
    JobExporterMiddleware(
        os.environ["TEST_EXPORTER_URL"],
        source="dramatiq",
        flush_interval=float(os.environ.get("TEST_FLUSH_INTERVAL", "0.05")),
    )
)
dramatiq.set_broker(broker)


class Boom(Exception):
    """The failure the tests expect to read back as the run's error."""


@dramatiq.actor(queue_name="work", max_retries=0)
def add(x: int, y: int) -> None:
    if x + y < 0:
        raise ValueError("negative")


@dramatiq.actor(queue_name="parked", max_retries=0)
def later(x: int) -> None:
    """On a queue of its own, which the tests leave unread for a while."""


@dramatiq.actor(queue_name="work", max_retries=0)
def fail(message: str) -> None:
    raise Boom(message)


@dramatiq.actor(queue_name="work", max_retries=2, min_backoff=1, max_backoff=1)
def always_fails(message: str) -> None:
    """Retried twice, then failed for good: three runs."""
    raise Boom(message)


@dramatiq.actor(queue_name="work", max_retries=5, min_backoff=1, max_backoff=1)
def flaky(folder: str, name: str, fail_times: int) -> None:
    """Fails `fail_times` times, then succeeds; counts its runs in `folder/name.runs`."""
    runs = Path(folder) / f"{name}.runs"
    done = int(runs.read_text()) if runs.exists() else 0
    runs.write_text(str(done + 1))
    if done < fail_times:
        raise Boom(f"attempt {done + 1} failed")


@dramatiq.actor(queue_name="work", max_retries=1, min_backoff=600_000, max_backoff=600_000)
def retry_later(message: str) -> None:
    """Fails, and its one retry waits ten minutes: long after the test has looked."""
    raise Boom(message)


@dramatiq.actor(queue_name="work", max_retries=0, time_limit=WAIT_LIMIT_S * 1000)
def hold(folder: str, name: str) -> None:
    """Runs until `folder/name.release` exists, after writing `name.started`."""
    base = Path(folder)
    (base / f"{name}.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not (base / f"{name}.release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was never released")
        time.sleep(0.01)  # a task that runs slowly on purpose
