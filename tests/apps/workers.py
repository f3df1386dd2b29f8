"""A framework's worker run as a real process, followed by its log (like `ExporterProcess`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


class WorkerProcess:
    """`python -m <framework> ARGS` from the repository root, its stderr and stdout kept."""

    def __init__(self, *args: str, env: dict[str, str], ready: re.Pattern[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._follow_log, daemon=True)
        self._reader.start()
        try:
            self.wait_for_log(ready, timeout=30)
        except BaseException:
            self.stop()
            raise

    def _follow_log(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def count(self, pattern: re.Pattern[str]) -> int:
        with self._changed:
            return sum(1 for line in self.lines if pattern.search(line))

    def wait_for_log(self, pattern: re.Pattern[str], times: int = 1, timeout: float = 30) -> None:
        """Wait until `times` lines match `pattern`; fail with the log if they do not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.lines if pattern.search(line)) < times:
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"worker exited:\n{self.log}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"not {times} log line(s) like {pattern.pattern!r}:\n{self.log}"
                    )
                self._changed.wait(remaining)

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-200:])

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
            self._reader.join(10)
