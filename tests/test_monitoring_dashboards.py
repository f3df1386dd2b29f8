"""The generated Grafana dashboards: shape, links, variables, and queries promtool can parse."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import queries
from dashboards.config import DEFAULT
from tests.helpers.processes import require_tool

BOARDS = queries.dashboards()
UIDS = {
    "summary.json": DEFAULT.summary_uid,
    "by-type.json": DEFAULT.by_type_uid,
    "by-name.json": DEFAULT.by_name_uid,
}
# The default config shows a job variable (no cluster or namespace: the compose demo has none).
VARIABLES = {
    "summary.json": ["datasource", "job", "source"],
    "by-type.json": ["datasource", "job", "source", "type"],
    "by-name.json": ["datasource", "job", "source", "type", "name"],
}


def test_three_dashboards_with_fixed_uids() -> None:
    """Summary, By type and By name exist under the uids alerts and links use."""
    assert {name: board["uid"] for name, board in BOARDS.items()} == UIDS


@pytest.mark.parametrize("name", sorted(UIDS))
def test_json_is_sorted_and_stable(name: str) -> None:
    """The file is JSON with sorted keys, two-space indent and a final newline."""
    text = (queries.DASHBOARDS_DIR / name).read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_variables(name: str) -> None:
    """Each dashboard has its variables, in order, each one filtering the next."""
    listed = [v["name"] for v in BOARDS[name]["templating"]["list"]]
    assert listed == VARIABLES[name]
    variable_queries = queries.variable_queries(BOARDS[name])
    assert variable_queries["job"] == (
        f"label_values(job_exporter_build_info{{{DEFAULT.selector}}}, job)"
    )
    assert variable_queries["source"] == (
        f'label_values(background_jobs_started_total{{{DEFAULT.selector}, job=~"$job"}}, source)'
    )
    if "type" in variable_queries:
        assert "$source" in variable_queries["type"]
    if "name" in variable_queries:
        assert "$source" in variable_queries["name"] and "$type" in variable_queries["name"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_links_to_the_other_two(name: str) -> None:
    """Each dashboard links its two siblings, keeping the time range and the variables."""
    links = BOARDS[name]["links"]
    assert {link["url"] for link in links} == {
        f"/d/{uid}" for other, uid in UIDS.items() if other != name
    }
    assert all(link["includeVars"] and link["keepTime"] for link in links)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panels_query_the_datasource_variable_and_filter_by_source(name: str) -> None:
    """Every query panel reads `${datasource}`; every job query honours `$source`."""
    board = BOARDS[name]
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']} has no query"
    for query in queries.panel_queries(board):
        names = queries.metric_names(query.expr)
        if any(n.startswith("background_jobs_") or "background_jobs" in n for n in names):
            assert "$source" in query.expr, f"{query.panel}: {query.expr}"
    for variable in VARIABLES[name][2:]:
        assert any(f"${variable}" in q.expr for q in queries.panel_queries(board))


def test_by_name_has_a_duration_heatmap() -> None:
    """By name draws the whole duration distribution, not only percentiles."""
    heatmaps = [p for p in BOARDS["by-name.json"]["panels"] if p["type"] == "heatmap"]
    assert any(
        "background_jobs_duration_seconds_bucket" in p["targets"][0]["expr"] for p in heatmaps
    )
    assert all(p["targets"][0]["format"] == "heatmap" for p in heatmaps)


def test_thresholds_come_from_the_shared_config() -> None:
    """The failure-ratio panels colour at the alert's threshold."""
    found = []
    for board in BOARDS.values():
        for panel in board["panels"]:
            if panel.get("title", "").startswith("Failure ratio"):
                steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                found.append([s["value"] for s in steps])
    assert found
    assert all(values == [None, DEFAULT.failure_ratio_threshold] for values in found)


