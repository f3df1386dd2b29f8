"""PromQL that counts the exporter's replicas once, shared by the rules and the dashboards.

Several replicas on one PostgreSQL serve identical totals for every series read from the shared
store (every `background_jobs_*` family, scrape errors, invalid and folded items, tracked jobs,
every `job_exporter_schedule_*` family), and differ only in their target labels (`instance`,
`pod`, ...). So each such series is reduced to one first, `max` across the replicas by the
config's group labels (cluster, namespace, job) and the series' own labels, and only then summed:
`sum by (type) (max by (cluster, namespace, job, source, type, name) (rate(...)))`.
A rate of a counter the replicas share is the same on each, so the max of the per-replica
rates is the true rate; `max` rather than `avg` keeps a replica that lags a scrape behind from
pulling it down, and keeps one that is missing from mattering at all.

Per-process families (source up, scrape duration, last success, store up, clock step, pushes
refused, build info, source ownership) are not shared: they are read per replica or with
their own reduction where used.
"""

from __future__ import annotations

from dashboards.config import DEFAULT, Config

STN = ("source", "type", "name")
SCHEDULE = ("schedule", "type", "name")

DURATION = "background_jobs_duration_seconds"
QUEUE_WAIT = "background_jobs_queue_wait_seconds"
STARTED = "background_jobs_started_total"
FINISHED = "background_jobs_finished_total"
RETRIES = "background_jobs_retries_total"
RUNNING = "background_jobs_running"
PENDING = "background_jobs_pending"
OLDEST = "background_jobs_oldest_start_timestamp_seconds"


def by(*labels: str) -> str:
    """A `by` list, e.g. `source, type`."""
    return ", ".join(labels)


def matchers(cfg: Config = DEFAULT, *extra: str) -> str:
    """The config's selector followed by `extra` matchers (empty ones dropped)."""
    return ", ".join(part for part in (cfg.selector, *extra) if part)


def series(metric: str, cfg: Config = DEFAULT, *extra: str) -> str:
    """`metric{selector, extra...}`."""
    return f"{metric}{{{matchers(cfg, *extra)}}}"


def once(inner: str, labels: tuple[str, ...], cfg: Config = DEFAULT) -> str:
    """`inner` with its replicas merged: max by the group labels and the series' `labels`."""
    return f"max by ({by(*cfg.group_labels, *labels)}) ({inner})"


def rate_once(
    metric: str,
    labels: tuple[str, ...],
    window: str,
    cfg: Config = DEFAULT,
    *extra: str,
    fn: str = "rate",
) -> str:
    """`fn(metric{...}[window])` of a counter the replicas share, one series per real one."""
    return once(f"{fn}({series(metric, cfg, *extra)}[{window}])", labels, cfg)


def gauge_once(metric: str, labels: tuple[str, ...], cfg: Config = DEFAULT, *extra: str) -> str:
    """A gauge the replicas share, one series per real one."""
    return once(series(metric, cfg, *extra), labels, cfg)


def sum_by(labels: tuple[str, ...] | None, inner: str) -> str:
    """`sum by (labels) (inner)`; `sum(inner)` for None."""
    return f"sum({inner})" if labels is None else f"sum by ({by(*labels)}) ({inner})"


def failure_ratio(
    out: tuple[str, ...] | None, window: str, cfg: Config = DEFAULT, *extra: str
) -> str:
    """Failed over all finished runs by `out` (0, not absent, when none failed; absent when
    nothing finished)."""
    labels = (*STN, "outcome")
    failed = sum_by(out, rate_once(FINISHED, labels, window, cfg, *extra, 'outcome="failed"'))
    finished = sum_by(out, rate_once(FINISHED, labels, window, cfg, *extra))
    return f"(\n  {failed}\n    or\n  0 * {finished}\n)\n/\n({finished} > 0)\n"


def quantile(
    q: float,
    metric: str,
    out: tuple[str, ...],
    window: str,
    cfg: Config = DEFAULT,
    *extra: str,
) -> str:
    """Histogram quantile `q` by `out` (NaN, no observation in the window, dropped)."""
    buckets = rate_once(f"{metric}_bucket", (*STN, "le"), window, cfg, *extra)
    return f"histogram_quantile({q}, {sum_by((*out, 'le'), buckets)}) >= 0"


def stuck_baseline(cfg: Config = DEFAULT, *extra: str) -> str:
    """The usual (p95) duration of each job function over the stuck baseline window."""
    return quantile(
        0.95, DURATION, (*cfg.group_labels, *STN), cfg.stuck_baseline_window, cfg, *extra
    )
