"""Scrapes that decode only the items whose bytes changed must count exactly what decoding
every item counts.

The reference is the plain path, `decode_jobs` and `Ingestor.ingest` over the whole list,
run on a second store side by side; both stores are real SQLite files.
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import hypothesis
import hypothesis.strategies as st
import msgspec
import pytest

import exporter.tracking.ingest as ingest_module
import exporter.tracking.listing as listing_module
from exporter.model.counts import CountKind
from exporter.store import StoreError, open_store
from exporter.tracking.decode import decode_jobs
from exporter.tracking.ingest import Ingestor, TrackingRules
from exporter.tracking.listing import Listing
from exporter.tracking.plan import LabelGuard

NOW = 1_700_000_000_000.0
SOURCE = "app"
_dbs = itertools.count()


def item(job_id: str, state: str = "running", name: str = "send", **extra: Any) -> dict:
    body = {
        "id": job_id,
        "name": name,
        "startTimestamp": NOW - 60_000,
        "backgroundJobType": "TASK",
        "isFinished": state != "running",
    }
    if state != "running":
        body["status"] = state
    return body | extra


def encode(items: list[dict]) -> bytes:
    return msgspec.json.encode(items)


class Pair:
    """Two ingestors on two stores: one scraping by listing, one decoding every item."""

    def __init__(self, folder, retention_ms: float = 7 * 24 * 3600 * 1000) -> None:
        n = next(_dbs)
        self.stores = [open_store(f"sqlite:///{folder}/{side}-{n}.db") for side in "ab"]
        rules = TrackingRules(guard=LabelGuard(4), retention_ms=retention_ms)
        self.by_listing, self.whole = (Ingestor(store, rules) for store in self.stores)
        self.decoded_items: list[int] = []

    def scrape(self, body: bytes, now_ms: float) -> None:
        decoded = self.by_listing.ingest_listing(SOURCE, Listing.split(body), now_ms)
        self.decoded_items.append(len(decoded.jobs) + len(decoded.errors))
        whole = decode_jobs(body, now_ms)
        self.whole.ingest(
            SOURCE,
            whole.jobs,
            now_ms,
            complete_list=True,
            invalid_by_field=whole.invalid_by_field(),
        )

    def prune(self, now_ms: float) -> list[int]:
        """The retention timer's run on both sides; how many jobs each pruned."""
        return [side.prune(SOURCE, now_ms, listed=True) for side in (self.by_listing, self.whole)]

    def assert_same(self) -> None:
        listed, whole = (store.snapshot() for store in self.stores)
        assert listed.series == whole.series
        assert listed.health == whole.health
        assert sorted(self.stores[0].tracked_jobs(SOURCE)) == sorted(
            self.stores[1].tracked_jobs(SOURCE)
        )

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def pair(tmp_path):
    both = Pair(tmp_path)
    yield both
    both.close()


_ids = st.sampled_from([f"j{i}" for i in range(6)])
_items = st.builds(
    lambda job_id, state, name, broken: (
        item(job_id, state, name) | ({"isFinished": "yes"} if broken else {})
    ),
    _ids,
    st.sampled_from(["running", "running", "completed", "failed"]),
    st.sampled_from(["send", "bill"]),
    st.sampled_from([False, False, False, True]),  # some items carry an invalid field
)


@st.composite
def _scrapes(draw: st.DrawFn) -> list[list[dict]]:
    """Listings that mostly move on a little from the one before (an item changed, added,
    removed or repeated), sometimes start afresh: duplicates, invalid items and jobs
    coming back after an absence all occur."""
    listings = [draw(st.lists(_items, max_size=7))]
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        last = list(listings[-1])
        step = draw(st.sampled_from(["same", "change", "add", "remove", "repeat", "fresh"]))
        if step == "fresh" or not last:
            last = draw(st.lists(_items, max_size=7))
        elif step == "change":
            last[draw(st.integers(0, len(last) - 1))] = draw(_items)
        elif step == "add":
            last.insert(draw(st.integers(0, len(last))), draw(_items))
        elif step == "remove":
            del last[draw(st.integers(0, len(last) - 1))]
        elif step == "repeat":
            last.append(last[draw(st.integers(0, len(last) - 1))])
        listings.append(last)
    return listings


@pytest.mark.parametrize("match", ["by place", "by lookup"])
@hypothesis.settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(scrapes=_scrapes(), compactions=st.lists(st.booleans(), min_size=7))
def test_decoding_only_changed_items_counts_what_decoding_all_counts(
    tmp_path, monkeypatch, match: str, scrapes: list[list[dict]], compactions: list[bool]
) -> None:
    """Compactions (compaction.py) fall between some scrapes: they must change nothing."""
    monkeypatch.setattr(listing_module, "by_lookup", lambda differ, size: match == "by lookup")
    monkeypatch.setattr(ingest_module, "COMPACT_FROM_JOBS", 1)
    pair = Pair(tmp_path)
    try:
        for n, (items, compacts) in enumerate(zip(scrapes, compactions, strict=False)):
            pair.scrape(encode(items), NOW + n * 1000)
            if compacts:
                pair.by_listing.compact_due()
            pair.assert_same()
    finally:
        pair.close()


