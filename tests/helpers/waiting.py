"""The one way to wait for a condition: poll it in short steps, bounded by a timeout.

Where a clock or an event can be injected, tests move the clock or wait on the event
instead; polling is for what another thread or process does in its own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(
    probe: Callable[[], Any],
    *,
    until: Callable[[Any], Any] = bool,
    timeout: float = 10.0,
    step: float = 0.05,
) -> Any:
    """Call `probe` every `step` seconds until `until(result)` holds or `timeout` seconds have
    passed; return the last result either way, for the caller's own assertion to explain."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(step)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    result = poll(condition, timeout=timeout, step=step)
    if not result:
        raise AssertionError(f"condition not met within {timeout} s")
    return result
