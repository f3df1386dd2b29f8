"""Prometheus recording and alert rules, built from the shared config.

Recording rules precompute what the dashboards would otherwise compute on every refresh (rates,
ratios and histogram quantiles by type and by name); alert rules read the same records and the
thresholds in `config`, and link the dashboard and runbook section that explain them.
Names follow Prometheus's `level:metric:operations` convention.
"""

from __future__ import annotations

from typing import Any

import yaml

from dashboards import promql
from dashboards.config import DEFAULT, QUANTILES, Config

STN = "source, type, name"
ST = "source, type"

Rule = dict[str, Any]


def rate_suffix(window: str) -> str:
    """Operation suffix of a record over `window`, e.g. `rate5m`."""
    return f"rate{window}"


# Record names are functions of the config, so dashboards and alerts name them the same way.
def started(level: str, cfg: Config = DEFAULT) -> str:
    """Jobs started per second."""
    return f"{level}:background_jobs_started:{rate_suffix(cfg.rate_window)}"


def finished(level: str, cfg: Config = DEFAULT) -> str:
    """Jobs finished per second, by outcome (level ends in `_outcome`)."""
    return f"{level}:background_jobs_finished:{rate_suffix(cfg.rate_window)}"


def failure_ratio(level: str, cfg: Config = DEFAULT) -> str:
    """Failed over all finished jobs."""
    return f"{level}:background_jobs_failure_ratio:{rate_suffix(cfg.rate_window)}"


def buckets(metric: str, level: str, cfg: Config = DEFAULT) -> str:
    """Histogram bucket rates (level ends in `_le`)."""
    return f"{level}:{metric}_bucket:{rate_suffix(cfg.rate_window)}"


def quantile(metric: str, level: str, window: str | None = None, cfg: Config = DEFAULT) -> str:
    """Histogram quantiles; the quantile is a label."""
    return f"{level}:{metric}:quantile_{rate_suffix(window or cfg.rate_window)}"


def retries(level: str, cfg: Config = DEFAULT) -> str:
    """Retries scheduled per second, by trigger (level ends in `_trigger`)."""
    return f"{level}:background_jobs_retries:{rate_suffix(cfg.rate_window)}"


DURATION = "background_jobs_duration_seconds"
QUEUE_WAIT = "background_jobs_queue_wait_seconds"


def _ratio(numerator_record: str, by: str) -> str:
    """Failed / finished from a by-outcome record; 0 (not absent) when nothing failed."""
    return (
        f'  sum by ({by}) ({numerator_record}{{outcome="failed"}})\n'
        f"    or\n"
        f"  0 * sum by ({by}) ({numerator_record})\n"
        f")\n"
        f"/\n"
        f"(sum by ({by}) ({numerator_record}) > 0)\n"
    )


def _quantiles(bucket_record: str, record: str) -> list[Rule]:
    """One rule per quantile; NaN (no observations in the window) is dropped, not recorded."""
    return [
        {
            "record": record,
            "expr": f"histogram_quantile({q}, {bucket_record}) >= 0\n",
            "labels": {"quantile": str(q)},
        }
        for q in QUANTILES
    ]


def levels(cfg: Config = DEFAULT) -> tuple[str, str]:
    """The `by` lists of the two levels: (group labels, source, type, name) and without name.

    Every record keeps the group labels (cluster, namespace, job), so deployments stay apart.
    """
    group = promql.by(*cfg.group_labels)
    return f"{group}, {STN}", f"{group}, {ST}"


