"""The allocator settings give a scrape's large, short-lived buffers back to the system.

The workload is a scrape's shape in miniature: in a fresh thread each time (as the
scheduler's pool hands scrapes out), a body grown piece by piece, then many small objects
of which a few outlive it. Each variant runs in its own interpreter, since the settings
are process-wide and must come before the first thread.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from exporter.runtime.allocator import give_back, tune_allocator

# The workloads run in their own Python processes, and finding glibc runs `ldconfig -p`.
pytestmark = pytest.mark.slow

WORKLOAD = textwrap.dedent(
    """
    import sys, threading
    from array import array
    from exporter.runtime.allocator import give_back, tune_allocator

    def resident_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] in ("tuned", "trimmed"):
        assert tune_allocator()
    piece = b"x" * (1 << 20)
    survivors = []

    def scrape(n):
        body = bytearray()
        for _ in range(14):
            body += piece
        items = [str(n * 1_000_000 + k) for k in range(100_000)]
        index = {item: k for k, item in enumerate(items)}
        survivors.append(items[::50])
        if sys.argv[2] == "scratch":  # lists and arrays of a megabyte, freed below a survivor
            scratch = [array("Q", range(100_000 + 1000 * n)) for _ in range(6)]
            survivors.append(array("Q", range(1000)))

    before = resident_mb()
    for n in range(12):
        thread = threading.Thread(target=scrape, args=(n,))
        thread.start()
        thread.join()
        if sys.argv[1] == "trimmed":
            assert give_back()
    print(resident_mb() - before)
    """
)


def _growth_mb(variant: str, workload: str = "plain") -> float:
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, variant, workload],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_returns_scrape_buffers() -> None:
    default, tuned = _growth_mb("default"), _growth_mb("tuned")
    # Survivors are 24,000 short strings (about 2 MB); the rest is what the allocator kept.
    assert tuned < 20, f"tuned process kept {tuned:.1f} MB"
    assert default > 2 * tuned, f"default {default:.1f} MB vs tuned {tuned:.1f} MB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_giving_back_after_each_scrape_returns_the_holes_under_survivors() -> None:
    tuned, trimmed = _growth_mb("tuned", "scratch"), _growth_mb("trimmed", "scratch")
    # Each scrape frees 5 MB of arrays below a small survivor: kept, unless trimmed.
    assert trimmed < tuned - 4, f"trimmed {trimmed:.1f} MB vs tuned {tuned:.1f} MB"


def test_tuning_reports_it_took_effect() -> None:
    assert tune_allocator() is sys.platform.startswith("linux")
    assert give_back() is sys.platform.startswith("linux")
