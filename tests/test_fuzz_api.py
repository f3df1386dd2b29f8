"""Hostile input to every documented endpoint: schemathesis fuzzes a real exporter process.

Schemathesis reads the exporter's own `/api/openapi.json` and generates valid and invalid
requests for every operation (wrong types, missing fields, odd strings, huge numbers, bad
path ids and query values). The exporter must never answer a 5xx, must stay alive, and every
4xx must carry the contract's error shape, because clients and the client library parse it.
The example count per operation is bounded so the whole module stays well under a minute.
"""

from __future__ import annotations

import os
import signal
from collections import Counter, defaultdict
from collections.abc import Iterator

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from exporter.api import openapi
from tests.helpers.processes import ExporterProcess

pytestmark = pytest.mark.slow

# Per operation and mode (19 of them) and store: 1,900 requests, 35 s. FUZZ_EXAMPLES raises it.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))

# Every response seen, by process and status; the survival test prints them as figures.
STATUSES: defaultdict[str, Counter[int]] = defaultdict(Counter)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed_exporter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """One real `serve` process per store for the whole module; no sources, so only the
    fuzzed requests touch it. Both stores: PostgreSQL refuses some text SQLite takes."""
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}"
    else:
        store = request.getfixturevalue("postgres_cluster").new_database()
    process = ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", store)
    yield process
    assert process.stop(signal.SIGTERM) == 0, process.log


@pytest.fixture(scope="module")
def api_schema(fuzzed_exporter: ExporterProcess) -> schemathesis.BaseSchema:
    """The document the process serves, not the one in memory: that is what clients read."""
    return schemathesis.openapi.from_url(f"{fuzzed_exporter.url}/api/openapi.json")


def assert_error_shape(response: schemathesis.Response) -> None:
    """A 4xx answers `{"error": str, "errors": [...]}` as JSON (docs/contract.md §4)."""
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        response.status_code,
        response.headers,
        response.text[:500],
    )
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("errors"), list), body
    for error in body["errors"]:
        assert isinstance(error, dict) and isinstance(error.get("message"), str), body


