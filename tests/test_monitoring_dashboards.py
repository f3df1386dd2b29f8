"""The generated Grafana dashboards: shape, links, variables, and queries promtool can parse."""

from __future__ import annotations

import json
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
VARIABLES = {
    "summary.json": ["datasource", "source"],
    "by-type.json": ["datasource", "source", "type"],
    "by-name.json": ["datasource", "source", "type", "name"],
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
    assert variable_queries["source"] == "label_values(background_jobs_started_total, source)"
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
    values = {"source": "demo", "type": "TASK", "name": "send_email", "datasource": "prometheus"}
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
