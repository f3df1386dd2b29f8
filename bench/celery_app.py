"""The Celery app the Celery benchmarks run in real workers (`celery -A bench.celery_app`).

Instrumented only when `BENCH_EXPORTER_URL` is set, so one module serves every side of a
comparison; the broker comes from `BENCH_CELERY_BROKER`. `tick` is the trivial task of the
throughput benchmark: each run counts itself in Redis, and the first and last runs note the
time, so a rate is measured inside the worker, with its start-up left out.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery("bench.celery_app", broker=os.environ["BENCH_CELERY_BROKER"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)
if os.environ.get("BENCH_EXPORTER_URL"):
    from exporter.integrations.celery import instrument

    instrument(app, os.environ["BENCH_EXPORTER_URL"], source="bench")

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["BENCH_CELERY_BROKER"])
    return _redis


@app.task
def tick(total: int, key: str) -> None:
    done = _client().incr(key)
    if done == 1:
        _client().set(f"{key}:first", time.time())
    if done == total:
        _client().set(f"{key}:last", time.time())


class Boom(Exception):
    """The failure of the comparison workload."""


@app.task
def succeed() -> None:
    pass


@app.task
def fail() -> None:
    raise Boom("failed on purpose")


@app.task(bind=True, max_retries=5)
def retry_twice(self) -> None:
    """Fails twice, each time asking for a retry, then succeeds: three runs."""
    try:
        if self.request.retries < 2:
            raise Boom(f"attempt {self.request.retries + 1} failed")
    except Boom as exc:
        raise self.retry(exc=exc, countdown=0) from exc