def test_a_steady_scrape_decodes_only_the_items_that_changed(pair: Pair) -> None:
    items = [item(f"j{i}") for i in range(50)]
    pair.scrape(encode(items), NOW)
    items[7] = item("j7", "completed")
    items[30] = item("j30", "failed")
    del items[40]  # gone: lost after a second absence
    pair.scrape(encode(items), NOW + 1000)
    pair.scrape(encode(items), NOW + 2000)
    assert pair.decoded_items == [50, 2, 0]
    counts = pair.stores[0].snapshot().series
    finished = {
        (key[2], name): value
        for key, values in counts.items()
        for name, value in values.items()
        if name[0] == CountKind.FINISHED
    }
    assert finished == {
        ("send", (CountKind.FINISHED, "completed")): 1,
        ("send", (CountKind.FINISHED, "failed")): 1,
        ("send", (CountKind.FINISHED, "lost")): 1,
    }
    pair.assert_same()


def test_a_job_listed_twice_beside_its_unchanged_item_is_settled_over_the_whole_list(
    pair: Pair,
) -> None:
    """The last occurrence wins; only the whole list says which one is last."""
    items = [item("a"), item("b")]
    pair.scrape(encode(items), NOW)
    pair.scrape(encode([item("a", "completed"), *items]), NOW + 1000)  # running comes last
    pair.assert_same()
    assert pair.decoded_items[-1] == 3
    pair.scrape(encode([*items, item("a", "completed")]), NOW + 2000)  # now finished last
    pair.assert_same()
    started = sum(
        v.get((CountKind.STARTED, ""), 0) for v in pair.stores[0].snapshot().series.values()
    )
    assert started == 2


def test_an_unchanged_invalid_item_is_counted_on_every_scrape(pair: Pair) -> None:
    items = [item("a"), item("b", isFinished="yes")]
    for n in range(3):
        pair.scrape(encode(items), NOW + n * 1000)
    invalid = pair.stores[0].snapshot().health[SOURCE][(CountKind.INVALID_JOBS, "isFinished")]
    assert invalid == 3
    assert pair.decoded_items == [2, 1, 1]
    pair.assert_same()


def test_a_failed_write_leaves_the_next_scrape_to_decode_every_item(pair: Pair, monkeypatch):
    items = [item(f"j{i}") for i in range(5)]
    pair.scrape(encode(items), NOW)
    items[0] = item("j0", "completed")

    def refuse(*args, **kwargs):
        raise StoreError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(pair.stores[0], "apply", refuse)
        with pytest.raises(StoreError):
            pair.by_listing.ingest_listing(SOURCE, Listing.split(encode(items)), NOW + 1000)
    pair.scrape(encode(items), NOW + 2000)
    assert pair.decoded_items == [5, 5]
    pair.assert_same()


def test_the_retention_prune_keeps_finished_jobs_whose_unchanged_items_are_listed(tmp_path):
    pair = Pair(tmp_path, retention_ms=1000)
    try:
        items = [item("done", "completed"), item("busy"), item("gone", "completed")]
        pair.scrape(encode(items), NOW)
        pruned = []
        for n in range(1, 4):  # each a minute on, past the retention of what came before
            items[1] = item("busy", name=f"step-{n}")
            pair.scrape(encode(items[:2]), NOW + n * 61_000)
            pruned.append(pair.prune(NOW + n * 61_000))
            pair.assert_same()
        assert pruned == [[1, 1], [0, 0], [0, 0]]  # "gone" only: "done" is still listed
        # The prune left the listing's memo standing: the next scrapes decoded one item each.
        assert pair.decoded_items == [3, 1, 1, 1]
        kept = {row.id for row in pair.stores[0].tracked_jobs(SOURCE)}
        assert kept == {"done", "busy"}
    finally:
        pair.close()


@hypothesis.settings(max_examples=200, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    old=st.lists(st.integers(0, 3), max_size=80),
    new=st.lists(st.integers(0, 3), max_size=80),
    block=st.sampled_from([1, 4, 16]),
)
def test_differing_places_are_found_block_by_block_as_one_by_one(old, new, block) -> None:
    found = listing_module._differing_places(array("Q", new), array("Q", old), block)
    assert found == [i for i, (a, b) in enumerate(zip(new, old, strict=False)) if a != b]
