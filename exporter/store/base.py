"""The store interface: everything a restart must not lose, behind one protocol.

Implementations own SQL and transactions and nothing else: they never decide what a job's
state means (the tracker does) and never speak HTTP.
"""

from __future__ import annotations

from collections.abc import Container, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.counts import CountDeltas
from exporter.records import Plan, SourceIndex

SeriesKey = tuple[str, str, str]  # (source, type, name)
CountName = tuple[str, str]  # (family, label)


class StoreError(RuntimeError):
    """The store could not do what was asked (unreachable, locked too long, corrupt)."""


class StaleIndex(StoreError):
    """Someone else wrote this source since the index was loaded: reload and plan again."""


@dataclass(frozen=True)
class Prune:
    """Delete finished jobs counted before `before_ms`, except those the source still lists."""

    before_ms: float
    still_listed: Container[str] = frozenset()


@dataclass(frozen=True)
class RunningStats:
    count: int
    oldest_start_ms: float


@dataclass(frozen=True)
class Snapshot:
    """Every stored count, grouped for the collector; `version` changes with any write."""

    version: Hashable
    series: dict[SeriesKey, dict[CountName, float]] = field(default_factory=dict)
    health: dict[str, dict[CountName, float]] = field(default_factory=dict)
    running: dict[SeriesKey, RunningStats] = field(default_factory=dict)
    tracked: dict[str, int] = field(default_factory=dict)


class Store(Protocol):
    def load_index(self, source: str) -> SourceIndex:
        """What the store knows of one source's jobs, for the tracker to plan against."""
        ...

    def apply(self, index: SourceIndex, plan: Plan, prune: Prune | None = None) -> list[str]:
        """Write `plan` in one transaction if the source is still at `index.generation`.

        On success the index is brought up to date and the ids of pruned jobs are returned.
        Raises StaleIndex (nothing written) when another writer got there first.
        """
        ...

    def add_counts(self, source: str, deltas: CountDeltas) -> None:
        """Add to stored counts outside any job change (health counters)."""
        ...

    def snapshot(self) -> Snapshot:
        """All counts as of now; cheap when nothing changed since the last call."""
        ...

    def ping(self) -> None:
        """Raise StoreError unless the store answers a trivial query."""
        ...

    def close(self) -> None: ...
