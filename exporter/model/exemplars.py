"""Exemplars: per histogram bucket, the latest job whose observation landed there.

OpenMetrics lets a bucket line carry one exemplar, `# {job_id="..."} VALUE TIMESTAMP`, so
a dashboard can jump from a slow bucket to a job that was that slow. Which job that was is
known only where the observation is made (a scrape, a push, a job-API run) and is not worth
a store write per bucket, so each process keeps its own in memory: with several replicas on
one store, only the replica that ingested a job shows its exemplar, and a restart starts
with none. Kept per series and bucket (one each), the board holds at most the series the
label guard admits (`--max-series` in all) times their buckets.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import NamedTuple

EXEMPLAR_LABEL = "job_id"  # the label dashboards link on: a contract with their datasource
# OpenMetrics: an exemplar's label names and values together are at most 128 characters
# (Prometheus counts runes, as len() counts code points). A longer id is left out rather
# than cut: a truncated id would name another job, or none.
MAX_LABEL_CHARS = 128
MAX_ID_CHARS = MAX_LABEL_CHARS - len(EXEMPLAR_LABEL)
# Prometheus stores an exemplar's label values as written, escapes included: its
# OpenMetrics parser unescapes the series' labels only (2.42 does, and its later source
# reads the same). An id with a backslash, a double quote or a line feed would come back
# from Prometheus as another string, so such ids are left out too.
_ESCAPED = ("\\", '"', "\n")

SeriesKey = tuple[str, str, str]  # source, type, name


class Exemplar(NamedTuple):
    """One observation: the job, the value observed (seconds), and when the exporter
    observed it (seconds since the epoch, to the millisecond). The observation time, not the
    job's own finish: Prometheus drops an exemplar older than the last one it stored for the
    same bucket series, and a job first seen long after it finished would be one."""

    job_id: str
    value: float
    at_s: float


# What one write observed: the latest per (type, name, bucket family, bucket label).
ExemplarDeltas = dict[tuple[str, str, str, str], Exemplar]  # a CountKey each


def fits(job_id: str) -> bool:
    """Whether `job_id` can be an exemplar's label value and come back from Prometheus as
    itself (see MAX_ID_CHARS and _ESCAPED)."""
    return len(job_id) <= MAX_ID_CHARS and not any(char in job_id for char in _ESCAPED)


def exemplar_of(job_id: str, seconds: float, at_ms: float) -> Exemplar:
    return Exemplar(job_id, seconds, round(at_ms) / 1000)


# A series' exemplars: per bucket family (CountKind.*_BUCKET), one per bucket bound in
# order (+Inf last), None where the bucket has none.
SeriesExemplars = Mapping[str, tuple[Exemplar | None, ...]]


class ExemplarBoard:
    """Thread-safe exemplars of this process, per series; `version` changes with any.

    Writers record what a write observed only once that write is committed, so an
    exemplar never names a job whose counts were not stored; the /metrics cache keys on
    `version` as well as the store's, so a new exemplar shows from the next scrape on.

    Kept as /metrics reads them, one tuple per histogram in bucket order, so a page of
    2,000 series pays two lookups per series for them. Each series' entry is replaced,
    never changed, so a reader's `current()` is a shallow copy taken once per change, not
    once per scrape."""

    def __init__(self, bucket_labels: tuple[str, ...]) -> None:
        self._places = {label: place for place, label in enumerate(bucket_labels)}
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, SeriesExemplars] = {}
        self._copy: Mapping[SeriesKey, SeriesExemplars] = {}
        self._copied = 0
        self.version = 0

    def record(self, source: str, deltas: ExemplarDeltas) -> None:
        """The latest observations of one committed write of `source`; an exemplar
        replaces an earlier one of its bucket unless it was observed earlier still (a
        write that committed late does not take a bucket back in time)."""
        if not deltas:
            return
        width = len(self._places)
        with self._lock:
            changed: dict[SeriesKey, dict[str, list[Exemplar | None]]] = {}
            for (job_type, name, family, label), exemplar in deltas.items():
                place = self._places.get(label)
                if place is None:
                    continue  # not a bucket of this layout
                key = (source, job_type, name)
                histograms = changed.get(key)
                if histograms is None:
                    before = self._series.get(key, {})
                    histograms = changed[key] = {f: list(row) for f, row in before.items()}
                row = histograms.get(family)
                if row is None:
                    row = histograms[family] = [None] * width
                earlier = row[place]
                if earlier is None or earlier.at_s <= exemplar.at_s:
                    row[place] = exemplar
            for key, histograms in changed.items():
                self._series[key] = {family: tuple(row) for family, row in histograms.items()}
            self.version += 1

    def current(self) -> tuple[int, Mapping[SeriesKey, SeriesExemplars]]:
        """The version and every series' exemplars as of it (not to be changed)."""
        with self._lock:
            if self._copied != self.version:
                self._copy = dict(self._series)
                self._copied = self.version
            return self.version, self._copy
