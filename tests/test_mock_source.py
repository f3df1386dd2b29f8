"""The built-in mock source: realistic, valid, and the same for the same seed and clock."""

from __future__ import annotations

import msgspec

from exporter.clock import ManualClock
from exporter.sources.mock import KINDS, MockJobSource
from exporter.tracking.decode import decode_jobs
from tests.helpers.data import START_MS


def run_for(source: MockJobSource, clock: ManualClock, seconds: int) -> list[list[dict]]:
    lists = []
    for _ in range(seconds):
        clock.advance(1)
        lists.append(source.jobs())
    return lists


def test_the_same_seed_and_clock_give_the_same_jobs():
    first_clock, second_clock = ManualClock(START_MS), ManualClock(START_MS)
    first = run_for(MockJobSource(first_clock, seed=7), first_clock, 30)
    second = run_for(MockJobSource(second_clock, seed=7), second_clock, 30)
    assert first == second
    other_clock = ManualClock(START_MS)
    assert run_for(MockJobSource(other_clock, seed=8), other_clock, 30) != first


def test_traffic_looks_like_an_app_and_is_valid_job_info():
    clock = ManualClock(START_MS)
    source = MockJobSource(clock, seed=3, stuck_ratio=0.05, vanish_ratio=0.05)
    seen: dict[str, dict] = {}
    vanished_running = set()
    shown: set[tuple] = set()  # (status, attempt, has an error) of every item listed
    for listing in run_for(source, clock, 600):
        shown |= {(i.get("status"), i.get("attempt", 1), "error" in i) for i in listing}
        body = msgspec.json.encode(listing)
        assert decode_jobs(body, clock.now_ms()).errors == []
        ids = {item["id"] for item in listing}
        vanished_running |= {
            job_id for job_id, item in seen.items() if job_id not in ids and not item["isFinished"]
        }
        seen.update({item["id"]: item for item in listing})
    items = list(seen.values())
    assert {(i["backgroundJobType"], i["name"]) for i in items} == {(k.type, k.name) for k in KINDS}
    assert any(i.get("status") == "failed" for i in items)
    assert any("status" not in i for i in items)  # plain JobInfoBase items too
    assert any(
        not i["isFinished"] and clock.now_ms() - i["startTimestamp"] > 300_000 for i in items
    )
    assert vanished_running  # some running jobs vanish: the exporter counts them lost
    # Queues, retries and errors show as the optional fields say them (contract §1).
    assert {("pending", 1, False), ("retrying", 1, True), ("completed", 2, False)} <= shown
    assert ("failed", 1, True) in shown


def test_the_list_stays_bounded():
    clock = ManualClock(START_MS)
    source = MockJobSource(clock, max_jobs=50)
    clock.advance(3600)
    assert len(source.jobs()) <= 50
