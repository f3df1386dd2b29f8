"""By type: the Summary's questions for each job type (HTTP, TASK, CRON, ...), side by side.

Answers: which types are busy, waiting, failing, slow, losing or sticking runs, and which job
names within them are the busiest (each links to the By name dashboard).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import rules
from dashboards.common import (
    SOURCE,
    TYPE,
    base,
    datasource_variable,
    instant,
    label_variable,
    name_link,
    quantile_queries,
    query,
    sel,
    single,
    thresholds,
    ts,
)
from dashboards.config import DEFAULT, Config


def build(cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """The By type dashboard."""
    st = sel(SOURCE, TYPE)
    finished = rules.finished("source_type_outcome", cfg)
    stuck = rules.stuck_age_expr(cfg, st)
    duration = rules.quantile(rules.DURATION, "source_type", cfg=cfg)
    return (
        base(
            "Jobs: By type",
            cfg.by_type_uid,
            "Background jobs of the selected sources, split by job type.",
            cfg,
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("source", "Source", ""))
        .with_variable(label_variable("type", "Type", SOURCE))
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Jobs of the selected types running now.",
                "short",
                instant(f"sum(background_jobs_running{{{st}}}) or vector(0)"),
            )
        )
        .with_panel(
            single(
                "Pending",
                "Jobs of the selected types waiting to run.",
                "short",
                instant(f"sum(background_jobs_pending{{{st}}}) or vector(0)"),
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
                [query(f"sum by (type) (background_jobs_running{{{st}}})", "{{type}}")],
            )
        )
        .with_panel(
            ts(
                "Pending by type",
                "Jobs waiting to run; the line is where the backlog alert starts watching.",
                "short",
                [query(f"sum by (type) (background_jobs_pending{{{st}}})", "{{type}}")],
                threshold=cfg.backlog_min_pending,
            )
        )
        .with_panel(
            ts(
                "Started per second by type",
                "Jobs started.",
                "ops",
                [query(f"sum by (type) ({rules.started('source_type', cfg)}{{{st}}})", "{{type}}")],
            )
        )
        .with_panel(
            ts(
                "Finished per second by type and outcome",
                "Jobs finished: completed, failed or lost.",
                "ops",
                [query(f"sum by (type, outcome) ({finished}{{{st}}})", "{{type}} {{outcome}}")],
            )
        )
        .with_panel(
            ts(
                "Failure ratio by type",
                "Failed over finished runs; the line is the alert threshold.",
                "percentunit",
                [
                    query(
                        f"{rules.failure_ratio('source_type', cfg)}{{{st}}}",
                        "{{source}} {{type}}",
                    )
                ],
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
                        f'sum by (type) ({finished}{{{st}, outcome="lost"}})'
                        f" or 0 * sum by (type) ({finished}{{{st}}})",
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
                    lambda q: f'{duration}{{{st}, quantile="{q}"}}',
                    lambda p: "{{source}} {{type}} " + p,
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
                        "max by (type) (time() - "
                        f"background_jobs_oldest_start_timestamp_seconds{{{st}}})",
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
                        "topk(10, sum by (source, type, name) ("
                        f"{rules.started('source_type_name', cfg)}{{{st}}}))",
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
                        f"topk(10, {rules.failure_ratio('source_type_name', cfg)}{{{st}}})",
                        "{{type}} {{name}}",
                    )
                ],
                threshold=cfg.failure_ratio_threshold,
            ).data_links([name_link(cfg)])
        )
    )
