"""The one path from observed jobs to the store, for scrapes and pushes alike.

It keeps each source's index in memory (loaded from the store on first use), plans the
changes with the tracker, writes them in one transaction, and replans once more if another
writer moved the source on in between. One lock per source keeps a scrape and a push of the
same source from planning against the same index at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.counts import INVALID_JOBS, Buckets
from exporter.models import JobInfo
from exporter.records import Plan, SourceIndex
from exporter.store import Prune, StaleIndex, Store, StoreError
from exporter.tracker import LabelGuard, plan_changes, plan_timeouts

PRUNE_EVERY_MS = 60_000
WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class TrackingRules:
    """How observed jobs become counts: cardinality cap, buckets, retention."""

    guard: LabelGuard = field(default_factory=LabelGuard)
    buckets: Buckets = field(default_factory=Buckets)
    retention_ms: float = 7 * 24 * 3600 * 1000


class Ingestor:
    def __init__(self, store: Store, rules: TrackingRules | None = None) -> None:
        self.store = store
        self.rules = rules or TrackingRules()
        self._indexes: dict[str, SourceIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._last_prune_ms: dict[str, float] = {}

    def ingest(
        self,
        source: str,
        jobs: Sequence[JobInfo],
        now_ms: float,
        *,
        complete_list: bool,
        invalid_by_field: Mapping[str, int] | None = None,
    ) -> Plan:
        """Apply observed jobs (a scrape's complete list, or a push) in one transaction.

        Returns the plan that was written. Raises StoreError when nothing could be written;
        then neither the store nor the index changed.
        """
        invalid = Counter(
            {("", "", INVALID_JOBS, f): n for f, n in (invalid_by_field or {}).items()}
        )

        def planner(index: SourceIndex) -> Plan:
            plan = plan_changes(
                index, jobs, now_ms,
                complete_list=complete_list,
                guard=self.rules.guard,
                buckets=self.rules.buckets,
            )  # fmt: skip
            plan.counts.update(invalid)
            return plan

        def prune_for(plan: Plan) -> Prune | None:
            if now_ms - self._last_prune_ms.get(source, 0) < PRUNE_EVERY_MS:
                return None
            still_listed = {job.id for job in jobs} if complete_list else frozenset()
            return Prune(before_ms=now_ms - self.rules.retention_ms, still_listed=still_listed)

        with self._lock_of(source):
            plan, pruned = self._write(source, planner, prune_for)
            if pruned:
                self._last_prune_ms[source] = now_ms
            return plan

    def expire_running(self, source: str, started_before_ms: float, now_ms: float) -> Plan:
        """Count a pushed source's jobs still running since before the cutoff as lost."""
        with self._lock_of(source):
            plan, _ = self._write(
                source,
                lambda index: plan_timeouts(index, started_before_ms, now_ms),
                lambda plan: None,
            )
            return plan

    def _write(
        self,
        source: str,
        planner: Callable[[SourceIndex], Plan],
        prune_for: Callable[[Plan], Prune | None],
    ) -> tuple[Plan, bool]:
        """Plan against the index and write; replan when another writer moved the source
        on. Returns the plan and whether it pruned. The caller holds the source's lock."""
        for _ in range(WRITE_ATTEMPTS):
            index = self._index_of(source)
            plan = planner(index)
            prune = prune_for(plan)
            if plan.empty and prune is None:
                return plan, False
            try:
                self.store.apply(index, plan, prune)
            except StaleIndex:
                del self._indexes[source]  # another writer moved on: reload, plan again
                continue
            return plan, prune is not None
        raise StoreError(f"source {source!r} kept changing under this write")

    def tracked(self) -> dict[str, int]:
        """Jobs each loaded index holds."""
        return {name: index.tracked for name, index in self._indexes.items()}

    def _index_of(self, source: str) -> SourceIndex:
        index = self._indexes.get(source)
        if index is None:
            index = self._indexes[source] = self.store.load_index(source)
        return index

    def _lock_of(self, source: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(source, threading.Lock())