def recording_rules(cfg: Config = DEFAULT) -> list[Rule]:
    """The records the alerts read, each with the replicas counted once.

    The finest level takes `max` across the replicas (they serve the same totals, so the max
    of their rates is the true rate); the coarser ones sum the finest.
    """
    w = cfg.rate_window
    gstn, gst = levels(cfg)
    stn = promql.STN
    rules: list[Rule] = [
        {
            "record": started("source_type_name", cfg),
            "expr": promql.rate_once(promql.STARTED, stn, w, cfg) + "\n",
        },
        {
            "record": started("source_type", cfg),
            "expr": f"sum by ({gst}) ({started('source_type_name', cfg)})\n",
        },
        {
            "record": finished("source_type_name_outcome", cfg),
            "expr": promql.rate_once(promql.FINISHED, (*stn, "outcome"), w, cfg) + "\n",
        },
        {
            "record": finished("source_type_outcome", cfg),
            "expr": f"sum by ({gst}, outcome) ({finished('source_type_name_outcome', cfg)})\n",
        },
        {
            "record": failure_ratio("source_type_name", cfg),
            "expr": "(\n" + _ratio(finished("source_type_name_outcome", cfg), gstn),
        },
        {
            "record": failure_ratio("source_type", cfg),
            "expr": "(\n" + _ratio(finished("source_type_outcome", cfg), gst),
        },
        {
            "record": buckets(DURATION, "source_type_name_le", cfg),
            "expr": promql.rate_once(f"{DURATION}_bucket", (*stn, "le"), w, cfg) + "\n",
        },
        *_quantiles(
            buckets(DURATION, "source_type_name_le", cfg),
            quantile(DURATION, "source_type_name", cfg=cfg),
        ),
        {
            "record": buckets(DURATION, "source_type_le", cfg),
            "expr": f"sum by ({gst}, le) ({buckets(DURATION, 'source_type_name_le', cfg)})\n",
        },
        *_quantiles(
            buckets(DURATION, "source_type_le", cfg),
            quantile(DURATION, "source_type", cfg=cfg),
        ),
        {
            # The "usual" duration the stuck alert compares running jobs with.
            "record": quantile(DURATION, "source_type_name", cfg.stuck_baseline_window, cfg),
            "expr": promql.stuck_baseline(cfg) + "\n",
            "labels": {"quantile": "0.95"},
        },
        {
            "record": buckets(QUEUE_WAIT, "source_type_name_le", cfg),
            "expr": promql.rate_once(f"{QUEUE_WAIT}_bucket", (*stn, "le"), w, cfg) + "\n",
        },
        *_quantiles(
            buckets(QUEUE_WAIT, "source_type_name_le", cfg),
            quantile(QUEUE_WAIT, "source_type_name", cfg=cfg),
        ),
        {
            "record": retries("source_type_name_trigger", cfg),
            "expr": promql.rate_once(promql.RETRIES, (*stn, "trigger"), w, cfg) + "\n",
        },
    ]
    return rules


def stuck_age_expr(cfg: Config = DEFAULT, selector: str = "", recorded: bool = True) -> str:
    """Age of the oldest running job of each series, kept only where it counts as stuck.

    Shared by the alert (which reads the recorded baseline) and the dashboards' stuck counts
    (`recorded=False`: the baseline computed from the raw buckets, so they need no rules;
    they pass a `selector` such as `source=~"$source"`), so both agree on what stuck means.
    """
    gstn, _ = levels(cfg)
    if recorded:
        record = quantile(DURATION, "source_type_name", cfg.stuck_baseline_window, cfg)
        # Records hold only the selected series already: no selector on them.
        picked = ", ".join(part for part in (selector, 'quantile="0.95"') if part)
        baseline = f"max by ({gstn}) ({record}{{{picked}}})"
    else:
        baseline = f"({promql.stuck_baseline(cfg, selector)})"
    oldest = promql.series(promql.OLDEST, cfg, selector)
    return (
        f"(time() - max by ({gstn}) ({oldest}))\n"
        f"> on ({gstn})\n"
        f"(\n"
        f"  clamp_min({cfg.stuck_factor:g} * {baseline}, {cfg.stuck_min_seconds})\n"
        f"    or\n"
        f"  0 * max by ({gstn}) ({oldest})"
        f" + {cfg.stuck_fallback_seconds}\n"
        f")\n"
    )


def _vars(cfg: Config, *names: str) -> str:
    """`var-NAME={{ $labels.LABEL | urlquery }}` for the deployment variables the dashboards
    have and then `names`, joined by `&` (URL-escaped: job names such as
    `POST /webhooks/stripe` hold spaces and slashes)."""
    pairs = [*cfg.dashboard_variables(), *((name, name) for name in names)]
    return "&".join(f"var-{var}={{{{ $labels.{label} | urlquery }}}}" for var, label in pairs)


