"""The /metrics text, written straight from the metrics view.

prometheus_client's generic exposition builds a Sample object per line, sorts each line's
labels, and formats every value through a general float formatter; at 2,000 job series
(about 48,000 lines) that is most of a /metrics request. Here each series' label text is
escaped once and lines are plain string concatenation. Both the Prometheus text format
(0.0.4) and OpenMetrics 1.0 are written; tests parse both and compare them sample by sample
with the collector's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from exporter.metrics.view import Families, Family, HistogramValues, MetricsView
from exporter.model.counts import CountKind, Outcome, PushRefusal, RetryTrigger, ScrapeErrorReason
from exporter.model.exemplars import EXEMPLAR_LABEL, Exemplar
from exporter.model.schedules import FireResult

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PIECE_LINES = 4096
BUILD_LABELS = Families.BUILD_INFO.labels


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """Integers without a fraction (most counts are), other floats in their shortest form."""
    if -1e15 < value < 1e15:
        whole = int(value)
        if whole == value:
            return str(whole)
        return repr(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render(view: MetricsView, openmetrics: bool = False) -> bytes:
    pieces: list[bytes] = []
    render_into(pieces.append, view, openmetrics)
    return b"".join(pieces)


def render_into(
    sink: Callable[[bytes], object], view: MetricsView, openmetrics: bool = False
) -> None:
    """Hand the page to `sink` in encoded pieces of a few thousand lines each. Lines are
    joined and encoded as they pile up, so a page of thousands of series never lies in
    memory as a string per line, one joined string and its bytes at once; gzipped piece by
    piece, it never does while being compressed either."""
    lines: list[str] = []
    add = lines.append

    def flush() -> None:
        sink("".join(lines).encode())
        lines.clear()

    def flush_often() -> None:
        if len(lines) >= PIECE_LINES:
            flush()

    def header(family: Family) -> str:
        """Write HELP and TYPE; return the sample name (counters gain `_total`)."""
        sample = family.name + "_total" if family.kind == "counter" else family.name
        named = family.name if openmetrics else sample
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        if openmetrics:
            help_text = help_text.replace('"', '\\"')
        add(f"# HELP {named} {help_text}\n# TYPE {named} {family.kind}\n")
        return sample

    series = view.series
    texts = [
        f'source="{escape_label(s)}",type="{escape_label(t)}",name="{escape_label(n)}"'
        for s, t, n in (one.labels for one in series)
    ]
    pairs = list(zip(texts, series, strict=True))

    def each(family: Family, value: Callable) -> None:
        name = header(family)
        for text, one in pairs:
            add(f"{name}{{{text}}} {number(value(one))}\n")
        flush_often()

    each(Families.RUNNING, lambda one: one.running)
    each(Families.PENDING, lambda one: one.pending)
    name = header(Families.OLDEST_START)
    for text, one in pairs:
        if one.oldest_start_s is not None:
            add(f"{name}{{{text}}} {number(one.oldest_start_s)}\n")
    each(Families.STARTED, lambda one: one.started)
    for family, label, values, getter in (
        (Families.FINISHED, "outcome", Outcome.ALL, lambda one: one.finished),
        (Families.RETRIES, "trigger", RetryTrigger.ALL, lambda one: one.retries),
    ):
        name = header(family)
        suffixes = [f',{label}="{value}"}} ' for value in values]
        for text, one in pairs:
            prefix = f"{name}{{{text}"
            for suffix, count in zip(suffixes, getter(one), strict=True):
                add(f"{prefix}{suffix}{number(count)}\n")
            flush_often()
    each(Families.CANCELLED, lambda one: one.cancelled)
    with_exemplars = openmetrics and bool(view.exemplars)  # the text format has none
    for family, bucket_family, getter in (
        (Families.DURATION, CountKind.DURATION_BUCKET, lambda one: one.duration),
        (Families.QUEUE_WAIT, CountKind.QUEUE_WAIT_BUCKET, lambda one: one.queue_wait),
    ):
        name = header(family)
        les = [f',le="{le}"}} ' for le in view.bucket_labels]
        for text, one in pairs:
            values = getter(one)
            if values is not None:
                exemplars = None
                if with_exemplars:
                    exemplars = view.bucket_exemplars(one, bucket_family)
                _histogram(add, name, text, les, values, exemplars)
                flush_often()

    _health(view, header, add)
    _schedules(view, header, add)
    if openmetrics:
        add("# EOF\n")
    flush()


def _histogram(
    add: Callable[[str], None],
    name: str,
    text: str,
    les: list[str],
    values: HistogramValues,
    exemplars: tuple[Exemplar | None, ...] | None = None,
) -> None:
    bucket = f"{name}_bucket{{{text}"
    if exemplars is None:
        for le, count in zip(les, values.cumulative, strict=True):
            add(f"{bucket}{le}{number(count)}\n")
    else:
        for le, count, exemplar in zip(les, values.cumulative, exemplars, strict=True):
            if exemplar is None:
                add(f"{bucket}{le}{number(count)}\n")
            else:
                add(f"{bucket}{le}{number(count)}{_exemplar(exemplar)}\n")
    add(f"{name}_count{{{text}}} {number(values.count)}\n")
    add(f"{name}_sum{{{text}}} {number(values.sum)}\n")


def _exemplar(exemplar: Exemplar) -> str:
    """An OpenMetrics bucket's exemplar: ` # {job_id="ID"} VALUE TIMESTAMP`."""
    job_id = escape_label(exemplar.job_id)
    return f' # {{{EXEMPLAR_LABEL}="{job_id}"}} {number(exemplar.value)} {number(exemplar.at_s)}'


