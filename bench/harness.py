"""Timing, the `ratio` lines, and the table written to docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One figure beside its baseline. `at_most`: the ratio must stay at or below the goal."""

    name: str
    what: str
    value: float
    baseline: float
    baseline_what: str
    unit: str
    goal: float
    at_most: bool
    note: str = ""
    absolute: bool = False  # the goal bounds the value itself (memory added), not a ratio

    @property
    def ratio(self) -> float:
        if self.absolute:
            return self.value
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def ok(self) -> bool:
        return self.ratio <= self.goal if self.at_most else self.ratio >= self.goal

    def goal_text(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.goal:g}"

    def print(self) -> None:
        print(f"  {self.what}: {self.value:.4g} {self.unit}")
        if self.absolute:
            print(f"  baseline: {self.baseline_what}")
        else:
            print(f"  baseline, {self.baseline_what}: {self.baseline:.4g} {self.unit}")
        if self.note:
            print(f"  note: {self.note}")
        print(
            f"ratio {self.name} {self.ratio:.3g} goal {self.goal_text()} "
            f"{'ok' if self.ok else 'MISSED'}",
            flush=True,
        )


def median_seconds(
    run: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None
):
    """The median wall time of `repeat` runs (setup, untimed, before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"


def versions() -> str:
    names = ["job-exporter", "prometheus-client", "flask", "waitress", "msgspec", "orjson"]
    found = []
    for name in names:
        with contextlib.suppress(Exception):
            found.append(f"{name} {version(name)}")
    for command in (["prometheus-pushgateway", "--version"], ["wrk", "--version"]):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            first = (out.stdout or out.stderr).strip().splitlines()[0]
            found.append(first.split("(")[0].strip())
        except (OSError, IndexError, subprocess.SubprocessError):
            pass
    return f"Python {platform.python_version()}; " + "; ".join(found)


def write_table(results: list[Result], path: Path, mode: str, changes: str) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Each figure is measured beside its baseline in the same run, by `python -m bench`"
        f" ({mode} mode). Regenerate with `python -m bench --write`.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        "",
        "| benchmark | job-exporter | baseline | ratio | goal | |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        baseline = (
            r.baseline_what if r.absolute else f"{r.baseline:.4g} {r.unit} ({r.baseline_what})"
        )
        lines.append(
            f"| {r.name}: {r.what} | {r.value:.4g} {r.unit} | {baseline} | {r.ratio:.3g} |"
            f" {r.goal_text()} | {'ok' if r.ok else 'MISSED'} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "Notes from this run:", "", *notes]
    lines += ["", "## What was changed to meet the goals", "", changes.strip(), ""]
    path.write_text("\n".join(lines))