def _name_link(cfg: Config) -> str:
    """Dashboard link for an alert labelled with source, type and name."""
    return f"{cfg.dashboard_url(cfg.by_name_uid)}?{_vars(cfg, 'source', 'type', 'name')}"


def _summary_link(cfg: Config, with_source: bool) -> str:
    """Summary dashboard link, filtered to the alert's deployment, and to its source when it
    has one."""
    query = _vars(cfg, *(("source",) if with_source else ()))
    return cfg.dashboard_url(cfg.summary_uid) + (f"?{query}" if query else "")


def _alert(
    cfg: Config,
    name: str,
    expr: str,
    for_: str | None,
    severity: str,
    summary: str,
    description: str,
    dashboard: str,
) -> Rule:
    """One alert rule with the annotations every alert carries."""
    rule: Rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "dashboard": dashboard,
        "runbook_url": cfg.runbook(name.lower()),
    }
    return rule


def job_alert_rules(cfg: Config = DEFAULT) -> list[Rule]:
    """Alerts about the jobs themselves; every series the replicas share is taken once."""
    job = "{{ $labels.type }} job {{ $labels.name }} on source {{ $labels.source }}"
    gstn, _ = levels(cfg)
    stn = promql.STN
    window = cfg.failure_window
    finished_in = promql.sum_by(
        (*cfg.group_labels, *stn),
        promql.rate_once(promql.FINISHED, (*stn, "outcome"), window, cfg, fn="increase"),
    )
    failed_in = promql.rate_once(
        promql.FINISHED, stn, window, cfg, 'outcome="failed"', fn="increase"
    )
    lost_in = promql.rate_once(
        promql.FINISHED, stn, cfg.lost_window, cfg, 'outcome="lost"', fn="increase"
    )
    lost = promql.series(promql.FINISHED, cfg, 'outcome="lost"')
    up = promql.series("up", cfg)
    pending = promql.gauge_once(promql.PENDING, stn, cfg)
    growth = promql.rate_once(promql.PENDING, stn, cfg.backlog_window, cfg, fn="deriv")
    return [
        _alert(
            cfg,
            "BackgroundJobsFailureRatioHigh",
            f"(\n  {failed_in}\n/\n  {finished_in}\n)"
            f" > {cfg.failure_ratio_threshold:g}\n"
            f"and\n{finished_in} >= {cfg.failure_min_finished}\n",
            cfg.failure_for,
            "warning",
            f"Many runs of {job} fail",
            f"{{{{ $value | humanizePercentage }}}} of the runs of {job} that finished in the "
            f"last {cfg.failure_window} failed (threshold "
            f"{cfg.failure_ratio_threshold:.0%}, from {cfg.failure_min_finished} runs).",
            _name_link(cfg),
        ),
        _alert(
            cfg,
            "BackgroundJobsStuck",
            stuck_age_expr(cfg),
            cfg.stuck_for,
            "warning",
            f"A run of {job} looks stuck",
            f"The oldest running {job} started {{{{ $value | humanizeDuration }}}} ago, "
            f"over {cfg.stuck_factor:g} times its usual p95 duration "
            f"(at least {cfg.stuck_min_seconds}s; {cfg.stuck_fallback_seconds}s without history).",
            _name_link(cfg),
        ),
        _alert(
            cfg,
            "BackgroundJobsLost",
            f"{lost_in} > {cfg.lost_threshold}\n"
            f"or\n"
            f"# a series born with its first lost job has no increase yet; it is new only if the\n"
            f"# exporter was already scraped then (not after a restart of Prometheus)\n"
            f"max by ({gstn}) (\n"
            f"  {lost} unless {lost} offset {cfg.lost_window}\n"
            f"  and on (job, instance) {up} offset {cfg.lost_window} == 1\n"
            f") > {cfg.lost_threshold}\n",
            None,
            "warning",
            f"Runs of {job} were lost",
            f"{{{{ $value | humanize }}}} runs of {job} were lost in the last {cfg.lost_window}: "
            f"they vanished from their source without finishing, or their lease expired.",
            _name_link(cfg),
        ),
        _alert(
            cfg,
            "BackgroundJobsQueueWaitHigh",
            f'{quantile(QUEUE_WAIT, "source_type_name", cfg=cfg)}{{quantile="0.95"}}'
            f" > {cfg.queue_wait_p95_seconds}\n",
            cfg.queue_wait_for,
            "warning",
            f"Runs of {job} wait long to start",
            f"p95 queue wait of {job} is {{{{ $value | humanizeDuration }}}} "
            f"(threshold {cfg.queue_wait_p95_seconds}s).",
            _name_link(cfg),
        ),
        _alert(
            cfg,
            "BackgroundJobsBacklogGrowing",
            f"{pending} > {cfg.backlog_min_pending}\nand\n{growth} > 0\n",
            cfg.backlog_for,
            "warning",
            f"The backlog of {job} keeps growing",
            f"{{{{ $value | humanize }}}} runs of {job} are pending, more than "
            f"{cfg.backlog_min_pending}, and the backlog grew over the last {cfg.backlog_window}.",
            _name_link(cfg),
        ),
    ]


