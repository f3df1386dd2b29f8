"""The one place for selectors, thresholds, windows and dashboard uids.

Alert rules, recording rules and dashboards all read these values, so an alert's threshold and
the line a dashboard draws for it cannot drift apart, and an alert can link the dashboard that
explains it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """Everything a deployment may want to change, with the defaults the project ships."""

    # Prometheus job that scrapes the exporter (prometheus/prometheus.yml uses this name); the
    # default `selector` matches it.
    exporter_job: str = "job-exporter"

    # Label matchers every rule, alert and panel puts on the exporter's series (and on `up`),
    # so nothing else in your Prometheus is read. kube-prometheus names the job after the
    # Service (`job="job-exporter"` for deploy/kubernetes); add e.g. `namespace="jobs"`.
    selector: str = 'job="job-exporter"'

    # Labels that tell one deployment of the exporter from another. Replicas of one deployment
    # (on one PostgreSQL) serve the same totals for every series read from the store, and differ
    # only in labels such as `instance` or `pod`: rules and panels take `max` across the
    # replicas of a series by these labels and its own, before any `sum`. A label your series
    # lack is harmless here (it groups as empty).
    cluster_label: str = "cluster"
    namespace_label: str = "namespace"
    job_label: str = "job"

    # Dashboard template variables for those labels (each filters the next: cluster,
    # namespace, job, then source): turn cluster and namespace on where the series carry them
    # (kube-prometheus adds `namespace`; a multi-cluster setup adds `cluster`).
    cluster_variable: bool = False
    namespace_variable: bool = False
    job_variable: bool = True

    # Window of the recorded rates and quantiles the alerts read (the dashboards query raw
    # series with Grafana's `$__rate_interval`, so they work without the recording rules).
    rate_window: str = "5m"

    # Failure ratio: failed / all finished over `failure_window`, above the ratio, while at
    # least `failure_min_finished` jobs finished in that window (one failure in one job is noise).
    failure_ratio_threshold: float = 0.10
    failure_min_finished: int = 10
    failure_window: str = "15m"
    failure_for: str = "15m"

    # Stuck: the oldest running job of a series is older than `stuck_factor` times its usual p95
    # duration (over `stuck_baseline_window`), and at least `stuck_min_seconds`; a series with
    # no duration history yet is stuck after `stuck_fallback_seconds`.
    stuck_factor: float = 3.0
    stuck_min_seconds: int = 900
    stuck_fallback_seconds: int = 14400
    stuck_baseline_window: str = "6h"
    stuck_for: str = "5m"

    # Lost: any job counted lost (vanished from its source, or lease expired) in the window.
    lost_window: str = "15m"
    lost_threshold: int = 0

    # Queue wait: p95 time from created to first started, over the rate window.
    queue_wait_p95_seconds: int = 300
    queue_wait_for: str = "10m"

    # Backlog: more pending jobs than this, and still growing over the window.
    backlog_min_pending: int = 100
    backlog_window: str = "30m"
    backlog_for: str = "15m"

    # Schedules (recurring jobs): the job created by a schedule's fire must complete within
    # this many seconds of the fire's instant (so, fire after fire, a success comes at least
    # once per period plus this grace), and a due fire must not be later than this.
    schedule_grace_seconds: int = 900

    # Exporter health.
    source_down_for: str = "5m"
    # A scraped source that no replica owns (`job_exporter_source_owned`, 1 on the replica
    # that scrapes it) for this long: takeover takes at most three scrape intervals.
    source_unowned_for: str = "5m"
    exporter_down_for: str = "5m"
    scrape_errors_window: str = "15m"
    scrape_errors_threshold: int = 3
    scrape_errors_for: str = "5m"
    # The store (SQLite or PostgreSQL) failing: counts freeze and writes get 503 at once, so
    # this waits only long enough to skip a blip (a database failover, a lock held a moment).
    store_down_for: str = "1m"
    # The wall clock stepped from the exporter's own time line by more than this (the
    # exporter itself ignores differences under 1 s); once stepped it stays until a restart or
    # a step back, so the wait only skips a step that is undone at once.
    clock_step_threshold_seconds: int = 5
    clock_step_for: str = "2m"

    # Where alerts point people: absolute, so a link opens from a pager or a chat message.
    # `grafana_url` is the compose demo's Grafana; set it to yours. `runbook_url` is a
    # placeholder meant to be overridden: where your copy of docs/runbook.md is served (a wiki,
    # your repository's web view); each alert links its own section (`#alertname`).
    grafana_url: str = "http://localhost:3000"
    runbook_url: str = "https://job-exporter.example.com/docs/runbook.md"
    # Where Grafana's exemplar links open a job (grafana/provisioning's datasource): the
    # exporter's own address as the browser reaches it (the compose demo publishes 9188).
    exporter_url: str = "http://localhost:9188"

    # Fixed dashboard uids, so links and alert annotations survive re-imports.
    summary_uid: str = "job-exporter-summary"
    by_type_uid: str = "job-exporter-by-type"
    by_name_uid: str = "job-exporter-by-name"
    dashboard_tag: str = "job-exporter"
    datasource_uid: str = "prometheus"

    @property
    def exporter_selector(self) -> str:
        """Label matchers for the exporter's own series and its scrape series (`up`)."""
        return self.selector

    @property
    def group_labels(self) -> tuple[str, ...]:
        """The labels a series keeps when the replicas of one deployment are merged."""
        return (self.cluster_label, self.namespace_label, self.job_label)

    def dashboard_variables(self) -> tuple[tuple[str, str], ...]:
        """(variable name, label) of the deployment variables the dashboards show, in order."""
        chosen = (
            (self.cluster_variable, "cluster", self.cluster_label),
            (self.namespace_variable, "namespace", self.namespace_label),
            (self.job_variable, "job", self.job_label),
        )
        return tuple((name, label) for enabled, name, label in chosen if enabled)

    def dashboard_url(self, uid: str) -> str:
        """Absolute link to a dashboard, for alert annotations."""
        return f"{self.grafana_url}/d/{uid}"

    def runbook(self, anchor: str) -> str:
        """Link to one alert's section of the runbook."""
        return f"{self.runbook_url}#{anchor}"


DEFAULT = Config()

# Quantiles the dashboards draw and the rules record.
QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
