"""A Python snippet run as its own process (`python -c`), followed by its stdout lines.

For tests of what a process does on its own (forks, abrupt exits): the snippet prints a line
at each step, the test waits for the step, and closing its stdin tells it to finish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time


class PythonScript:
    def __init__(self, code: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.stderr = ""
        self._readers = [
            threading.Thread(target=self._follow, daemon=True),
            threading.Thread(target=self._keep_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _keep_stderr(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            self.stderr = self.process.stderr.read()

    def wait_for_line(self, text: str, timeout: float = 20) -> None:
        """Wait until the snippet printed `text` as a whole line; fail if it exits first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while text not in self.lines:
                if self.process.poll() is not None and not self._readers[0].is_alive():
                    raise AssertionError(f"script exited before {text!r}:\n{self.output()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line {text!r} within {timeout} s:\n{self.output()}")
                self._changed.wait(min(remaining, 0.5))

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr:\n" + self.stderr

    def finish(self, timeout: float = 20) -> int:
        """Close its stdin (the snippet's cue to end) and wait for it to exit."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            for reader in self._readers:
                reader.join(10)
        return code
