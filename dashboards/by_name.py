"""By name: one job function (a type and name) in detail.

Answers: how often it runs, finishes and fails, how long it takes (percentiles and the whole
distribution), how long runs wait to start, how often they are retried, and whether a run
looks stuck.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import rules
from dashboards.common import (
    NAME,
    SOURCE,
    TYPE,
    base,
    datasource_variable,
    distribution,
    instant,
    label_variable,
    quantile_queries,
    query,
    sel,
    single,
    thresholds,
    ts,
)
from dashboards.config import DEFAULT, Config


def build(cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """The By name dashboard."""
    stn = sel(SOURCE, TYPE, NAME)
    finished = rules.finished("source_type_name_outcome", cfg)
    label = "{{source}} {{type}} {{name}}"
    duration = rules.quantile(rules.DURATION, "source_type_name", cfg=cfg)
    queue_wait = rules.quantile(rules.QUEUE_WAIT, "source_type_name", cfg=cfg)
    return (
        base(
            "Jobs: By name",
            cfg.by_name_uid,
            "One job function in detail: pick its source, type and name.",
            cfg,
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("source", "Source", ""))
        .with_variable(label_variable("type", "Type", SOURCE))
        .with_variable(label_variable("name", "Name", sel(SOURCE, TYPE)))
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Runs in progress now.",
                "short",
                instant(f"sum(background_jobs_running{{{stn}}}) or vector(0)"),
                span=6,
            )
        )
        .with_panel(
            single(
                "Pending",
                "Runs waiting to start (job API).",
                "short",
                instant(f"sum(background_jobs_pending{{{stn}}}) or vector(0)"),
                thresholds((None, "green"), (cfg.backlog_min_pending, "orange")),
                span=6,
            )
        )
        .with_panel(
            single(
                f"Failure ratio ({cfg.rate_window})",
                "Failed over finished runs.",
                "percentunit",
                instant(
                    f'(sum({finished}{{{stn}, outcome="failed"}}) or vector(0))'
                    f" / sum({finished}{{{stn}}})"
                ),
                thresholds((None, "green"), (cfg.failure_ratio_threshold, "red")),
                span=6,
            )
        )
        .with_panel(
            single(
                "Oldest running job",
                "How long the oldest run still in progress has been running.",
                "s",
                instant(
                    f"max(time() - background_jobs_oldest_start_timestamp_seconds{{{stn}}})"
                    " or vector(0)"
                ),
                thresholds((None, "green"), (cfg.stuck_min_seconds, "orange")),
                span=6,
            )
        )
        .with_row(dashboard.Row("Runs"))
        .with_panel(
            ts(
                "Started and finished per second",
                "Runs started, and runs finished by outcome.",
                "ops",
                [
                    query(f"{rules.started('source_type_name', cfg)}{{{stn}}}", f"started {label}"),
                    query(
                        f"{finished}{{{stn}}}",
                        "{{outcome}} {{source}} {{type}} {{name}}",
                        ref_id="B",
                    ),
                ],
            )
        )
        .with_panel(
            ts(
                "Failure ratio",
                "Failed over finished runs; the line is the alert threshold.",
                "percentunit",
                [query(f"{rules.failure_ratio('source_type_name', cfg)}{{{stn}}}", label)],
                threshold=cfg.failure_ratio_threshold,
            )
        )
        .with_panel(
            ts(
                "Running and pending",
                "Runs in progress and runs waiting.",
                "short",
                [
                    query(f"background_jobs_running{{{stn}}}", f"running {label}"),
                    query(f"background_jobs_pending{{{stn}}}", f"pending {label}", ref_id="B"),
                ],
            )
        )
        .with_panel(
            ts(
                "Retries per second",
                "Retries scheduled, by trigger (manual or automatic).",
                "ops",
                [
                    query(
                        f"{rules.retries('source_type_name_trigger', cfg)}{{{stn}}}",
                        "{{trigger}} " + label,
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Duration"))
        .with_panel(
            ts(
                "Duration percentiles",
                "How long finished runs took.",
                "s",
                quantile_queries(
                    lambda q: f'{duration}{{{stn}, quantile="{q}"}}',
                    lambda p: p + " {{name}}",
                ),
            )
        )
        .with_panel(
            distribution(
                "Duration distribution",
                "Finished runs per duration bucket over time.",
                "sum by (le) (increase(background_jobs_duration_seconds_bucket"
                f"{{{stn}}}[$__rate_interval]))",
            )
        )
        .with_panel(
            ts(
                "Oldest running job age",
                "Age of the oldest run in progress; the line is the stuck alert's floor.",
                "s",
                [
                    query(
                        f"time() - background_jobs_oldest_start_timestamp_seconds{{{stn}}}",
                        label,
                    )
                ],
                threshold=cfg.stuck_min_seconds,
            )
        )
        .with_row(dashboard.Row("Queue wait"))
        .with_panel(
            ts(
                "Queue wait percentiles",
                "Time from created to first started (job API); the line is the p95 alert "
                "threshold.",
                "s",
                quantile_queries(
                    lambda q: f'{queue_wait}{{{stn}, quantile="{q}"}}',
                    lambda p: p + " {{name}}",
                ),
                threshold=cfg.queue_wait_p95_seconds,
            )
        )
        .with_panel(
            distribution(
                "Queue wait distribution",
                "Runs started per queue-wait bucket over time.",
                "sum by (le) (increase(background_jobs_queue_wait_seconds_bucket"
                f"{{{stn}}}[$__rate_interval]))",
            )
        )
    )
