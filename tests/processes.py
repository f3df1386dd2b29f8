"""Run `job-exporter` as a real process and follow its log (for restart and demo tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.fixtures import Metrics

LISTENING = re.compile(r"listening on (http://\S+)")


class ExporterProcess:
    """`python -m exporter ARGS`; `url` is known once its log says where it listens."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._follow_log, daemon=True)
        self._reader.start()
        match = self.wait_for_log(LISTENING)
        self.url = match.group(1)

    def _follow_log(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError("exporter exited:\n" + "\n".join(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line like {pattern.pattern!r}:\n{self.log}")
                self._changed.wait(remaining)

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def metrics(self) -> Metrics:
        response = requests.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return Metrics(response.text)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(10)
