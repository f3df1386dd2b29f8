"""Writes every generated artefact: rule files, dashboard JSON and, from them, the Kubernetes
manifests (dashboards/kubernetes.py); byte for byte reproducible."""

from __future__ import annotations

import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import by_name, by_type, kubernetes, rules, summary

ROOT = Path(__file__).resolve().parent.parent

# File name under grafana/dashboards/ -> the module whose build() makes it.
DASHBOARDS = {
    "summary.json": summary,
    "by-type.json": by_type,
    "by-name.json": by_name,
}


def generated() -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its exact text."""
    files: dict[Path, str] = {}
    for filename, groups in rules.rule_files().items():
        files[Path("prometheus/rules") / filename] = rules.render(groups)
    encoder = JSONEncoder(sort_keys=True, indent=2)
    for filename, module in DASHBOARDS.items():
        board = module.build().build()
        # Grafana keys panel state (links, edits, view mode) by id: give each a stable one.
        for panel_id, panel in enumerate(board.panels or [], start=1):
            panel.id_val = panel_id
        text = encoder.encode(board) + "\n"
        files[Path("grafana/dashboards") / filename] = text
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the files; with `--check`, only report the ones that differ (exit 1 if any)."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = []
    for relative, text in kubernetes.with_manifests(generated()).items():
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