@pytest.mark.slow
def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses every query once Grafana's variables and macros are expanded."""
    promtool = require_tool("promtool")
    values = {
        "source": "demo",
        "type": "TASK",
        "name": "send_email",
        "job": "job-exporter",
        "datasource": "prometheus",
    }
    rules = []
    for board in BOARDS.values():
        exprs = [q.expr for q in queries.panel_queries(board)]
        for expr in exprs:
            expanded = queries.expand(expr, values, "1m")
            assert "$" not in expanded, expanded
            rules.append({"record": f"check:panel_{len(rules)}", "expr": expanded})
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_expand_replaces_longest_names_first() -> None:
    """`$__rate_interval` is one macro, and `${var}` and `$var` both expand."""
    expanded = queries.expand(
        'rate(x{a=~"$source", b=~"${type}"}[$__rate_interval])',
        {"source": "demo", "type": "TASK"},
        "10s",
    )
    assert expanded == 'rate(x{a=~"demo", b=~"TASK"}[10s])'


def test_metric_names_ignore_strings_and_comments() -> None:
    """Label values and comments are not read as series names."""
    names = queries.metric_names(
        'sum(background_jobs_running{name="job_exporter_fake"}) # background_jobs_nope\n/ a:b:c'
    )
    assert names == {"background_jobs_running", "a:b:c"}


def test_grafana_regex_escape_matches_grafana() -> None:
    """Values are escaped the way Grafana's Prometheus datasource does for `=~`: regex
    metacharacters get a backslash, doubled inside the PromQL string; spaces and slashes stay."""
    assert queries.grafana_regex_escape("callback.order_shipped") == "callback\\\\.order_shipped"
    assert queries.grafana_regex_escape("POST /webhooks/stripe") == "POST /webhooks/stripe"
    assert queries.grafana_regex_escape("a(b)|c") == "a\\\\(b\\\\)\\\\|c"


# Families every replica on one store serves alike (read from the shared store): a query must
# take each once (`max` across the replicas) before it sums anything.
SHARED = (
    "background_jobs_running",
    "background_jobs_pending",
    "background_jobs_started_total",
    "background_jobs_finished_total",
    "background_jobs_retries_total",
    "background_jobs_duration_seconds_bucket",
    "background_jobs_queue_wait_seconds_bucket",
    "job_exporter_source_scrape_errors_total",
    "job_exporter_invalid_jobs_total",
    "job_exporter_folded_jobs_total",
    "job_exporter_tracked_jobs",
    "job_exporter_schedule_fires_total",
)
_GROUP = ", ".join(DEFAULT.group_labels)


def unmerged(expr: str) -> list[str]:
    """Reads of shared families in `expr` that are not directly inside `max by (group labels,
    ...)`: as a gauge, or through a rate, increase or deriv over a window."""
    found = []
    for family in SHARED:
        reads = len(re.findall(rf"\b{family}\{{", expr))
        merged = len(
            re.findall(
                rf"max by \({_GROUP}, [^)]*\) \("
                rf"(?:(?:rate|increase|deriv)\()?{family}\{{[^}}]*\}}(?:\[[^\]]+\]\))?\)",
                expr,
            )
        )
        if reads != merged:
            found.append(family)
    return found


def test_every_shared_series_is_taken_once_in_panels_and_rules() -> None:
    """Each read of a shared family, in every panel and every rule, is `max` across the
    replicas by the group labels and its own labels, so two replicas are not two jobs."""
    exprs = [(q.panel, q.expr) for board in BOARDS.values() for q in queries.panel_queries(board)]
    # BackgroundJobsLost's second branch takes `max by` of a set expression (a series new in
    # the window); its promtool case with two replicas checks that it counts them once.
    exprs += [
        (r.get("record") or r["alert"], r["expr"])
        for r in queries.rules()
        if r.get("alert") != "BackgroundJobsLost"
    ]
    assert len(exprs) > 60
    bad = [(where, unmerged(expr)) for where, expr in exprs if unmerged(expr)]
    assert not bad, bad


