"""Shared fixtures. Under CI a skipped test is a failure: every part CI needs must really run."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures", "tests.browser"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when CI is set and anything was skipped (a missing tool must not pass)."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
