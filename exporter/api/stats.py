"""`/api/v1/stats/...`: the dashboard's chart data, from the history sampler's rings.

Every answer is columnar (`t` and one list per line of a chart), ready for a charting
library, and thinned on the server to the points the page asks for. Bad parameters get a
400 naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, jsonify, request

from exporter.api.errors import error_response
from exporter.runtime.process import current_runtime
from exporter.stats.history import SUMMARY, HistorySampler
from exporter.stats.ring import Tier, Window, empty_series

blueprint = Blueprint("stats", __name__, url_prefix="/api/v1/stats")

# Query parameters' defaults and bounds; the OpenAPI document reads them from here.
DEFAULT_POINTS = 300
MAX_POINTS = 2000
DEFAULT_TYPES = 12
MAX_TYPES = 100
DEFAULT_NAMES = 100
MAX_NAMES = 2000
DEFAULT_FAILING = 10
MAX_FAILING = 100
DEFAULT_FAILING_WINDOW = 3600.0
MAX_WINDOW_S = 24 * 3600.0  # the page's longest range; the coarse tiers keep a day


class BadParameter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@blueprint.errorhandler(BadParameter)
def bad_parameter(error: BadParameter):
    return error_response(
        400, f"invalid {error.field}", [{"field": error.field, "message": str(error)}]
    )


def _sampler() -> HistorySampler:
    return current_runtime().history


def _number(field: str, default: float, low: float, high: float, integer: bool = False) -> float:
    text = request.args.get(field)
    if text is None or text == "":
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise BadParameter(field, f"must be {kind}, got {text[:50]!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadParameter(field, f"must be between {low:g} and {high:g}")
    return value


def _text(field: str, required: bool = False, longest: int = 200) -> str:
    value = request.args.get(field, "")
    if required and not value:
        raise BadParameter(field, "is required")
    if len(value) > longest:
        raise BadParameter(field, f"must be at most {longest} characters")
    return value


def _window(view: str, default: float | None = None) -> tuple[Tier, Window]:
    """The `window` and `points` asked for, and the finest tier of `view` that covers them.

    A window from the finest step up to 24 h is good; without one, the fine tier's whole
    span (an hour)."""
    sampler = _sampler()
    fine = sampler.views[view][0]
    default = fine.span_s if default is None else default
    seconds = _number("window", default, fine.step_ms / 1000, MAX_WINDOW_S)
    points = int(_number("points", DEFAULT_POINTS, 2, MAX_POINTS, integer=True))
    return sampler.tier(view, seconds), Window(seconds, points)


def _meta(tier: Tier, view: str) -> dict[str, Any]:
    return {"step": tier.step_ms / 1000, "span": _sampler().longest(view)}


@blueprint.get("/summary")
def summary():
    """All jobs: running, pending, started and finished per minute, mean duration."""
    sampler = _sampler()
    tier, window = _window("summary")
    series = sampler.series(tier, SUMMARY, window) or empty_series()
    totals = sampler.latest_totals()
    return jsonify({**_meta(tier, "summary"), "totals": totals, "series": series})


@blueprint.get("/types")
def types():
    """One series per job type, the busiest `limit` types, sorted by name."""
    sampler = _sampler()
    tier, window = _window("types")
    limit = int(_number("limit", DEFAULT_TYPES, 1, MAX_TYPES, integer=True))
    return jsonify(
        {
            **_meta(tier, "types"),
            "types": sampler.type_series(window, limit, tier),
            "untracked": tier.untracked,
        }
    )


@blueprint.get("/names")
def names():
    """The job functions that have history, busiest first; `q` filters by name, `type` too."""
    sampler = _sampler()
    limit = int(_number("limit", DEFAULT_NAMES, 1, MAX_NAMES, integer=True))
    rows, total = sampler.name_list(_text("q"), _text("type", longest=100), limit)
    return jsonify({"names": rows, "total": total, "untracked": sampler.names.untracked})


@blueprint.get("/name")
def name():
    """One job function's series: `source`, `type` and `name` pick it."""
    sampler = _sampler()
    key = (
        _text("source", required=True, longest=64),
        _text("type", required=True, longest=100),
        _text("name", required=True),
    )
    tier, window = _window("names")
    series = sampler.series(tier, key, window)
    if series is None:
        return error_response(
            404,
            "no history for that job function",
            [{"field": "name", "message": f"no history for {key[2]!r} ({key[1]}, {key[0]})"}],
        )
    return jsonify(
        {**_meta(tier, "names"), "source": key[0], "type": key[1], "name": key[2], "series": series}
    )


@blueprint.get("/failing")
def failing():
    """The job functions with the most failed and lost runs over `window` (default an hour),
    at most `limit`, with their runs finished and failure ratio."""
    sampler = _sampler()
    tier, window = _window("names", DEFAULT_FAILING_WINDOW)
    limit = int(_number("limit", DEFAULT_FAILING, 1, MAX_FAILING, integer=True))
    return jsonify(
        {
            "window": window.seconds,
            "step": tier.step_ms / 1000,
            "failing": sampler.failing(window.seconds, limit),
            "untracked": tier.untracked,
        }
    )
