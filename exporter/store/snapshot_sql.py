"""Reading every count for a snapshot: the same SQL on SQLite and PostgreSQL.

Both drivers' connections answer `execute(sql)` with an iterable of row tuples, and these
queries take no parameters, so one reader serves both stores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any, Protocol

from exporter.model.counts import CountKind
from exporter.model.queue import API_SOURCE
from exporter.store.base import RunningStats, SeriesKey, Snapshot
from exporter.store.schedule_rows import SELECT_ALL, row_to_schedule


class Queryable(Protocol):
    def execute(self, sql: str) -> Any: ...


# Running jobs per series: every run counted started is running until it is counted
# finished, once, under the same labels, so the count comes from the counts already read.
# The oldest start takes one index seek per series, where grouping every running job took
# several times as long and grew with the store (docs/benchmarks.md).
_OLDEST_RUNNING = f"""
    SELECT c.source, c.type, c.name,
        (SELECT MIN(j.start_ms) FROM jobs j
          WHERE j.source = c.source AND j.label_type = c.type AND j.label_name = c.name
            AND j.outcome IS NULL AND j.waiting = 0)
    FROM counts c WHERE c.family = '{CountKind.STARTED}' AND c.source <> '{API_SOURCE}'
"""


def _running(counts: dict[tuple[str, str], float]) -> int:
    finished = sum(value for (family, _), value in counts.items() if family == CountKind.FINISHED)
    return int(counts.get((CountKind.STARTED, ""), 0) - finished)


def read_snapshot(db: Queryable, version: Hashable) -> Snapshot:
    """All counts, running stats and tracked jobs; run it inside one read transaction."""
    series: dict[tuple[str, str, str], dict[tuple[str, str], float]] = defaultdict(dict)
    health: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    rows: Iterable[tuple] = db.execute(
        "SELECT source, type, name, family, label, value FROM counts"
    )
    # Each row brings its own strings and number: one shared (family, label) key for all
    # series, one (source, type, name) key for both maps and one float per distinct count
    # keep the series in a fraction of the memory (docs/benchmarks.md).
    shared: dict[Hashable, Any] = {}
    for source, job_type, name, family, label, value in rows:
        key = (family, label)
        key = shared.setdefault(key, key)
        value = shared.setdefault(value, value)  # no key above is a number: no clash
        if job_type or name:
            series[(source, job_type, name)][key] = value
        else:
            health[source][key] = value
    series_keys = {key: key for key in series}
    running: dict[SeriesKey, RunningStats] = {}
    for source, job_type, name, oldest in db.execute(_OLDEST_RUNNING):
        if oldest is not None:
            series_key = (source, job_type, name)
            series_key = series_keys.get(series_key, series_key)
            running[series_key] = RunningStats(_running(series.get(series_key, {})), oldest)
    for job_type, name, count, oldest in db.execute(
        "SELECT label_type, label_name, COUNT(*), MIN(started_ms) FROM queue_jobs"
        " WHERE status = 'running' GROUP BY label_type, label_name"
    ):
        running[(API_SOURCE, job_type, name)] = RunningStats(count, oldest)
    # Kept in the transaction of every insert and delete of a job row: counting them here
    # scanned every retained job on every snapshot (issue 23).
    tracked = dict(db.execute("SELECT source, jobs FROM tracked_counts WHERE jobs > 0").fetchall())
    schedules = tuple(row_to_schedule(row) for row in db.execute(SELECT_ALL))
    return Snapshot(version, dict(series), dict(health), running, tracked, schedules)