# The operations, listed from the same document generator the process serves; schemathesis's
# own `from_fixture` parametrization does not work with pytest 9, so each operation and mode
# is a test of its own that draws cases from schemathesis's strategy for it.
def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation in valid mode; in invalid mode those with a body or a query to break
    (an id in the path is any string, so there is nothing invalid to generate for it)."""
    found = []
    for path, methods in openapi.document()["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            has_query = any(p["in"] == "query" for p in operation.get("parameters", []))
            if "requestBody" in operation or has_query:
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return found


OPERATIONS = _operations()


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    OPERATIONS,
    ids=[f"{m} {p} {mode.value}" for m, p, mode in OPERATIONS],
)
def test_no_5xx_and_every_4xx_has_the_error_shape(
    api_schema: schemathesis.BaseSchema,
    fuzzed_exporter: ExporterProcess,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,  # the same examples on every run: a failure here reproduces
        database=None,
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=fuzzed_exporter.url, timeout=10)
        STATUSES[fuzzed_exporter.url][response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if 400 <= response.status_code < 500:
            assert_error_shape(response)
        assert fuzzed_exporter.process.poll() is None, fuzzed_exporter.log

    fuzz()


# The endpoints outside the OpenAPI document, and a few that are not endpoints at all.
UNDOCUMENTED = [
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/openapi.json",
    "/api/docs",
    "/",
    "/api/v1/nothing",
    "/api/v1/jobs/x/nothing",
]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
    str.strip
)


@hypothesis.given(
    path=st.sampled_from(UNDOCUMENTED),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
    accept=header_text
    | st.sampled_from(
        [
            "application/openmetrics-text; version=9.9.9",
            "application/openmetrics-text; escaping=allow-utf-8",
            "text/plain;version=0.0.4;q=x",
            "*/*;q=-1",
        ]
    ),
    encoding=header_text | st.sampled_from(["gzip", "gzip;q=0", "br", "identity;q=0", "*"]),
    body=st.binary(max_size=100),
)
@hypothesis.settings(max_examples=MAX_EXAMPLES * 2, deadline=None, derandomize=True, database=None)
def test_undocumented_endpoints_take_any_method_query_and_headers(
    fuzzed_exporter: ExporterProcess,
    path: str,
    method: str,
    query: dict[str, str],
    accept: str,
    encoding: str,
    body: bytes,
) -> None:
    """/metrics negotiates its format from Accept and its compression from Accept-Encoding:
    odd values there must fall back to plain text, not fail."""
    headers = {"Accept": accept, "Accept-Encoding": encoding}
    response = requests.request(
        method, fuzzed_exporter.url + path, params=query, headers=headers, data=body, timeout=10
    )
    STATUSES[fuzzed_exporter.url][response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and method != "HEAD":
        body_json = response.json()
        assert isinstance(body_json["error"], str) and isinstance(body_json["errors"], list)


# JSON routes and where deep nesting goes in their bodies (docs/contract.md §8): the body
# itself, a free-form field, a typed field, an unknown field of a pushed item.
JSON_ROUTES = [
    "/api/v1/push",
    "/api/v1/jobs",
    "/api/v1/jobs/lease",
    "/api/v1/jobs/x/heartbeat",
    "/api/v1/jobs/x/complete",
    "/api/v1/jobs/x/fail",
    "/api/v1/jobs/x/retry",
    "/api/v1/schedules",
    "/api/v1/schedules/x/pause",
]


def _deep_body(where: str, depth: int) -> str:
    deep = "[" * depth + "]" * depth
    return {
        "body": deep,
        "payload": '{"type": "T", "name": "n", "payload": ' + deep + "}",
        "result": '{"worker": "w", "result": ' + deep + "}",
        "worker": '{"worker": ' + deep + "}",
        "item": '[{"id": "a", "name": "n", "startTimestamp": 1700000000000, '
        '"backgroundJobType": "T", "isFinished": false, "x": ' + deep + "}]",
    }[where]


@hypothesis.given(
    path=st.sampled_from(JSON_ROUTES),
    where=st.sampled_from(["body", "payload", "result", "worker", "item"]),
    depth=st.sampled_from([1, 62, 63, 64, 65, 200, 999, 1000, 5000, 100_000]),
)
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
def test_deep_json_is_never_a_5xx(
    fuzzed_exporter: ExporterProcess, path: str, where: str, depth: int
) -> None:
    response = requests.post(
        fuzzed_exporter.url + path,
        data=_deep_body(where, depth),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    STATUSES[fuzzed_exporter.url][response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if depth > 64:
        assert response.status_code in (400, 413), (path, where, depth, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and isinstance(body["errors"], list)


@hypothesis.given(
    bad=st.integers(min_value=1, max_value=20_000),
    item=st.sampled_from(["0", "null", "{}", '"x"', "[]", '{"id": 7}']),
)
@hypothesis.settings(max_examples=MAX_EXAMPLES // 4, deadline=None, derandomize=True, database=None)
def test_a_push_of_many_bad_items_lists_100_and_counts_all(
    fuzzed_exporter: ExporterProcess, bad: int, item: str
) -> None:
    response = requests.post(
        f"{fuzzed_exporter.url}/api/v1/push",
        data="[" + ",".join([item] * bad) + "]",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    STATUSES[fuzzed_exporter.url][response.status_code] += 1
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["errorCount"] == bad
    assert len(body["errors"]) == min(bad, 100)
    assert [error["index"] for error in body["errors"]] == list(range(min(bad, 100)))


def test_the_exporter_survived_the_fuzzing(fuzzed_exporter: ExporterProcess) -> None:
    """Runs after the fuzzing: still serving, still ready, and it logged no internal error."""
    statuses = STATUSES[fuzzed_exporter.url]
    print(f"fuzzing: {statuses.total()} requests, statuses {dict(sorted(statuses.items()))}")
    assert requests.get(f"{fuzzed_exporter.url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{fuzzed_exporter.url}/readyz", timeout=5).status_code == 200
    assert fuzzed_exporter.metrics().names()
    assert "unexpected error" not in fuzzed_exporter.log
    assert "Traceback" not in fuzzed_exporter.log
