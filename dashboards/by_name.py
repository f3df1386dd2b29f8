"""By name: one job function (a type and name) in detail.

Answers: how often it runs, finishes and fails, how long it takes (percentiles and the whole
distribution), how long runs wait to start, how often they are retried, and whether a run
looks stuck.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import promql
from dashboards.common import (
    NAME,
    RATE,
    SOURCE,
    TYPE,
    base,
    distribution,
    instant,
    quantile_queries,
    query,
    scope,
    single,
    thresholds,
    ts,
    with_variables,
)
from dashboards.config import DEFAULT, Config


def build(cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """The By name dashboard: raw queries only, each shared series taken once."""
    s = scope(cfg, SOURCE, TYPE, NAME)
    stn = promql.STN
    finished = promql.rate_once(promql.FINISHED, (*stn, "outcome"), RATE, cfg, *s)
    label = "{{source}} {{type}} {{name}}"
    running = promql.gauge_once(promql.RUNNING, stn, cfg, *s)
    pending = promql.gauge_once(promql.PENDING, stn, cfg, *s)

    def heat(metric: str) -> str:
        buckets = promql.rate_once(f"{metric}_bucket", (*stn, "le"), RATE, cfg, *s, fn="increase")
        return promql.sum_by(("le",), buckets)

    return (
        with_variables(
            base(
                "Jobs: By name",
                cfg.by_name_uid,
                "One job function in detail: pick its source, type and name.",
                cfg,
            ),
            cfg,
            "source",
            "type",
            "name",
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Runs in progress now.",
                "short",
                instant(f"sum({running}) or vector(0)"),
                span=6,
            )
        )
        .with_panel(
            single(
                "Pending",
                "Runs waiting to start (job API).",
                "short",
                instant(f"sum({pending}) or vector(0)"),
                thresholds((None, "green"), (cfg.backlog_min_pending, "orange")),
                span=6,
            )
        )
        .with_panel(
            single(
                f"Failure ratio ({cfg.rate_window})",
                "Failed over finished runs.",
                "percentunit",
                instant(promql.failure_ratio(None, cfg.rate_window, cfg, *s)),
                thresholds((None, "green"), (cfg.failure_ratio_threshold, "red")),
                span=6,
            )
        )
        .with_panel(
            single(
                "Oldest running job",
                "How long the oldest run still in progress has been running.",
                "s",
                instant(f"max(time() - {promql.series(promql.OLDEST, cfg, *s)}) or vector(0)"),
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
                    query(
                        promql.sum_by(stn, promql.rate_once(promql.STARTED, stn, RATE, cfg, *s)),
                        f"started {label}",
                    ),
                    query(
                        promql.sum_by((*stn, "outcome"), finished),
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
                [query(promql.failure_ratio(stn, RATE, cfg, *s), label)],
                threshold=cfg.failure_ratio_threshold,
            )
        )
        .with_panel(
            ts(
                "Running and pending",
                "Runs in progress and runs waiting.",
                "short",
                [
                    query(promql.sum_by(stn, running), f"running {label}"),
                    query(promql.sum_by(stn, pending), f"pending {label}", ref_id="B"),
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
                        promql.sum_by(
                            (*stn, "trigger"),
                            promql.rate_once(promql.RETRIES, (*stn, "trigger"), RATE, cfg, *s),
                        ),
                        "{{trigger}} " + label,
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Duration"))
        .with_panel(
            ts(
                "Duration percentiles",
                "How long finished runs took; exemplars link a recent run of a bucket.",
                "s",
                quantile_queries(
                    lambda q: promql.quantile(q, promql.DURATION, stn, RATE, cfg, *s),
                    lambda p: p + " {{name}}",
                    exemplars=True,
                ),
            )
        )
        .with_panel(
            distribution(
                "Duration distribution",
                "Finished runs per duration bucket over time; exemplars link a recent run of "
                "a bucket.",
                heat(promql.DURATION),
            )
        )
        .with_panel(
            ts(
                "Oldest running job age",
                "Age of the oldest run in progress; the line is the stuck alert's floor.",
                "s",
                [
                    query(
                        f"time() - max by ({promql.by(*stn)}) "
                        f"({promql.series(promql.OLDEST, cfg, *s)})",
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
                    lambda q: promql.quantile(q, promql.QUEUE_WAIT, stn, RATE, cfg, *s),
                    lambda p: p + " {{name}}",
                    exemplars=True,
                ),
                threshold=cfg.queue_wait_p95_seconds,
            )
        )
        .with_panel(
            distribution(
                "Queue wait distribution",
                "Runs started per queue-wait bucket over time.",
                heat(promql.QUEUE_WAIT),
            )
        )
    )