def test_unmerged_finds_a_plain_sum() -> None:
    """The check above can fail: a sum of the raw series is caught."""
    assert unmerged('sum(rate(background_jobs_started_total{job="x"}[5m]))') == [
        "background_jobs_started_total"
    ]
    assert not unmerged(
        f'sum(max by ({_GROUP}, source) (rate(background_jobs_started_total{{job="x"}}[5m])))'
    )


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panels_need_no_recording_rule(name: str) -> None:
    """Every panel query reads raw series only (a Prometheus without our rules shows them
    all), over `$__rate_interval` or a window its title names."""
    for query in queries.panel_queries(BOARDS[name]):
        records = [n for n in queries.metric_names(query.expr) if ":" in n]
        assert not records, f"{query.panel} reads {records}"
        windows = set(re.findall(r"\[([^\]]+)\]", query.expr))
        allowed = {"$__rate_interval", "1h", DEFAULT.rate_window, DEFAULT.stuck_baseline_window}
        assert windows <= allowed, f"{query.panel}: {windows}"
        assert DEFAULT.selector in query.expr, f"{query.panel} ignores the selector"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_import_ready_current_schema(name: str) -> None:
    """A current schemaVersion without the deprecated `style`, and `__inputs` / `__requires`
    that Grafana's import reads; the data source variable defaults to the imported input."""
    board = BOARDS[name]
    assert board["schemaVersion"] >= 39 and "style" not in board
    (source,) = board["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
    required = {(r["type"], r["id"]) for r in board["__requires"]}
    panels = {p["type"] for p in board["panels"]} - {"row"}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    assert {("panel", kind) for kind in panels} <= required
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == "${" + source["name"] + "}"


def test_data_links_percent_encode_what_they_carry() -> None:
    """Data links put label values into URLs percent-encoded (`a&b #1` stays one value), and
    carry the deployment variables as query parameters."""
    links = [
        link
        for board in BOARDS.values()
        for panel in board["panels"]
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links
    for link in links:
        values = re.findall(r"\$\{([^}]+)\}", link["url"])
        for value in values:
            if value.startswith("__field.labels."):
                assert value.endswith(":percentencode"), link["url"]
            elif value != "__url_time_range":
                assert value.endswith(":queryparam"), link["url"]


def test_duration_and_queue_wait_queries_ask_for_exemplars() -> None:
    """Every panel query of duration or queue-wait buckets asks for exemplars (a recent job
    of a bucket), and no other does."""
    asked = 0
    for board in BOARDS.values():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                histogram = re.search(
                    r"background_jobs_(duration|queue_wait)_seconds_bucket", target["expr"]
                ) and not re.search(r"\[6h\]", target["expr"])
                assert bool(target.get("exemplar")) == bool(histogram), target["expr"]
                asked += bool(histogram)
    assert asked >= 10


def test_exemplars_link_to_the_tracked_job() -> None:
    """The provisioned datasource turns an exemplar's `job_id` into a link to that job in the
    exporter page's Tracked view, by source and id, both percent-encoded (`$$` is Grafana's
    escape for a literal `$` in provisioning files)."""
    path = queries.ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (datasource,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    (destination,) = datasource["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "job_id"
    assert destination["url"] == (
        f"{DEFAULT.exporter_url}/#/tracked?source=$${{__data.fields.source:percentencode}}"
        "&q=$${__value.raw:percentencode}"
    )


def test_alert_links_are_absolute() -> None:
    """runbook_url and dashboard annotations open from a pager: absolute URLs."""
    for rule in (r for r in queries.rules() if "alert" in r):
        for key in ("runbook_url", "dashboard"):
            assert re.match(r"https?://[^/]+/", rule["annotations"][key]), rule["annotations"]


def test_a_users_config_reaches_every_query_and_link() -> None:
    """A config with another selector, cluster and namespace variables and its own URLs
    changes every panel query, variable, rule and alert link generated from it."""
    from dataclasses import replace

    from dashboards import main

    mine = replace(
        DEFAULT,
        selector='job="jobs", namespace="prod"',
        cluster_variable=True,
        namespace_variable=True,
        grafana_url="https://grafana.example.org",
        runbook_url="https://wiki.example.org/runbook",
    )
    files = {str(path): text for path, text in main.generated(mine).items()}
    for name in UIDS:
        board = json.loads(files[f"grafana/dashboards/{name}"])
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:4] == ["datasource", "cluster", "namespace", "job"]
        for query in queries.panel_queries(board):
            assert 'job="jobs", namespace="prod"' in query.expr, query.expr
            assert 'cluster=~"$cluster", namespace=~"$namespace"' in query.expr, query.expr
    alerts = [
        rule
        for path, text in files.items()
        if path.endswith(".rules.yml")
        for group in yaml.safe_load(text)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert alerts
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["runbook_url"].startswith("https://wiki.example.org/runbook#")
        assert notes["dashboard"].startswith("https://grafana.example.org/d/")
        assert "var-cluster={{ $labels.cluster | urlquery }}" in notes["dashboard"]