def exporter_alert_rules(cfg: Config = DEFAULT) -> list[Rule]:
    """Alerts about the exporter and the sources it scrapes.

    Whether a replica is scraped, reaches its store and keeps its clock is per replica (one
    alert each); a source's health is per source, whichever replica scrapes it.
    """
    group = promql.by(*cfg.group_labels)
    return [
        _alert(
            cfg,
            "JobExporterDown",
            f"{promql.series('up', cfg)} == 0\n",
            cfg.exporter_down_for,
            "critical",
            "job-exporter {{ $labels.instance }} is down",
            f"Prometheus could not scrape job-exporter at {{{{ $labels.instance }}}} for "
            f"{cfg.exporter_down_for}: no job metrics are collected from it.",
            _summary_link(cfg, with_source=False),
        ),
        _alert(
            cfg,
            "JobExporterSourceDown",
            # Only the replica that owns a source serves its up; max keeps one per source.
            f"max by ({group}, source) ({promql.series('job_exporter_source_up', cfg)}) == 0\n",
            cfg.source_down_for,
            "critical",
            "job-exporter cannot scrape source {{ $labels.source }}",
            f"The last scrapes of source {{{{ $labels.source }}}} failed for "
            f"{cfg.source_down_for}: its job counts are frozen.",
            _summary_link(cfg, with_source=True),
        ),
        _alert(
            cfg,
            "JobExporterSourceUnowned",
            f"max by ({group}, source) ({promql.series('job_exporter_source_owned', cfg)}) == 0\n",
            cfg.source_unowned_for,
            "critical",
            "No job-exporter replica scrapes source {{ $labels.source }}",
            f"Every replica serving source {{{{ $labels.source }}}} has stood by for "
            f"{cfg.source_unowned_for} (job_exporter_source_owned is 0 on all of them): nobody "
            f"scrapes it, so its job counts are frozen. A takeover takes at most three scrape "
            f"intervals.",
            _summary_link(cfg, with_source=True),
        ),
        _alert(
            cfg,
            "JobExporterScrapeErrors",
            promql.rate_once(
                "job_exporter_source_scrape_errors_total",
                ("source", "reason"),
                cfg.scrape_errors_window,
                cfg,
                fn="increase",
            )
            + f" > {cfg.scrape_errors_threshold}\n",
            cfg.scrape_errors_for,
            "warning",
            "Scrapes of source {{ $labels.source }} keep failing ({{ $labels.reason }})",
            f"{{{{ $value | humanize }}}} scrapes of source {{{{ $labels.source }}}} failed with "
            f"reason {{{{ $labels.reason }}}} in the last {cfg.scrape_errors_window} "
            f"(threshold {cfg.scrape_errors_threshold}).",
            _summary_link(cfg, with_source=True),
        ),
        _alert(
            cfg,
            "JobExporterStoreDown",
            f"{promql.series('job_exporter_store_up', cfg)} == 0\n",
            cfg.store_down_for,
            "critical",
            "job-exporter {{ $labels.instance }} cannot use its store",
            f"The store of job-exporter at {{{{ $labels.instance }}}} has failed for "
            f"{cfg.store_down_for}: the job counts it shows are frozen at the last ones read, "
            f"and it refuses writes (pushes, the job API) with 503. Its log says why (once when "
            f"the store fails, once when it is back); /readyz names the fault.",
            _summary_link(cfg, with_source=False),
        ),
        _alert(
            cfg,
            "JobExporterClockStepped",
            f"abs({promql.series('job_exporter_clock_step_seconds', cfg)})"
            f" > {cfg.clock_step_threshold_seconds}\n",
            cfg.clock_step_for,
            "warning",
            "The wall clock of job-exporter {{ $labels.instance }} stepped",
            f"The wall clock of job-exporter at {{{{ $labels.instance }}}} stepped "
            f"{{{{ $value | humanizeDuration }}}} away from the exporter's own time line "
            f"(threshold {cfg.clock_step_threshold_seconds}s): the timestamps it shows are that "
            f"far off the wall clock, while cron schedules follow the wall clock. A restart "
            f"adopts the wall clock.",
            _summary_link(cfg, with_source=False),
        ),
    ]


