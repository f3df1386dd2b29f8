"""A Python snippet run as its own process (`python -c`), followed by its stdout lines.

For tests of what a process does on its own (forks, abrupt exits): the snippet prints a line
at each step, the test waits for the step, and closing its stdin tells it to finish.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.processes import LineLog


class PythonScript:
    def __init__(self, code: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._stdout = LineLog(self.process, self.process.stdout)
        self._stderr = LineLog(self.process, self.process.stderr)
        self.lines = self._stdout.lines

    @property
    def stderr(self) -> str:
        return self._stderr.text + "\n" if self._stderr.lines else ""

    def wait_for_line(self, text: str, timeout: float = 20) -> None:
        """Wait until the snippet printed `text` as a whole line; fail if it exits first."""
        try:
            self._stdout.wait(lambda lines: text in lines or None, timeout, f"the line {text!r}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- stderr:\n{self.stderr}") from None

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
            self._stdout.join(10)
            self._stderr.join(10)
        return code
