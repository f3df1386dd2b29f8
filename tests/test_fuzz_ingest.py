"""Hypothesis on the ingest path: arbitrary JSON into `decode_jobs` and `POST /api/v1/push`.

Every scrape and push funnels through `decode_jobs`, so it must turn any bytes into either
`InvalidDocument` (the body is not an array) or a `Decoded` whose errors name the item and
the field at fault: those names become `job_exporter_invalid_jobs_total{field}` and the push
400's `errors[].field`, which is what tells an app's developers what to fix. Over HTTP a push
must answer 202, 400 naming each bad item, or 413, never a 5xx, and a refused batch must leave
no trace in the counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from exporter.model.jobinfo import FIELD_WIRE_NAMES, ITEM_FIELD, MAX_FUTURE_MS
from exporter.tracking.decode import Decoded, InvalidDocument, decode_jobs
from tests.helpers.data import START_MS
from tests.helpers.served import LiveServer, live_server

NOW_MS = START_MS
KNOWN_FIELDS = frozenset(FIELD_WIRE_NAMES.values()) | {ITEM_FIELD}
# Bounded so the module runs in seconds; `derandomize` keeps CI's examples the same each run.
SETTINGS = hypothesis.settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)

# Any JSON value, with the awkward corners weighted in: huge and negative numbers, floats
# at the edge of precision, empty and very long strings, non-ASCII text, deep nesting.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.text(min_size=190, max_size=260),
    st.sampled_from(["true", "false", "1", "", " ", "\u0000", "running", "failed"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def valid_item(index: int) -> dict[str, Any]:
    return {
        "id": f"job-{index}",
        "name": "send_email",
        "startTimestamp": START_MS,
        "backgroundJobType": "TASK",
        "isFinished": False,
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Any], dict[int, str]]:
    """A batch of valid items, some with one field replaced by an arbitrary JSON value,
    some replaced whole; also returns which field each damaged item had damaged."""
    size = draw(st.integers(min_value=0, max_value=8))
    items: list[Any] = []
    damaged: dict[int, str] = {}
    for index in range(size):
        item = valid_item(index)
        action = draw(st.sampled_from(["keep", "field", "drop", "whole"]))
        if action == "field":
            field = draw(st.sampled_from(sorted(FIELD_WIRE_NAMES.values())))
            item[field] = draw(json_values)
            damaged[index] = field
        elif action == "drop":
            field = draw(
                st.sampled_from(["id", "name", "startTimestamp", "backgroundJobType", "isFinished"])
            )
            del item[field]
            damaged[index] = field
        elif action == "whole":
            items.append(draw(json_values.filter(lambda value: not isinstance(value, dict))))
            damaged[index] = ITEM_FIELD
            continue
        items.append(item)
    return items, damaged


def check_decoded(decoded: Decoded, size: int) -> None:
    """Every input item is either a job or named by exactly one error, in a known field."""
    indexes = [error.index for error in decoded.errors]
    assert len(indexes) == len(set(indexes)), decoded.errors
    assert all(0 <= index < size for index in indexes)
    assert len(decoded.jobs) + len(indexes) == size
    for error in decoded.errors:
        assert error.field in KNOWN_FIELDS, error
        assert error.message
    for job in decoded.jobs:
        assert math.isfinite(job.start_timestamp) and job.start_timestamp >= 0
        assert job.start_timestamp <= NOW_MS + MAX_FUTURE_MS
        assert isinstance(job.is_finished, bool)
        assert 0 < len(job.id) <= 200 and 0 < len(job.name) <= 200


@SETTINGS
@hypothesis.given(value=json_values)
def test_any_json_value_decodes_or_is_an_invalid_document(value: Any) -> None:
    body = json.dumps(value).encode()
    try:
        decoded = decode_jobs(body, NOW_MS)
    except InvalidDocument:
        assert not isinstance(value, list)
        return
    assert isinstance(value, list)
    check_decoded(decoded, len(value))


@SETTINGS
@hypothesis.given(body=st.binary(max_size=200))
def test_any_bytes_decode_or_are_an_invalid_document(body: bytes) -> None:
    try:
        decoded = decode_jobs(body, NOW_MS)
    except InvalidDocument:
        return
    check_decoded(decoded, len(json.loads(body)))


@SETTINGS
@hypothesis.given(batch=batches())
def test_a_damaged_item_is_named_by_the_field_that_was_damaged(
    batch: tuple[list[Any], dict[int, str]],
) -> None:
    items, damaged = batch
    decoded = decode_jobs(json.dumps(items).encode(), NOW_MS)
    check_decoded(decoded, len(items))
    for error in decoded.errors:
        # Only a damaged item can fail, and it fails on the field that was damaged (a
        # damaged finishTimestamp may also be reported there when it precedes the start).
        assert error.index in damaged, (error, items[error.index])
        assert error.field == damaged[error.index], (error, items[error.index])


@pytest.fixture(scope="module")
def push_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One served app for all examples: hypothesis runs many examples per test function."""
    folder: Path = tmp_path_factory.mktemp("push-fuzz")
    with live_server(folder) as live:
        yield live


def started_total(server: LiveServer) -> float:
    samples = server.metrics().samples
    return sum(v for (name, _), v in samples.items() if name == "background_jobs_started_total")


@hypothesis.settings(SETTINGS, max_examples=150)  # each example is three HTTP requests
@hypothesis.given(batch=batches(), single=st.booleans(), raw=st.none() | json_values)
def test_push_answers_202_or_a_400_naming_each_bad_item_and_applies_nothing_then(
    push_server: LiveServer, batch: tuple[list[Any], dict[int, str]], single: bool, raw: Any
) -> None:
    items, damaged = batch
    # Fresh ids per example, so every accepted item is a new job and counts once.
    prefix = f"ex{started_total(push_server):.0f}-"
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            item["id"] = (prefix + item["id"])[:200]
    body: Any = items
    if raw is not None:
        body = raw  # an arbitrary JSON value instead of a batch
    elif single and len(items) == 1:
        body = items[0]  # one JobInfoBase, not an array
    before = started_total(push_server)
    response = push_server.post("/api/v1/push", body)
    assert response.status_code in (202, 400), (response.status_code, response.text)
    answer = response.json()
    after = started_total(push_server)
    if response.status_code == 202:
        assert isinstance(body, (list, dict))
        accepted = body if isinstance(body, list) else [body]
        assert answer == {"accepted": len(accepted)}
        assert after - before == len({item["id"] for item in accepted})
        return
    assert isinstance(answer["error"], str) and isinstance(answer["errors"], list)
    assert answer["errors"], answer
    assert after == before, "a refused push changed the counts"
    for error in answer["errors"]:
        assert error["field"] in KNOWN_FIELDS | {"body"}, error
        if body is items and error["field"] != "body":
            assert error["index"] in damaged, (error, items)
            assert error["field"] == damaged[error["index"]], (error, items)
