"""The reader behind /metrics and /readyz (exporter/metrics/reader.py): a hung store costs a
request at most the budget, and requests behind a read already overdue nothing."""

from __future__ import annotations

import threading
import time

from exporter.metrics.reader import SnapshotReader
from exporter.store import Snapshot, StoreError
from tests.helpers.waiting import poll


class HangingStore:
    """A store whose reads wait for `release` while `hang` is set."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.release = threading.Event()
        self.fail = False
        self.reads = 0

    def snapshot(self) -> Snapshot:
        self.reads += 1
        if self.hang.is_set():
            self.release.wait(timeout=10)
        if self.fail:
            raise StoreError("down", "unavailable")
        return Snapshot(version=self.reads)


def timed(reader: SnapshotReader) -> tuple[Snapshot | None, bool, float]:
    started = time.monotonic()
    snapshot, fresh = reader.read()
    return snapshot, fresh, time.monotonic() - started


def test_a_hung_store_costs_the_budget_once_and_nothing_after():
    store = HangingStore()
    reader = SnapshotReader(store, budget_s=0.3)  # type: ignore[arg-type]
    try:
        first, fresh, _ = timed(reader)
        assert fresh and first is not None
        store.hang.set()
        stale, fresh, took = timed(reader)
        assert (stale, fresh) == (first, False)
        assert 0.3 <= took < 1.0
        behind = [timed(reader) for _ in range(10)]  # the read is overdue: answer at once
        assert all(snapshot == first and not fresh for snapshot, fresh, _ in behind)
        assert max(took for _, _, took in behind) < 0.1
        store.hang.clear()
        store.release.set()  # the store answers again: fresh counts as soon as the hung read ends
        later, fresh = poll(reader.read, until=lambda answer: answer[1], timeout=2)
        assert fresh and later is not None and later.version > first.version
    finally:
        reader.close()


def test_a_failing_store_answers_the_last_counts_marked_stale():
    store = HangingStore()
    reader = SnapshotReader(store, budget_s=0.3)  # type: ignore[arg-type]
    try:
        first, fresh, _ = timed(reader)
        store.fail = True
        again, fresh, took = timed(reader)
        assert (again, fresh) == (first, False) and took < 0.3
    finally:
        reader.close()
