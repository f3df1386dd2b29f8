"""What the tests feed in: a fixed start time, the API token, job items, and exact jitter."""

from __future__ import annotations

import random
from typing import Any

START_MS = 1_700_000_000_000.0
TOKEN = "s3cret-token"


def job(
    job_id: str,
    *,
    name: str = "send_email",
    type: str = "TASK",
    start_ms: float = START_MS,
    finished: Any = False,
    **extra: Any,
) -> dict[str, Any]:
    """A JobInfoBase item as an app serves or pushes it; extra keyword arguments become extra
    fields (`finishTimestamp`, `status`, ...)."""
    item = {
        "id": job_id,
        "name": name,
        "startTimestamp": start_ms,
        "backgroundJobType": type,
        "isFinished": finished,
    }
    item.update(extra)
    return item


class FixedRandom(random.Random):
    """A random source whose draws are all `value`: backoff jitter becomes exact."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value
