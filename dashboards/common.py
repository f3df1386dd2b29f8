"""House defaults for job-exporter's dashboards: panels, queries, variables and links.

Every dashboard builds its panels through these helpers, so units, legends, the datasource and
the cross-dashboard links look the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import prometheus as prom
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

from dashboards import promql
from dashboards.config import DEFAULT, QUANTILES, Config

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every panel queries raw series over Grafana's own rate window (at least four scrape
# intervals), so the dashboards work on a Prometheus that loaded none of our rules.
RATE = "$__rate_interval"

# Matchers each dashboard's variables feed into queries.
SOURCE = 'source=~"$source"'
TYPE = 'type=~"$type"'
NAME = 'name=~"$name"'


def sel(*matchers: str) -> str:
    """A label selector body from matchers, e.g. `source=~"$source", type=~"$type"`."""
    return ", ".join(matchers)


def deployment(cfg: Config = DEFAULT) -> tuple[str, ...]:
    """Matchers of the deployment variables the config enables, e.g. `job=~"$job"`."""
    return tuple(f'{label}=~"${name}"' for name, label in cfg.dashboard_variables())


def scope(cfg: Config = DEFAULT, *matchers: str) -> tuple[str, ...]:
    """The deployment matchers followed by `matchers`: what a panel puts on a series (the
    config's selector is added by `promql.series`)."""
    return (*deployment(cfg), *matchers)


def query(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    """A range query, as time series panels draw them."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).range()
    return q.legend_format(legend) if legend else q


def instant(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    """An instant query, for stats that show the value now."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).instant()
    return q.legend_format(legend) if legend else q


def heatmap_query(expr: str) -> prometheus.Dataquery:
    """Bucket increases, which Grafana draws as a heatmap by `le`; with exemplars, the id of
    a recent job of a bucket (OpenMetrics), which links to that job."""
    return (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id("A")
        .range()
        .format(prom.PromQueryFormat.HEATMAP)
        .legend_format("{{le}}")
        .exemplar(True)
    )


def quantile_queries(
    expr_for: Callable[[float], str],
    legend_for: Callable[[str], str],
    exemplars: bool = False,
) -> list[prometheus.Dataquery]:
    """One query per shared quantile, e.g. legend `p95` for 0.95; `exemplars` asks for the
    buckets' exemplars too (duration and queue wait)."""
    return [
        query(expr_for(q), legend_for(f"p{q * 100:g}"), ref_id=chr(ord("A") + i)).exemplar(
            exemplars
        )
        for i, q in enumerate(QUANTILES)
    ]


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: (None, base colour) first, then (value, colour) steps."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


OK = thresholds((None, "green"))


def ts(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    span: int = 12,
    threshold: float | None = None,
) -> timeseries.Panel:
    """A time series panel; `threshold` draws the alert's line, from the shared config."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(span)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builder.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .targets(targets)
    )
    if threshold is None:
        return panel.thresholds(OK)
    return panel.thresholds(thresholds((None, "green"), (threshold, "red"))).thresholds_style(
        common_builder.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
    )


def single(
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    limits: dashboard.ThresholdsConfig = OK,
    span: int = 4,
) -> stat.Panel:
    """A stat showing one current value, coloured by `limits`."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(span)
        .thresholds(limits)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(target)
    )


def distribution(title: str, description: str, expr: str, span: int = 12) -> heatmap.Panel:
    """A heatmap of histogram buckets (already bucketed by the exporter, so not recalculated)."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(span)
        .calculate(False)
        .show_tooltip()
        .show_y_histogram()
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_values(heatmap.CellValues().unit("short"))
        .with_target(heatmap_query(expr))
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    """Which Prometheus to query; provisioning names a default one."""
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str,
    label: str,
    *matchers: str,
    cfg: Config = DEFAULT,
    metric: str = "background_jobs_started_total",
    label_name: str | None = None,
) -> dashboard.QueryVariable:
    """A variable (with All) listing one label's values among the series the config's
    selector and `matchers` select."""
    series = promql.series(metric, cfg, *matchers)
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({series}, {label_name or name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return variable


def deployment_variables(cfg: Config = DEFAULT) -> list[dashboard.QueryVariable]:
    """The cluster, namespace and job variables the config enables, each listing the values
    among the exporter's series that the ones before it allow."""
    made = []
    before: list[str] = []
    for name, label in cfg.dashboard_variables():
        made.append(
            label_variable(
                name,
                name.capitalize(),
                *before,
                cfg=cfg,
                metric="job_exporter_build_info",
                label_name=label,
            )
        )
        before.append(f'{label}=~"${name}"')
    return made


def name_link(cfg: Config = DEFAULT) -> dashboard.DashboardLink:
    """Data link from a series labelled source, type and name to its By name dashboard; the
    values percent-encoded (names such as `a&b #1` break a raw URL), the deployment variables
    carried along as Grafana writes them (`${job:queryparam}`: `var-job=...`)."""
    carried = "".join(f"&${{{name}:queryparam}}" for name, _ in cfg.dashboard_variables())
    return dashboard.DashboardLink("Open ${__field.labels.name} in Jobs: By name").url(
        f"/d/{cfg.by_name_uid}?${{__url_time_range}}{carried}"
        "&var-source=${__field.labels.source:percentencode}"
        "&var-type=${__field.labels.type:percentencode}"
        "&var-name=${__field.labels.name:percentencode}"
    )


def base(title: str, uid: str, description: str, cfg: Config = DEFAULT) -> dashboard.Dashboard:
    """A dashboard with the house settings and links to its two siblings."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([cfg.dashboard_tag])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    siblings = [
        ("Summary", cfg.summary_uid),
        ("By type", cfg.by_type_uid),
        ("By name", cfg.by_name_uid),
    ]
    for link_title, link_uid in siblings:
        if link_uid == uid:
            continue
        board = board.link(
            dashboard.DashboardLink(f"Jobs: {link_title}")
            .type(DashboardLinkType.LINK)
            .url(f"/d/{link_uid}")
            .icon("dashboard")
            .include_vars(True)
            .keep_time(True)
        )
    return board


_JOB_VARIABLES = {"source": ("Source", SOURCE), "type": ("Type", TYPE), "name": ("Name", NAME)}


def with_variables(
    board: dashboard.Dashboard, cfg: Config = DEFAULT, *names: str
) -> dashboard.Dashboard:
    """The data source, the deployment variables the config enables, then the job variables
    `names` (of source, type, name), each listing what the ones before it allow."""
    board = board.with_variable(datasource_variable())
    for variable in deployment_variables(cfg):
        board = board.with_variable(variable)
    before = list(deployment(cfg))
    for name in names:
        label, matcher = _JOB_VARIABLES[name]
        board = board.with_variable(label_variable(name, label, *before, cfg=cfg))
        before.append(matcher)
    return board
