"""Summary: every job at a glance, and whether the exporter and its sources are healthy.

Answers: how many jobs run and wait now, how many start and finish (by outcome), how often they
fail, how long they take, whether any were lost or look stuck, whether schedules run on time,
and whether the numbers are fresh (exporter up, sources up, scrape errors).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common

from dashboards import promql, rules
from dashboards.common import (
    RATE,
    SOURCE,
    base,
    instant,
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
    """The Summary dashboard: raw queries only, each shared series taken once."""
    s = scope(cfg, SOURCE)
    deploy = scope(cfg)
    stn = promql.STN
    outcome = (*stn, "outcome")
    finished = promql.rate_once(promql.FINISHED, outcome, RATE, cfg, *s)
    lost = promql.rate_once(promql.FINISHED, stn, RATE, cfg, *s, 'outcome="lost"')
    stuck = rules.stuck_age_expr(cfg, sel(*s), recorded=False)
    source_up = promql.series("job_exporter_source_up", cfg, *s)
    # Series that may not exist until something goes wrong read 0 per source rather than nothing.
    zero_by_source = f"0 * max by (source) ({source_up})"
    return (
        with_variables(
            base(
                "Jobs: Summary",
                cfg.summary_uid,
                "All background jobs of the selected sources, and the exporter's own health.",
                cfg,
            ),
            cfg,
            "source",
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Running",
                "Jobs running now.",
                "short",
                instant(f"sum({promql.gauge_once(promql.RUNNING, stn, cfg, *s)}) or vector(0)"),
            )
        )
        .with_panel(
            single(
                "Pending",
                "Jobs waiting to run, for a first run or a retry "
                "(job API, and sources that report pending).",
                "short",
                instant(f"sum({promql.gauge_once(promql.PENDING, stn, cfg, *s)}) or vector(0)"),
                thresholds((None, "green"), (cfg.backlog_min_pending, "orange")),
            )
        )
        .with_panel(
            single(
                f"Failure ratio ({cfg.rate_window})",
                "Failed runs over all finished runs.",
                "percentunit",
                instant(promql.failure_ratio(None, cfg.rate_window, cfg, *s)),
                thresholds((None, "green"), (cfg.failure_ratio_threshold, "red")),
            )
        )
        .with_panel(
            single(
                "Lost (1h)",
                "Runs that vanished from their source or whose lease expired, last hour.",
                "short",
                instant(
                    "sum("
                    + promql.rate_once(
                        promql.FINISHED, stn, "1h", cfg, *s, 'outcome="lost"', fn="increase"
                    )
                    + ") or vector(0)"
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
                instant(f"max(time() - {promql.series(promql.OLDEST, cfg, *s)}) or vector(0)"),
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
                        promql.sum_by(("type",), promql.gauge_once(promql.RUNNING, stn, cfg, *s)),
                        "running {{type}}",
                    ),
                    query(
                        promql.sum_by(("type",), promql.gauge_once(promql.PENDING, stn, cfg, *s)),
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
                "Finished per second by outcome",
                "Jobs finished: completed, failed or lost.",
                "ops",
                [query(promql.sum_by(("outcome",), finished), "{{outcome}}")],
            )
        )
        .with_panel(
            ts(
                "Failure ratio by type",
                "Failed over finished runs; the line is the alert threshold.",
                "percentunit",
                [
                    query(
                        promql.failure_ratio(("source", "type"), RATE, cfg, *s),
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
                    lambda q: promql.quantile(q, promql.DURATION, (), RATE, cfg, *s),
                    lambda p: p,
                    exemplars=True,
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
                        promql.quantile(0.95, promql.DURATION, ("source", "type"), RATE, cfg, *s),
                        "{{source}} {{type}}",
                    ).exemplar(True)
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
                        f"{promql.sum_by(('type',), lost)}"
                        f" or 0 * {promql.sum_by(('type',), finished)}",
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
                        f"max by (type) (time() - {promql.series(promql.OLDEST, cfg, *s)})",
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
                        f"time() - max by ({promql.by(*promql.SCHEDULE)}) ("
                        + promql.series(
                            "job_exporter_schedule_unanswered_fire_timestamp_seconds", cfg, *deploy
                        )
                        + ")",
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
                        promql.sum_by(
                            ("schedule", "name", "result"),
                            promql.rate_once(
                                "job_exporter_schedule_fires_total",
                                (*promql.SCHEDULE, "result"),
                                "1h",
                                cfg,
                                *deploy,
                                fn="increase",
                            ),
                        ),
                        "{{name}} {{result}}",
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Exporter health"))
        .with_panel(
            ts(
                "Exporter and sources up",
                "1 while Prometheus scrapes each exporter replica, and while the source is "
                "scraped (by the replica that owns it).",
                "short",
                [
                    query(promql.series("up", cfg, *deploy), "exporter {{instance}}"),
                    query(f"max by (source) ({source_up})", "source {{source}}", ref_id="B"),
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Replicas scraping each source",
                "How many replicas own each scraped source (job_exporter_source_owned): 1 as it "
                "should be; 0 means none scrapes it and its counts freeze (the "
                "JobExporterSourceUnowned alert).",
                "short",
                [
                    query(
                        "sum by (source) ("
                        + promql.series("job_exporter_source_owned", cfg, *s)
                        + ")",
                        "{{source}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            single(
                "Exporter version",
                "job_exporter_build_info of the scraped exporters.",
                "none",
                instant(
                    f"max by (version) ({promql.series('job_exporter_build_info', cfg, *deploy)})",
                    "{{version}}",
                ),
            ).text_mode(common.BigValueTextMode.NAME)
        )
        .with_panel(
            ts(
                "Source scrape errors per second",
                "Failed scrapes of each source, by reason (0 while none failed).",
                "ops",
                [
                    query(
                        promql.sum_by(
                            ("source", "reason"),
                            promql.rate_once(
                                "job_exporter_source_scrape_errors_total",
                                ("source", "reason"),
                                RATE,
                                cfg,
                                *s,
                            ),
                        )
                        + f" or on (source) {zero_by_source}",
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
                [
                    query(
                        "max by (source) ("
                        + promql.series("job_exporter_source_scrape_duration_seconds", cfg, *s)
                        + ")",
                        "{{source}}",
                    )
                ],
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
                        "time() - max by (source) ("
                        + promql.series(
                            "job_exporter_source_last_success_timestamp_seconds", cfg, *s
                        )
                        + ")",
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
                [
                    query(
                        promql.sum_by(
                            ("source",),
                            promql.gauge_once("job_exporter_tracked_jobs", ("source",), cfg, *s),
                        ),
                        "{{source}}",
                    )
                ],
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
                        promql.sum_by(
                            ("source", "field"),
                            promql.rate_once(
                                "job_exporter_invalid_jobs_total",
                                ("source", "field"),
                                RATE,
                                cfg,
                                *s,
                            ),
                        )
                        + f" or on (source) {zero_by_source}",
                        "invalid {{source}} {{field}}",
                    ),
                    query(
                        promql.sum_by(
                            ("source",),
                            promql.rate_once(
                                "job_exporter_folded_jobs_total", ("source",), RATE, cfg, *s
                            ),
                        )
                        + f" or {zero_by_source}",
                        "folded {{source}}",
                        ref_id="B",
                    ),
                ],
                span=8,
            )
        )
    )
