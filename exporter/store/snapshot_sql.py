"""Reading every count for a snapshot: the same SQL on SQLite and PostgreSQL.

Both drivers' connections answer `execute(sql)` with an iterable of row tuples, and these
queries take no parameters, so one reader serves both stores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any, Protocol

from exporter.queue_records import API_SOURCE
from exporter.store.base import RunningStats, Snapshot


class Queryable(Protocol):
    def execute(self, sql: str) -> Any: ...


def read_snapshot(db: Queryable, version: Hashable) -> Snapshot:
    """All counts, running stats and tracked jobs; run it inside one read transaction."""
    series: dict[tuple[str, str, str], dict[tuple[str, str], float]] = defaultdict(dict)
    health: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    rows: Iterable[tuple] = db.execute(
        "SELECT source, type, name, family, label, value FROM counts"
    )
    for source, job_type, name, family, label, value in rows:
        if job_type or name:
            series[(source, job_type, name)][(family, label)] = value
        else:
            health[source][(family, label)] = value
    running = {
        (source, job_type, name): RunningStats(count, oldest)
        for source, job_type, name, count, oldest in db.execute(
            "SELECT source, label_type, label_name, COUNT(*), MIN(start_ms) FROM jobs"
            " WHERE outcome IS NULL GROUP BY source, label_type, label_name"
        )
    }
    for job_type, name, count, oldest in db.execute(
        "SELECT label_type, label_name, COUNT(*), MIN(started_ms) FROM queue_jobs"
        " WHERE status = 'running' GROUP BY label_type, label_name"
    ):
        running[(API_SOURCE, job_type, name)] = RunningStats(count, oldest)
    tracked = dict(db.execute("SELECT source, COUNT(*) FROM jobs GROUP BY source").fetchall())
    (queued,) = db.execute("SELECT COUNT(*) FROM queue_jobs").fetchone()
    if queued:
        tracked[API_SOURCE] = queued
    return Snapshot(version, dict(series), dict(health), running, tracked)
