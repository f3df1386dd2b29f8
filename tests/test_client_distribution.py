"""The client is its own light distribution (client/pyproject.toml): built alone, it holds
exporter.client and exporter.integrations and needs only requests, and the server's wheel
leaves both packages out, so installing the two never puts one file in place twice."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = ("flask", "waitress", "msgspec", "apscheduler", "prometheus_client")

CHECK = f"""
import importlib.util, exporter, exporter.client, exporter.integrations
from exporter.client import JobReporter, InProcessJobs
assert getattr(exporter, "__file__", None) is None, "exporter is the server's package here"
present = [name for name in {SERVER_ONLY!r} if importlib.util.find_spec(name) is not None]
assert present == [], present
print("ok")
"""


def build_wheel(project: Path, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), str(project)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = into.glob("*.whl")
    return wheel


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


@pytest.mark.slow
def test_the_client_wheel_installs_alone_with_requests_as_its_only_dependency(tmp_path: Path):
    # Built from a copy, so the build leaves nothing in the tree; the server's
    # exporter/__init__.py is copied too, to see that it stays out.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "client", source / "client", ignore=shutil.ignore_patterns("build"))
    for package in ("client", "integrations"):
        shutil.copytree(
            ROOT / "exporter" / package,
            source / "exporter" / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(ROOT / "exporter" / "__init__.py", source / "exporter" / "__init__.py")
    client = build_wheel(source / "client", tmp_path / "client-wheel")
    files = wheel_files(client)
    assert {name.split("/")[1] for name in files} == {"client", "integrations"}
    assert "exporter/__init__.py" not in files
    with zipfile.ZipFile(client) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert [line.split()[1].split(">")[0] for line in requires] == ["requests"]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(client)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    checked = subprocess.run(
        [str(python), "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.stdout.strip() == "ok", checked.stderr

    server = build_wheel(ROOT, tmp_path / "server-wheel")
    assert files & wheel_files(server) == set()
    assert "exporter/__init__.py" in wheel_files(server)
