"""A real Prometheus (Debian's) on 127.0.0.1 for the monitoring tests, and its HTTP API."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helpers.processes import free_port, require_tool
from tests.helpers.waiting import poll

POLL_STEP = 0.5
READY_DEADLINE_S = 30.0


def wait_for(what: str, check: Callable[[], bool], deadline: float, proc: subprocess.Popen) -> None:
    """Poll `check` in short steps until true; fail with the process's output otherwise."""

    def ready() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"{what}: process exited with {proc.returncode}:\n{out[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            return check()
        return False

    if not poll(ready, timeout=deadline, step=POLL_STEP):
        pytest.fail(f"{what}: not ready within {deadline} s")


@contextlib.contextmanager
def running(args: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A child process that is always stopped (then killed if it lingers) afterwards."""
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def scraping(job: str, targets: list[str], interval: str = "1s") -> dict[str, Any]:
    """A Prometheus configuration scraping `targets` (base URLs) as `job`, no rule files."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [url.removeprefix("http://") for url in targets]}],
            }
        ],
    }


@contextlib.contextmanager
def prometheus_server(folder: Path, config: dict[str, Any] | Path, *flags: str) -> Iterator[str]:
    """Prometheus with `config` (a mapping written into `folder`, or a file), its data in
    `folder`; yields its base URL once ready."""
    if isinstance(config, Path):
        path = config
    else:
        path = folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        require_tool("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *flags,
    ]
    with running(args, cwd=folder) as proc:
        wait_for(
            "prometheus /-/ready",
            lambda: requests.get(f"{url}/-/ready", timeout=2).status_code == 200,
            READY_DEADLINE_S,
            proc,
        )
        yield url


def api(prometheus: str, path: str, **params: Any) -> Any:
    """One Prometheus API call; any error status or API error fails the test with its text."""
    response = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (path, params, body)
    return body["data"]
