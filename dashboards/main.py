"""Writes every generated artefact: rule files and dashboard JSON, byte for byte reproducible."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import by_name, by_type, rules, summary
from dashboards.config import DEFAULT, Config

ROOT = Path(__file__).resolve().parent.parent

# File name under grafana/dashboards/ -> the module whose build() makes it.
DASHBOARDS = {
    "summary.json": summary,
    "by-type.json": by_type,
    "by-name.json": by_name,
}


def generated(cfg: Config = DEFAULT) -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its exact text, from
    `cfg` (the committed files come from DEFAULT; a user's own config makes their own)."""
    files: dict[Path, str] = {}
    for filename, groups in rules.rule_files(cfg).items():
        files[Path("prometheus/rules") / filename] = rules.render(groups)
    encoder = JSONEncoder(sort_keys=True, indent=2)
    for filename, module in DASHBOARDS.items():
        board = module.build(cfg).build()
        # Grafana keys panel state (links, edits, view mode) by id: give each a stable one.
        for panel_id, panel in enumerate(board.panels or [], start=1):
            panel.id_val = panel_id
        model = finish(json.loads(encoder.encode(board)), cfg)
        text = json.dumps(model, sort_keys=True, indent=2) + "\n"
        files[Path("grafana/dashboards") / filename] = text
    return files


# The dashboard JSON model the files declare: Grafana 10.4 and 11 read it as it is, and later
# releases run their own migrations from it on load. The builders' JSON fits it (no legend,
# table or time-series-table options that migrations 37 to 39 rewrite).
SCHEMA_VERSION = 39
# The oldest Grafana that has every feature the dashboards use ($__rate_interval, the
# heatmap panel's `calculate: false`, exemplars on heatmaps, `${var:queryparam}`).
GRAFANA_REQUIRED = "10.0.0"
# Import (Dashboards > New > Import) asks for this data source and makes it the default of
# the dashboards' `datasource` variable; provisioned files ignore it.
DATASOURCE_INPUT = "DS_PROMETHEUS"
_PANELS = {"timeseries": "Time series", "stat": "Stat", "heatmap": "Heatmap", "row": "Row"}


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows too."""
    found, stack = [], list(model.get("panels", []))
    while stack:
        panel = stack.pop(0)
        found.append(panel)
        stack.extend(panel.get("panels", []))
    return found


def finish(model: dict[str, Any], cfg: Config = DEFAULT) -> dict[str, Any]:
    """What the builders leave out or put in by an older schema: the current schemaVersion
    without the deprecated `style`, `__inputs` / `__requires` for import, and variables
    without the interval-only fields the builders put on every kind."""
    model.pop("style", None)
    model["schemaVersion"] = SCHEMA_VERSION
    model["__inputs"] = [
        {
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes job-exporter.",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    kinds = sorted({panel["type"] for panel in _panels(model)} - {"row"})
    model["__requires"] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_REQUIRED},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *({"type": "panel", "id": kind, "name": _PANELS[kind], "version": ""} for kind in kinds),
    ]
    for variable in model.get("templating", {}).get("list", []):
        variable.pop("id", None)
        if variable.get("type") != "interval":
            for key in ("auto", "auto_count", "auto_min"):
                variable.pop(key, None)
        if variable.get("type") == "datasource":
            ref = "${" + DATASOURCE_INPUT + "}"
            variable["current"] = {"selected": False, "text": "Prometheus", "value": ref}
    return model


def main(argv: list[str] | None = None) -> int:
    """Write the files; with `--check`, only report the ones that differ (exit 1 if any)."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = []
    for relative, text in generated().items():
        path = ROOT / relative
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(relative)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for relative in stale:
        print(f"{'stale' if check else 'wrote'}: {relative}")
    return 1 if check and stale else 0
