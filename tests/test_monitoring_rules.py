"""The Prometheus side of the monitoring artefacts, checked with the real promtool and amtool.

Rule files are generated from dashboards/config.py, their promtool tests sit beside them, and
every rule must have both a case where it produces something and one where it must not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import main as generator
from dashboards import queries
from dashboards.config import DEFAULT
from tests.helpers.processes import require_tool

ROOT = queries.ROOT
PROMETHEUS_DIR = ROOT / "prometheus"
RULES_DIR = queries.RULES_DIR


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output for the assertion message."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_generated_files_match_the_generator() -> None:
    """Committed rule YAML and dashboard JSON are exactly what `python -m dashboards` writes."""
    for relative, text in generator.generated().items():
        path = ROOT / relative
        assert path.exists(), f"{relative} is missing: run python -m dashboards"
        assert path.read_text(encoding="utf-8") == text, f"{relative} is stale"


def test_no_stray_generated_files() -> None:
    """Every rule file and dashboard in the generated folders comes from the generator."""
    expected = set(generator.generated())
    present = {
        path.relative_to(ROOT)
        for path in [*RULES_DIR.glob("*.rules.yml"), *queries.DASHBOARDS_DIR.glob("*.json")]
    }
    assert present == expected


@pytest.mark.slow
def test_promtool_check_config() -> None:
    """prometheus.yml is valid and its rule_files glob finds every rule file."""
    result = run(require_tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in queries.rule_files():
        assert f"rules/{name}" in result.stdout, f"prometheus.yml does not load {name}"


@pytest.mark.slow
def test_promtool_check_rules() -> None:
    """Every rule file passes promtool's checks (syntax, PromQL, templates)."""
    files = sorted(str(path) for path in RULES_DIR.glob("*.rules.yml"))
    assert files
    result = run(require_tool("promtool"), "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_rule_tests_pass() -> None:
    """The unit tests beside the rules pass."""
    tests = sorted(path.name for path in RULES_DIR.glob("*.test.yml"))
    result = run(require_tool("promtool"), "test", "rules", *tests, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


@pytest.mark.slow
def test_promtool_rule_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The rule tests can fail: a copy of the rules with a different threshold fails them."""
    copy = tmp_path / "rules"
    shutil.copytree(RULES_DIR, copy)
    alerts = copy / "job-alerts.rules.yml"
    text = alerts.read_text(encoding="utf-8")
    threshold = f"> {DEFAULT.failure_ratio_threshold:g}\n"
    assert threshold in text
    alerts.write_text(text.replace(threshold, "> 0.5\n"), encoding="utf-8")
    result = run(require_tool("promtool"), "test", "rules", "job-alerts.test.yml", cwd=copy)
    assert result.returncode != 0
    assert "alertname: BackgroundJobsFailureRatioHigh" in result.stdout + result.stderr


@pytest.mark.slow
def test_amtool_check_config() -> None:
    """alertmanager.yml is valid for Alertmanager."""
    result = run(require_tool("amtool"), "check-config", "prometheus/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("severity", "receiver"), [("critical", "pager"), ("warning", "default")])
@pytest.mark.slow
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    """Every alert's severity reaches the receiver alertmanager.yml means for it."""
    severities = {rule["labels"]["severity"] for rule in queries.rules() if "alert" in rule}
    assert severity in severities
    result = run(
        require_tool("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=prometheus/alertmanager.yml",
        f"severity={severity}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def _test_files() -> dict[str, dict[str, Any]]:
    """Each promtool test file's parsed YAML, by file name."""
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(RULES_DIR.glob("*.test.yml"))
    }


def test_one_test_file_per_rule_file() -> None:
    """Each rule file (one group each) has its own test file beside it, which loads it."""
    tests = _test_files()
    for name, doc in queries.rule_files().items():
        assert len(doc["groups"]) == 1, f"{name} should hold one group"
        test_name = name.replace(".rules.yml", ".test.yml")
        assert test_name in tests, f"{name} has no {test_name} beside it"
        assert name in tests[test_name]["rule_files"]


def test_every_test_case_opens_with_a_comment() -> None:
    """Each case says the behaviour it checks, in a comment just above it."""
    for path in sorted(RULES_DIR.glob("*.test.yml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        cases = [i for i, line in enumerate(lines) if line.startswith("  - interval:")]
        assert cases, f"{path.name} has no cases"
        for i in cases:
            assert lines[i - 1].lstrip().startswith("#"), f"{path.name}:{i + 1} has no comment"


_LABELS = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _sample_labels(text: str) -> tuple[str, dict[str, str]]:
    """Split `name{a="b"}` (as promtool tests write samples) into name and labels."""
    name, _, rest = text.partition("{")
    return name.strip(), dict(_LABELS.findall(rest))


def _cases() -> tuple[list[tuple[str, list[dict[str, Any]]]], list[tuple[str, list[Any]]]]:
    """All promql_expr_test (expr, samples) and alert_rule_test (alertname, alerts) cases."""
    exprs, alerts = [], []
    for doc in _test_files().values():
        for test in doc["tests"]:
            for case in test.get("promql_expr_test", []):
                exprs.append((case["expr"], case.get("exp_samples") or []))
            for case in test.get("alert_rule_test", []):
                alerts.append((case["alertname"], case.get("exp_alerts") or []))
    return exprs, alerts


def test_every_recording_rule_has_a_positive_and_a_negative_case() -> None:
    """Each record (with its static labels) is expected once with samples, once with none."""
    exprs, _ = _cases()
    for rule in (r for r in queries.rules() if "record" in r):
        record, static = rule["record"], rule.get("labels", {})
        reads = [(expr, samples) for expr, samples in exprs if record in queries.metric_names(expr)]
        positive = any(
            _sample_labels(sample["labels"])[0] == record
            and static.items() <= _sample_labels(sample["labels"])[1].items()
            for _, samples in reads
            for sample in samples
        )
        negative = any(not samples for _, samples in reads)
        assert positive, f"no positive case for {record} {static}"
        assert negative, f"no negative case for {record}"


def test_every_alert_rule_has_a_positive_and_a_negative_case() -> None:
    """Each alert is expected to fire in one case and to stay silent in another."""
    _, alerts = _cases()
    for rule in (r for r in queries.rules() if "alert" in r):
        name = rule["alert"]
        assert any(n == name and fired for n, fired in alerts), f"{name} never fires"
        assert any(n == name and not fired for n, fired in alerts), f"{name} never stays silent"


def test_alerts_carry_summary_description_and_links() -> None:
    """Each alert links a real dashboard uid and a runbook section that exists."""
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    uids = {board["uid"] for board in queries.dashboards().values()}
    for rule in (r for r in queries.rules() if "alert" in r):
        notes = rule["annotations"]
        assert set(notes) >= {"summary", "description", "dashboard", "runbook_url"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        uid = notes["dashboard"].removeprefix(f"{DEFAULT.grafana_url}/d/").split("?")[0]
        assert uid in uids, f"{rule['alert']} links unknown dashboard {uid}"
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == DEFAULT.runbook_url
        assert anchor in anchors, f"docs/runbook.md has no section #{anchor}"


def test_recording_rules_follow_the_naming_convention() -> None:
    """Records are `level:metric:operations`, and every record a rule reads is defined."""
    records = {r["record"] for r in queries.rules() if "record" in r}
    for record in records:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", record), record
    for rule in queries.rules():
        for name in queries.metric_names(rule["expr"]):
            assert ":" not in name or name in records, f"{name} is read but never recorded"
