"""Decoding JobInfoBase: the fast path, item-by-item fallback, and the fields it names."""

from __future__ import annotations

import json

import pytest

from exporter.tracking.decode import InvalidDocument, decode_jobs
from tests.helpers.data import START_MS, job

NOW = START_MS


def decode(items) -> tuple[list[str], list[tuple[int, str]]]:
    decoded = decode_jobs(json.dumps(items).encode(), NOW)
    return [j.id for j in decoded.jobs], [(e.index, e.field) for e in decoded.errors]


def test_a_clean_response_decodes_whole():
    ids, errors = decode([job("a"), job("b", finished=True, status="failed")])
    assert ids == ["a", "b"] and errors == []


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (job("a", finished="true"), "isFinished"),
        (job("a", finished=1), "isFinished"),
        (job(7), "id"),
        (job(""), "id"),
        (job("x" * 201), "id"),
        (job("a", name=""), "name"),
        (job("a", name="n" * 201), "name"),
        (job("a", type="t" * 101), "backgroundJobType"),
        (job("a", start_ms=-1), "startTimestamp"),
        (job("a", start_ms="1700000000000"), "startTimestamp"),
        (job("a", start_ms=True), "startTimestamp"),
        (job("a", start_ms=NOW + 24 * 3600 * 1000 + 1), "startTimestamp"),
        (job("a", finishTimestamp=START_MS - 1), "finishTimestamp"),
        (job("a", finishTimestamp="soon"), "finishTimestamp"),
        (job("a", status="done"), "status"),
        (job("a", attempt=0), "attempt"),
        (job("a", attempt=2**31), "attempt"),  # past what a store's column holds
        ({"name": "n", "startTimestamp": 1, "backgroundJobType": "T", "isFinished": False}, "id"),
        ([1, 2], "item"),
        (None, "item"),
    ],
)
def test_an_invalid_item_is_named_by_index_and_field(item, field: str):
    ids, errors = decode([job("before"), item, job("after")])
    assert ids == ["before", "after"]
    assert errors == [(1, field)]


def test_exactly_24_hours_ahead_is_still_valid():
    ids, errors = decode([job("edge", start_ms=NOW + 24 * 3600 * 1000)])
    assert ids == ["edge"] and errors == []


def test_unknown_fields_and_null_extensions_are_ignored():
    ids, errors = decode([job("a", extra={"x": 1}, status=None, finishTimestamp=None)])
    assert ids == ["a"] and errors == []


def test_semantic_errors_keep_their_positions_among_schema_errors():
    ids, errors = decode(
        [job("a", finished="no"), job("b"), job("c", finishTimestamp=START_MS - 5), job("d")]
    )
    assert ids == ["b", "d"]
    assert errors == [(0, "isFinished"), (2, "finishTimestamp")]


@pytest.mark.parametrize("body", [b"", b"{}", b"[", b'"jobs"', b"null", b"[1,]"])
def test_a_body_that_is_no_json_array_is_invalid_as_a_whole(body: bytes):
    with pytest.raises(InvalidDocument):
        decode_jobs(body, NOW)
