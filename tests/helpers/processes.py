"""Real processes: `job-exporter` run as a process and followed by its log, the tools the
tests drive for real, and what tests need to know about a process (a free port, its memory).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import pytest

from tests.helpers.metrics import Metrics, read_metrics

LISTENING = re.compile(r'listening on (http://[^\s"]+)')  # a text or a JSON log line
T = TypeVar("T")


class LineLog:
    """The lines a process writes to one of its streams, followed by a thread, and a wait
    for what a test expects in them: one implementation for every process the tests run."""

    def __init__(self, process: subprocess.Popen[str], stream: IO[str], keep: int = 0) -> None:
        self.process = process
        self.lines: list[str] = []
        self.keep = keep  # lines a failure message shows (0: all)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._follow, args=(stream,), daemon=True)
        self._reader.start()

    def _follow(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait(self, found: Callable[[list[str]], T | None], timeout: float, what: str) -> T:
        """The first non-None `found(lines)`; an AssertionError with the log if the process
        ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = found(self.lines)
                if result is not None:
                    return result
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"process exited before {what}:\n{self.text}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout} s:\n{self.text}")
                self._changed.wait(remaining)

    def count(self, pattern: re.Pattern[str]) -> int:
        with self._changed:
            return sum(1 for line in self.lines if pattern.search(line))

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-self.keep :] if self.keep else self.lines)

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)


def first_match(pattern: re.Pattern[str]) -> Callable[[list[str]], re.Match[str] | None]:
    return lambda lines: next((m for line in lines if (m := pattern.search(line))), None)


class ExporterProcess:
    """`python -m exporter ARGS`; `url` is known once its log says where it listens."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        assert self.process.stderr is not None
        self._log = LineLog(self.process, self.process.stderr)
        self.lines = self._log.lines
        match = self.wait_for_log(LISTENING)
        self.url = match.group(1)

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        return self._log.wait(first_match(pattern), timeout, f"log line like {pattern.pattern!r}")

    @property
    def log(self) -> str:
        return self._log.text

    def metrics(self) -> Metrics:
        return read_metrics(self.url)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.join(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.join(10)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str) -> str:
    """The path of a command the tests drive for real: from this virtualenv's scripts (the
    test extras install some) or from PATH. A missing one fails, never skips."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; scripts/setup installs it")
    return path


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")
