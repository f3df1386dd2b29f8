"""A framework's worker run as a real process, followed by its log (like `ExporterProcess`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.processes import LineLog

ROOT = Path(__file__).resolve().parent.parent.parent


class WorkerProcess:
    """`python -m <framework> ARGS` from the repository root, its stderr and stdout kept."""

    def __init__(self, *args: str, env: dict[str, str], ready: re.Pattern[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self._log = LineLog(self.process, self.process.stdout, keep=200)
        self.lines = self._log.lines
        try:
            self.wait_for_log(ready, timeout=30)
        except BaseException:
            self.stop()
            raise

    def count(self, pattern: re.Pattern[str]) -> int:
        return self._log.count(pattern)

    def wait_for_log(self, pattern: re.Pattern[str], times: int = 1, timeout: float = 30) -> None:
        """Wait until `times` lines match `pattern`; fail with the log if they do not."""

        def enough(lines: list[str]) -> bool | None:
            return sum(1 for line in lines if pattern.search(line)) >= times or None

        self._log.wait(enough, timeout, f"{times} log line(s) like {pattern.pattern!r}")

    @property
    def log(self) -> str:
        return self._log.text

    def stop(self, timeout: float = 30) -> int:
        """A warm shutdown (SIGTERM); killed if it does not end within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"worker did not stop within {timeout} s:\n{self.log}") from None
        finally:
            self._log.join(10)