SCHEDULE = "schedule, type, name"


def schedule_overdue_expr(cfg: Config = DEFAULT) -> str:
    """A schedule with a fire that no completed job has answered within the grace, or whose
    due fire has not happened within it; paused schedules never alert.

    The exporter tracks the oldest fire since the last success, so the deadline follows the
    timetable: an interval job that never completes alerts one grace after its first silent
    fire, while a weekdays-only cron job stays quiet over the weekend. Every replica exports
    the same schedules (read from the shared store), so each series is reduced by schedule
    first: one alert per schedule, however many replicas serve it.
    """
    grace = cfg.schedule_grace_seconds
    group = promql.by(*cfg.group_labels)
    by = f"by ({group}, {SCHEDULE})"
    unanswered = promql.series("job_exporter_schedule_unanswered_fire_timestamp_seconds", cfg)
    next_fire = promql.series("job_exporter_schedule_next_fire_timestamp_seconds", cfg)
    paused = promql.series("job_exporter_schedule_paused", cfg)
    return (
        f"(\n"
        f"  # a fire no completed job has answered within the grace\n"
        f"  time() - max {by} ({unanswered})\n"
        f"    > {grace}\n"
        f"or\n"
        f"  # a due fire that has not happened within the grace (no replica sweeps)\n"
        f"  time() - min {by} ({next_fire})\n"
        f"    > {grace}\n"
        f")\n"
        f"unless on ({group}, schedule) max {by} ({paused}) == 1\n"
    )


def schedule_alert_rules(cfg: Config = DEFAULT) -> list[Rule]:
    """Alerts about schedules (recurring jobs): the healthchecks.io promise in Prometheus."""
    schedule = "schedule {{ $labels.schedule }} ({{ $labels.type }} job {{ $labels.name }})"
    return [
        _alert(
            cfg,
            "JobScheduleOverdue",
            schedule_overdue_expr(cfg),
            None,
            "warning",
            f"The {schedule} did not run to completion on time",
            f"A fire of {schedule} {{{{ $value | humanizeDuration }}}} ago has no completed job "
            f"since (or a due fire is that late), beyond the {cfg.schedule_grace_seconds}s "
            f"grace.",
            _summary_link(cfg, with_source=False),
        ),
    ]


# File name (under prometheus/rules/) -> group name -> rules.
def rule_files(cfg: Config = DEFAULT) -> dict[str, dict[str, list[Rule]]]:
    """Every generated rule file, one group per file so each has one test file beside it."""
    return {
        "recording.rules.yml": {"job-exporter.recording": recording_rules(cfg)},
        "job-alerts.rules.yml": {"job-exporter.jobs": job_alert_rules(cfg)},
        "exporter-alerts.rules.yml": {"job-exporter.exporter": exporter_alert_rules(cfg)},
        "schedule-alerts.rules.yml": {"job-exporter.schedules": schedule_alert_rules(cfg)},
    }


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (PromQL) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    """Literal block style for multi-line strings, plain style otherwise."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = "# Generated by `python -m dashboards` from dashboards/rules.py: edit that, not this.\n"


def render(groups: dict[str, list[Rule]]) -> str:
    """One rule file's text, stable byte for byte."""
    doc = {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]}
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)
