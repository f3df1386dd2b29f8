"""By type: the Summary's questions for each job type (HTTP, TASK, CRON, ...), side by side.

Answers: which types are busy, waiting, failing, slow, losing or sticking runs, and which job
names within them are the busiest (each links to the By name dashboard).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import promql, rules
from dashboards.common import (
    RATE,
    SOURCE,
    TYPE,
    base,
    instant,
    name_link,
    quantile_queries,
    query,
    scope,
    sel,
    single,
    thresholds,
    ts,
    with_variables,
)
from dashboards.config import DEFAULT, Config


def build(cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """The By type dashboard: raw queries only, each shared series taken once."""
    s = scope(cfg, SOURCE, TYPE)
    stn = promql.STN
    st = ("source", "type")
    finished = promql.rate_once(promql.FINISHED, (*stn, "outcome"), RATE, cfg, *s)
    lost = promql.rate_once(promql.FINISHED, stn, RATE, cfg, *s, 'outcome="lost"')
    stuck = rules.stuck_age_expr(cfg, sel(*s), recorded=False)
    running = promql.gauge_once(promql.RUNNING, stn, cfg, *s)
    pending = promql.gauge_once(promql.PENDING, stn, cfg, *s)
    return (
        with_variables(
            base(
                "Jobs: By type",
                cfg.by_type_uid,
                "Background jobs of the selected sources, split by job type.",
                cfg,
            ),
            cfg,
            "source",
            "type",
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Jobs of the selected types running now.",
                "short",
                instant(f"sum({running}) or vector(0)"),
            )
        )
        .with_panel(
            single(
                "Pending",
                "Jobs of the selected types waiting to run.",
                "short",
                instant(f"sum({pending}) or vector(0)"),
                thresholds((None, "green"), (cfg.backlog_min_pending, "orange")),
            )
        )
        .with_panel(
            single(
                "Stuck",
                "Job names of these types whose oldest running job looks stuck.",
                "short",
                instant(f"count({stuck}) or vector(0)"),
                thresholds((None, "green"), (1, "red")),
            )
        )
        .with_row(dashboard.Row("Throughput"))
        .with_panel(
            ts(
                "Running by type",
                "Jobs running now.",
                "short",
                [query(promql.sum_by(("type",), running), "{{type}}")],
            )
        )
        .with_panel(
            ts(
                "Pending by type",
                "Jobs waiting to run; the line is where the backlog alert starts watching.",
                "short",
                [query(promql.sum_by(("type",), pending), "{{type}}")],
                threshold=cfg.backlog_min_pending,
            )
        )
        .with_panel(
            ts(
                "Started per second by type",
                "Jobs started.",
                "ops",
                [
                    query(
                        promql.sum_by(
                            ("type",), promql.rate_once(promql.STARTED, stn, RATE, cfg, *s)
                        ),
                        "{{type}}",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Finished per second by type and outcome",
                "Jobs finished: completed, failed or lost.",
                "ops",
                [query(promql.sum_by(("type", "outcome"), finished), "{{type}} {{outcome}}")],
            )
        )
        .with_panel(
            ts(
                "Failure ratio by type",
                "Failed over finished runs; the line is the alert threshold.",
                "percentunit",
                [query(promql.failure_ratio(st, RATE, cfg, *s), "{{source}} {{type}}")],
                threshold=cfg.failure_ratio_threshold,
            )
        )
        .with_panel(
            ts(
                "Lost per second by type",
                "Runs that vanished without finishing, or whose lease expired.",
                "ops",
                [
                    query(
                        f"{promql.sum_by(('type',), lost)}"
                        f" or 0 * {promql.sum_by(('type',), finished)}",
                        "{{type}}",
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Duration"))
        .with_panel(
            ts(
                "Duration percentiles by type",
                "How long finished runs of each type took.",
                "s",
                quantile_queries(
                    lambda q: promql.quantile(q, promql.DURATION, st, RATE, cfg, *s),
                    lambda p: "{{source}} {{type}} " + p,
                    exemplars=True,
                ),
            )
        )
        .with_panel(
            ts(
                "Oldest running job age by type",
                "Age of the oldest running job; the line is the stuck alert's floor.",
                "s",
                [
                    query(
                        f"max by (type) (time() - {promql.series(promql.OLDEST, cfg, *s)})",
                        "{{type}}",
                    )
                ],
                threshold=cfg.stuck_min_seconds,
            )
        )
        .with_row(dashboard.Row("Busiest names"))
        .with_panel(
            ts(
                "Top 10 names by started per second",
                "The busiest job functions of these types; open one in the By name dashboard.",
                "ops",
                [
                    query(
                        "topk(10, "
                        + promql.sum_by(stn, promql.rate_once(promql.STARTED, stn, RATE, cfg, *s))
                        + ")",
                        "{{type}} {{name}}",
                    )
                ],
            ).data_links([name_link(cfg)])
        )
        .with_panel(
            ts(
                "Top 10 names by failure ratio",
                "The job functions of these types that fail most often.",
                "percentunit",
                [
                    query(
                        f"topk(10, {promql.failure_ratio(stn, RATE, cfg, *s)})",
                        "{{type}} {{name}}",
                    )
                ],
                threshold=cfg.failure_ratio_threshold,
            ).data_links([name_link(cfg)])
        )
    )
