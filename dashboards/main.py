"""Writes every generated artefact: rule files and dashboard JSON, byte for byte reproducible."""

from __future__ import annotations

import sys
from pathlib import Path

from dashboards import rules

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"


def generated() -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its exact text."""
    files: dict[Path, str] = {}
    for filename, groups in rules.rule_files().items():
        files[Path("prometheus/rules") / filename] = rules.render(groups)
    return files


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
