"""The leases that give each scraped source one owner among the replicas, on both stores
and on an injected clock (the process test is tests/test_replicas_owners.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.clock import ManualClock
from exporter.sources.owners import LEASE_INTERVALS, SourceLeases
from exporter.store import Store, open_store

INTERVAL_S = 10.0
LEASE_S = LEASE_INTERVALS * INTERVAL_S


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def replicas(store: Store, clock: ManualClock) -> tuple[SourceLeases, SourceLeases]:
    return SourceLeases(store, clock, owner="a"), SourceLeases(store, clock, owner="b")


def test_the_first_to_ask_owns_the_source_and_keeps_it_by_renewing(store, clock):
    a, b = replicas(store, clock)
    assert a.hold("app", INTERVAL_S) == (True, True)
    assert b.hold("app", INTERVAL_S) == (False, True)
    for _ in range(10):  # renewed every interval, the lease never runs out
        clock.advance(INTERVAL_S)
        assert a.hold("app", INTERVAL_S) == (True, False)
        assert b.hold("app", INTERVAL_S) == (False, False)
    assert a.held() == ["app"] and b.held() == []
    assert b.hold("other", INTERVAL_S) == (True, True)  # each source has its own lease


def test_a_silent_owner_loses_the_source_when_its_lease_runs_out(store, clock):
    a, b = replicas(store, clock)
    a.hold("app", INTERVAL_S)
    clock.advance(LEASE_S - 0.001)
    assert b.hold("app", INTERVAL_S)[0] is False  # one renewal missed is not a takeover
    clock.advance(0.001)
    assert b.hold("app", INTERVAL_S) == (True, True)
    assert a.hold("app", INTERVAL_S) == (False, True)  # back, it stands by


def test_a_released_source_is_taken_at_once(store, clock):
    a, b = replicas(store, clock)
    a.hold("app", INTERVAL_S)
    a.hold("kept", INTERVAL_S)
    a.forget("kept")  # no longer configured here
    assert b.hold("kept", INTERVAL_S)[0] is True
    a.release()
    assert a.held() == []
    assert b.hold("app", INTERVAL_S) == (True, True)
