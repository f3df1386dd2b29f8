"""Summary: every job at a glance, and whether the exporter and its sources are healthy.

Answers: how many jobs run and wait now, how many start and finish (by outcome), how often they
fail, how long they take, whether any were lost or look stuck, whether schedules run on time,
and whether the numbers are fresh (exporter up, sources up, scrape errors).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common

from dashboards import rules
from dashboards.common import (
    SOURCE,
    base,
    datasource_variable,
    instant,
    label_variable,
    quantile_queries,
    query,
    single,
    thresholds,
    ts,
)
from dashboards.config import DEFAULT, Config


def build(cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """The Summary dashboard."""
    finished = rules.finished("source_type_outcome", cfg)
    finished_rate = f"{finished}{{{SOURCE}}}"
    failed_rate = f'{finished}{{{SOURCE}, outcome="failed"}}'
    lost_rate = f'{finished}{{{SOURCE}, outcome="lost"}}'
    stuck = rules.stuck_age_expr(cfg, SOURCE)
    buckets = rules.buckets(rules.DURATION, "source_type_le", cfg)
    # Series that may not exist until something goes wrong read 0 per source rather than nothing.
    zero_by_source = f"0 * sum by (source) (job_exporter_source_up{{{SOURCE}}})"
    return (
        base(
            "Jobs: Summary",
            cfg.summary_uid,
            "All background jobs of the selected sources, and the exporter's own health.",
            cfg,
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("source", "Source", ""))
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Jobs running now.",
                "short",
                instant(f"sum(background_jobs_running{{{SOURCE}}}) or vector(0)"),
            )
        )
        .with_panel(
            single(
                "Pending",
                "Jobs waiting to run, for a first run or a retry "
                "(job API, and sources that report pending).",
                "short",
                instant(f"sum(background_jobs_pending{{{SOURCE}}}) or vector(0)"),
                thresholds((None, "green"), (cfg.backlog_min_pending, "orange")),
            )
        )
        .with_panel(
            single(
                f"Failure ratio ({cfg.rate_window})",
                "Failed runs over all finished runs.",
                "percentunit",
                instant(f"(sum({failed_rate}) or vector(0)) / sum({finished_rate})"),
                thresholds((None, "green"), (cfg.failure_ratio_threshold, "red")),
            )
        )
        .with_panel(
            single(
                "Lost (1h)",
                "Runs that vanished from their source or whose lease expired, last hour.",
                "short",
                instant(
                    "sum(increase(background_jobs_finished_total"
                    f'{{{SOURCE}, outcome="lost"}}[1h])) or vector(0)'
                ),
                thresholds((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            single(
                "Stuck",
                "Job names whose oldest running job is far older than their usual duration "
                "(the BackgroundJobsStuck alert's condition).",
                "short",
                instant(f"count({stuck}) or vector(0)"),
                thresholds((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            single(
                "Oldest running job",
                "How long the oldest job still running has been running.",
                "s",
                instant(
                    "max(time() - background_jobs_oldest_start_timestamp_seconds"
                    f"{{{SOURCE}}}) or vector(0)"
                ),
                thresholds((None, "green"), (cfg.stuck_min_seconds, "orange")),
            )
        )
        .with_row(dashboard.Row("Throughput"))
        .with_panel(
            ts(
                "Running and pending",
                "Jobs running and waiting, by type.",
                "short",
                [
                    query(
                        f"sum by (type) (background_jobs_running{{{SOURCE}}})",
                        "running {{type}}",
                    ),
                    query(
                        f"sum by (type) (background_jobs_pending{{{SOURCE}}})",
                        "pending {{type}}",
                        ref_id="B",
                    ),
                ],
            )
        )
        .with_panel(
            ts(
                "Started per second",
                "Jobs started, by type.",
                "ops",
                [
                    query(
                        f"sum by (type) ({rules.started('source_type', cfg)}{{{SOURCE}}})",
                        "{{type}}",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Finished per second by outcome",
                "Jobs finished: completed, failed or lost.",
                "ops",
                [query(f"sum by (outcome) ({finished_rate})", "{{outcome}}")],
            )
        )
        .with_panel(
            ts(
                "Failure ratio by type",
                "Failed over finished runs; the line is the alert threshold.",
                "percentunit",
                [
                    query(
                        f"{rules.failure_ratio('source_type', cfg)}{{{SOURCE}}}",
                        "{{source}} {{type}}",
                    )
                ],
                threshold=cfg.failure_ratio_threshold,
            )
        )
        .with_row(dashboard.Row("Duration"))
        .with_panel(
            ts(
                "Duration percentiles",
                "How long finished runs took, all types together.",
                "s",
                quantile_queries(
                    lambda q: f"histogram_quantile({q}, sum by (le) ({buckets}{{{SOURCE}}}))",
                    lambda p: p,
                ),
            )
        )
        .with_panel(
            ts(
                "p95 duration by type",
                "95th percentile run time of each type.",
                "s",
                [
                    query(
                        rules.quantile(rules.DURATION, "source_type", cfg=cfg)
                        + f'{{{SOURCE}, quantile="0.95"}}',
                        "{{source}} {{type}}",
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Lost and stuck"))
        .with_panel(
            ts(
                "Lost per second by type",
                "Runs that vanished without finishing, or whose lease expired.",
                "ops",
                [
                    query(
                        f"sum by (type) ({lost_rate}) or 0 * sum by (type) ({finished_rate})",
                        "{{type}}",
                    )
                ],
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
                        f"background_jobs_oldest_start_timestamp_seconds{{{SOURCE}}})",
                        "{{type}}",
                    )
                ],
                threshold=cfg.stuck_min_seconds,
            )
        )
        .with_row(dashboard.Row("Schedules"))
        .with_panel(
            ts(
                "Oldest unanswered fire",
                "Per schedule (recurring job), how long ago the oldest fire since its last "
                "success was; the schedule alert fires above the line (the grace). Nothing "
                "drawn while every fire has a completed job.",
                "s",
                [
                    query(
                        f"time() - max by ({rules.SCHEDULE}) "
                        "(job_exporter_schedule_unanswered_fire_timestamp_seconds)",
                        "{{name}} ({{schedule}})",
                    )
                ],
                threshold=cfg.schedule_grace_seconds,
            )
        )
        .with_panel(
            ts(
                "Schedule fires per hour, by result",
                "on_time, late (missed while no exporter ran, run once), skipped (missed and "
                "not run), manual (run now from the API).",
                "short",
                [
                    query(
                        "sum by (schedule, name, result) "
                        "(increase(job_exporter_schedule_fires_total[1h]))",
                        "{{name}} {{result}}",
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Exporter health"))
        .with_panel(
            ts(
                "Exporter and sources up",
                "1 while Prometheus scrapes the exporter, and while the exporter scrapes "
                "each source.",
                "short",
                [
                    query(f"up{{{cfg.exporter_selector}}}", "exporter {{instance}}"),
                    query(
                        f"job_exporter_source_up{{{SOURCE}}}",
                        "source {{source}}",
                        ref_id="B",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            single(
                "Exporter version",
                "job_exporter_build_info of the scraped exporters.",
                "none",
                instant("max by (version) (job_exporter_build_info)", "{{version}}"),
            ).text_mode(common.BigValueTextMode.NAME)
        )
        .with_panel(
            ts(
                "Source scrape errors per second",
                "Failed scrapes of each source, by reason (0 while none failed).",
                "ops",
                [
                    query(
                        "sum by (source, reason) (rate(job_exporter_source_scrape_errors_total"
                        f"{{{SOURCE}}}[$__rate_interval])) or on (source) {zero_by_source}",
                        "{{source}} {{reason}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Source scrape duration",
                "How long the last scrape of each source took.",
                "s",
                [query(f"job_exporter_source_scrape_duration_seconds{{{SOURCE}}}", "{{source}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Since last successful scrape",
                "Seconds since each source last answered.",
                "s",
                [
                    query(
                        f"time() - job_exporter_source_last_success_timestamp_seconds{{{SOURCE}}}",
                        "{{source}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Tracked jobs",
                "Jobs the exporter remembers, per source.",
                "short",
                [query(f"job_exporter_tracked_jobs{{{SOURCE}}}", "{{source}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Invalid items and folded names per second",
                "Items skipped for an invalid field, and jobs whose name was folded into "
                "__other__ by the cardinality cap (0 while none).",
                "ops",
                [
                    query(
                        "sum by (source, field) (rate(job_exporter_invalid_jobs_total"
                        f"{{{SOURCE}}}[$__rate_interval])) or on (source) {zero_by_source}",
                        "invalid {{source}} {{field}}",
                    ),
                    query(
                        "sum by (source) (rate(job_exporter_folded_jobs_total"
                        f"{{{SOURCE}}}[$__rate_interval])) or {zero_by_source}",
                        "folded {{source}}",
                        ref_id="B",
                    ),
                ],
                span=8,
            )
        )
    )
