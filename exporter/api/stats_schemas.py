"""The shapes `/api/v1/stats/...` answers in, for the OpenAPI document.

The endpoints build their answers from the history rings directly; these Structs only
describe them, so the API's description covers the dashboard's endpoints too.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

PerMinute = Annotated[
    list[float | None], msgspec.Meta(description="per minute since the previous point")
]

Percentile = Annotated[
    list[float | None],
    msgspec.Meta(
        description="seconds: this percentile of the runs finished since the previous point,"
        " from the duration histogram's buckets (as histogram_quantile over their growth);"
        " null where none finished"
    ),
]


class Series(msgspec.Struct, rename="camel"):
    """Chart columns: one entry per sample, null where unknown."""

    t: Annotated[list[float], msgspec.Meta(description="sample times, epoch milliseconds")]
    running: list[float | None]
    pending: list[float | None]
    started: PerMinute
    completed: PerMinute
    failed: PerMinute
    lost: PerMinute
    avg_duration: Annotated[
        list[float | None],
        msgspec.Meta(description="mean seconds of the runs finished since the previous point"),
    ]
    p50: Percentile
    p95: Percentile
    p99: Percentile


class Totals(msgspec.Struct):
    """All jobs as of the newest sample."""

    running: int | None
    pending: int | None
    started: int | None
    completed: int | None
    failed: int | None
    lost: int | None


class SummaryStats(msgspec.Struct):
    step: Annotated[float, msgspec.Meta(description="seconds between samples")]
    span: Annotated[float, msgspec.Meta(description="seconds of history kept")]
    totals: Totals | None
    series: Series


class TypeSeries(Series, rename="camel"):
    type: str


class TypesStats(msgspec.Struct):
    step: float
    span: float
    types: list[TypeSeries]
    untracked: Annotated[int, msgspec.Meta(description="types turned away: rings full")]


class NameRow(msgspec.Struct):
    source: str
    type: str
    name: str
    running: int | None
    started: int | None
    failed: int | None


class NameList(msgspec.Struct):
    names: list[NameRow]
    total: Annotated[int, msgspec.Meta(description="functions matching, before `limit`")]
    untracked: int


class NameStats(msgspec.Struct):
    step: float
    span: float
    source: str
    type: str
    name: str
    series: Series


class FailingRow(msgspec.Struct):
    source: str
    type: str
    name: str
    failures: Annotated[int, msgspec.Meta(description="failed and lost runs in the window")]
    failed: int
    lost: int
    finished: Annotated[int, msgspec.Meta(description="runs finished in the window, any outcome")]
    ratio: Annotated[float, msgspec.Meta(description="failures over runs finished, 0 to 1")]


class FailingStats(msgspec.Struct):
    window: Annotated[float, msgspec.Meta(description="seconds back from the newest sample")]
    step: Annotated[float, msgspec.Meta(description="seconds between the samples used")]
    failing: list[FailingRow]
    untracked: int


SCHEMAS = {
    "SummaryStats": SummaryStats,
    "TypesStats": TypesStats,
    "NameList": NameList,
    "NameStats": NameStats,
    "FailingStats": FailingStats,
}
