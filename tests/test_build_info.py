"""`job_exporter_build_info{version, revision, python_version}`: the revision from the
variable an image sets, else the checkout's commit, else `unknown`; worked out once."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from exporter import __version__
from exporter.metrics import build
from exporter.metrics.build import UNKNOWN, build_info, revision
from tests.helpers.served import Exporter


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git work tree with one commit, standing for the folder holding the package."""
    git(tmp_path, "init", "-q")
    (tmp_path / "file").write_text("x")
    git(tmp_path, "add", "file")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_the_variable_wins(checkout: Path):
    assert revision({"JOB_EXPORTER_REVISION": " abc123 "}, checkout) == "abc123"
    assert revision({"JOB_EXPORTER_REVISION": "x" * 500}, checkout) == "x" * 64


def test_a_checkout_gives_its_commit(checkout: Path):
    assert revision({}, checkout) == git(checkout, "rev-parse", "HEAD")
    # git's own variables must not point it at another repository
    assert revision({"GIT_DIR": "/nowhere"}, checkout) == git(checkout, "rev-parse", "HEAD")


def test_no_checkout_or_a_broken_one_is_unknown(tmp_path: Path):
    assert revision({}, tmp_path) == UNKNOWN
    (tmp_path / ".git").write_text("not a repository")
    assert revision({}, tmp_path) == UNKNOWN


def test_worked_out_once(monkeypatch):
    build_info.cache_clear()
    calls = []
    monkeypatch.setattr(build, "revision", lambda: calls.append(1) or "r1")
    first = build_info()
    assert build_info() is first and calls == [1]
    assert first == build.BuildInfo(__version__, "r1", platform.python_version())
    build_info.cache_clear()


def test_metrics_carry_the_three_labels(exporter: Exporter):
    (labels,) = [
        dict(labels)
        for name, labels in exporter.metrics().samples
        if name == "job_exporter_build_info"
    ]
    assert labels == {
        "version": __version__,
        "revision": build_info().revision,
        "python_version": platform.python_version(),
    }
    assert exporter.metrics().value("job_exporter_build_info", **labels) == 1
