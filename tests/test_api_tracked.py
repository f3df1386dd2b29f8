"""`GET /api/v1/tracked` (docs/contract.md §4): each filter on its own and together, both
orders with their cursors, and every bad value refused with a 400 naming its field. (The
paging, search and error fields of scraped jobs are in test_counting_runs.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.helpers.data import START_MS, job
from tests.helpers.served import Exporter


def tracked(exporter: Exporter, **params: Any) -> list[tuple[str, str]]:
    """(source, id) of every job on all pages, following `next`."""
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        answer = requests.get(f"{exporter.url}/api/v1/tracked", params=query, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [(row["source"], row["id"]) for row in body["jobs"]]
        cursor = body["next"]
        if cursor is None:
            return seen
        assert len(seen) < 1000


def push(exporter: Exporter, source: str, items: list[dict], **params: Any) -> None:
    answer = requests.post(
        f"{exporter.url}/api/v1/push", params={"source": source, **params}, json=items, timeout=10
    )
    assert answer.status_code == 202, answer.text


@pytest.fixture
def filled(exporter: Exporter) -> Exporter:
    """Two sources; every status; starts one second apart in the order listed."""
    at = iter(range(100))

    def started(**fields: Any) -> dict:
        return {"start_ms": START_MS + 1000 * next(at), **fields}

    push(
        exporter,
        "billing",
        [
            job("run-1", **started()),
            job(
                "fail-1", name="charge", **started(finished=True, status="failed", error="declined")
            ),
            job("done-1", type="HTTP", **started(finished=True, status="completed")),
            job("wait-1", name="charge", **started(status="pending")),
        ],
    )
    push(
        exporter,
        "mailer",
        [
            job("run-2", type="HTTP", **started()),
            job("done-2", **started(finished=True, status="completed")),
        ],
    )
    push(exporter, "lossy", [job("gone-1", **started())], lostAfter=5)
    exporter.clock.advance(30)  # past its lost-after time, counted from its start
    assert exporter.runtime.sweeper.pushed() == 1
    return exporter


NEWEST = [
    ("lossy", "gone-1"),
    ("mailer", "done-2"),
    ("mailer", "run-2"),
    ("billing", "wait-1"),
    ("billing", "done-1"),
    ("billing", "fail-1"),
    ("billing", "run-1"),
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, NEWEST),
        ({"order": "newest"}, NEWEST),
        ({"order": "oldest"}, NEWEST[::-1]),
        ({"limit": 1}, NEWEST),  # one a page, every page once
        ({"limit": 2, "order": "oldest"}, NEWEST[::-1]),
        ({"source": "mailer"}, [("mailer", "done-2"), ("mailer", "run-2")]),
        ({"type": "HTTP"}, [("mailer", "run-2"), ("billing", "done-1")]),
        ({"name": "charge"}, [("billing", "wait-1"), ("billing", "fail-1")]),
        ({"status": "running", "order": "oldest"}, [("billing", "run-1"), ("mailer", "run-2")]),
        ({"status": "running", "limit": 1}, [("mailer", "run-2"), ("billing", "run-1")]),
        ({"status": "pending"}, [("billing", "wait-1")]),
        ({"status": "failed"}, [("billing", "fail-1")]),
        ({"status": "lost"}, [("lossy", "gone-1")]),
        ({"status": "completed"}, [("mailer", "done-2"), ("billing", "done-1")]),
        ({"status": "completed", "source": "billing", "type": "HTTP"}, [("billing", "done-1")]),
        ({"status": "failed", "source": "mailer"}, []),
        ({"q": "RUN-"}, [("mailer", "run-2"), ("billing", "run-1")]),
        ({"q": "charg", "status": "pending"}, [("billing", "wait-1")]),
        ({"q": "nothing"}, []),
        ({"source": "", "type": "", "name": "", "q": ""}, NEWEST),  # empty: no filter
    ],
)
def test_each_filter_and_order(filled: Exporter, params: dict, expected: list):
    assert tracked(filled, **params) == expected


def test_every_field_of_a_row(filled: Exporter):
    answer = requests.get(f"{filled.url}/api/v1/tracked", params={"status": "failed"}, timeout=5)
    [row] = answer.json()["jobs"]
    assert row == {
        "source": "billing",
        "id": "fail-1",
        "type": "TASK",
        "name": "charge",
        "status": "failed",
        "attempt": 1,
        "enqueuedAt": None,
        "startedAt": START_MS + 1000,
        "finishedAt": START_MS,  # the push's clock saw it finished (no finishTimestamp)
        "durationSeconds": None,
        "error": "declined",
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "cancelled"}, "status"),
        ({"status": "RUNNING"}, "status"),
        ({"order": "NEWEST"}, "order"),
        ({"order": ""}, "order"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "\u0661\u0660"}, "limit"),  # digits, but not ASCII ones
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": "bnVsbA"}, "cursor"),  # base64 of JSON null
        ({"q": "é" * 201}, "q"),
    ],
)
def test_bad_values_are_refused_by_name(exporter: Exporter, params: dict, field: str):
    answer = requests.get(f"{exporter.url}/api/v1/tracked", params=params, timeout=5)
    assert answer.status_code == 400
    body = answer.json()
    assert isinstance(body["error"], str) and body["error"]
    assert [error["field"] for error in body["errors"]] == [field]
    assert all(error["message"] for error in body["errors"])
