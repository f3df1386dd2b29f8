"""Every PromQL expression the committed artefacts hold, and how Grafana would expand them.

The tests read the generated files (not the builders), so they check exactly what Prometheus
and Grafana load: panel targets and variable queries of each dashboard, and each rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
RULES_DIR = ROOT / "prometheus" / "rules"

# Families the exporter serves; a token with one of these prefixes names one of its series.
EXPORTER_PREFIXES = ("background_jobs_", "job_exporter_")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool


def dashboards() -> dict[str, dict[str, Any]]:
    """Each generated dashboard's JSON, by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panel_queries(board: dict[str, Any]) -> list[PanelQuery]:
    """Every target of every panel, rows included (a collapsed row nests its panels)."""
    found = []
    stack = list(board.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            found.append(
                PanelQuery(
                    dashboard=board["title"],
                    panel=panel.get("title", ""),
                    ref_id=target.get("refId", ""),
                    expr=target["expr"],
                    instant=bool(target.get("instant")),
                )
            )
    return found


def variable_queries(board: dict[str, Any]) -> dict[str, str]:
    """Query variables' queries, by variable name."""
    return {
        variable["name"]: variable["query"]
        for variable in board.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    }


def rule_files() -> dict[str, dict[str, Any]]:
    """Each rule file's parsed YAML, by file name."""
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(RULES_DIR.glob("*.rules.yml"))
    }


def rules() -> list[dict[str, Any]]:
    """Every recording and alert rule of every group."""
    return [
        rule for doc in rule_files().values() for group in doc["groups"] for rule in group["rules"]
    ]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_COMMENT = re.compile(r"#[^\n]*")
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Series names an expression reads: exporter series and recording rules (with a colon).

    Strings and comments are dropped first, so label values and prose never count.
    """
    bare = _COMMENT.sub("", _STRING.sub('""', expr))
    return {
        token
        for token in _TOKEN.findall(bare)
        if ":" in token or token.startswith(EXPORTER_PREFIXES)
    }


_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def grafana_regex_escape(value: str) -> str:
    """A variable value as Grafana writes it into a Prometheus query for a multi-value
    variable: regex metacharacters escaped, with the backslash doubled for the PromQL string
    (so `a.b` becomes `a\\\\.b` in the query text)."""
    value = value.replace("\\", "\\\\\\\\")
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)


def expand(expr: str, variables: dict[str, str], rate_interval: str) -> str:
    """The query Grafana would send: variables substituted, interval macros replaced.

    Longer names go first, so `$__rate_interval` is not read as `$__rate` plus text.
    """
    macros = {
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": rate_interval,
        **variables,
    }
    for name in sorted(macros, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", macros[name]).replace("$" + name, macros[name])
    return expr