def _health(view: MetricsView, header: Callable[[Family], str], add: Callable[[str], None]):
    rows = [(f'source="{escape_label(row.source)}"', row) for row in view.sources]
    for family, getter in (
        (Families.SOURCE_UP, lambda row: row.up),
        (Families.SOURCE_OWNED, lambda row: row.owned),
        (Families.SCRAPE_DURATION, lambda row: row.scrape_duration_s),
        (Families.LAST_SUCCESS, lambda row: row.last_success_s),
    ):
        name = header(family)
        for text, row in rows:
            value = getter(row)
            if value is not None:
                add(f"{name}{{{text}}} {number(value)}\n")
    name = header(Families.SCRAPE_ERRORS)
    for text, row in rows:
        if row.errors is not None:
            for reason, value in zip(ScrapeErrorReason.ALL, row.errors, strict=True):
                add(f'{name}{{{text},reason="{reason}"}} {number(value)}\n')
    name = header(Families.INVALID_JOBS)
    for text, row in rows:
        for field, value in row.invalid:
            add(f'{name}{{{text},field="{escape_label(field)}"}} {number(value)}\n')
    name = header(Families.FOLDED_JOBS)
    for text, row in rows:
        add(f"{name}{{{text}}} {number(row.folded)}\n")
    name = header(Families.PUSH_REFUSED)
    for reason, value in zip(PushRefusal.ALL, view.push_refused, strict=True):
        add(f'{name}{{reason="{reason}"}} {number(value)}\n')
    name = header(Families.TRACKED_JOBS)
    for source, count in view.tracked:
        add(f'{name}{{source="{escape_label(source)}"}} {number(count)}\n')
    name = header(Families.STORE_ERRORS)
    add(f"{name} {number(view.store_errors)}\n")
    name = header(Families.STORE_UP)
    add(f"{name} {number(view.store_up)}\n")
    name = header(Families.CLOCK_STEP)
    add(f"{name} {number(view.clock_step_s)}\n")
    name = header(Families.BUILD_INFO)
    build = (view.version, view.revision, view.python_version)
    labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in zip(BUILD_LABELS, build, strict=True))
    add(f"{name}{{{labels}}} 1\n")


def _schedules(view: MetricsView, header: Callable[[Family], str], add: Callable[[str], None]):
    rows = [
        (f'schedule="{escape_label(i)}",type="{escape_label(t)}",name="{escape_label(n)}"', row)
        for (i, t, n), row in ((row.labels, row) for row in view.schedules)
    ]
    name = header(Families.SCHEDULE_FIRES)
    for text, row in rows:
        for result, value in zip(FireResult.ALL, row.fires, strict=True):
            add(f'{name}{{{text},result="{result}"}} {number(value)}\n')
    for family, getter in (
        (Families.SCHEDULE_LAST_FIRE, lambda row: row.last_fire_s),
        (Families.SCHEDULE_NEXT_FIRE, lambda row: row.next_fire_s),
        (Families.SCHEDULE_LAST_SUCCESS, lambda row: row.last_success_s),
        (Families.SCHEDULE_UNANSWERED, lambda row: row.unanswered_s),
        (Families.SCHEDULE_PAUSED, lambda row: row.paused),
    ):
        name = header(family)
        for text, row in rows:
            value = getter(row)
            if value is not None:
                add(f"{name}{{{text}}} {number(value)}\n")
