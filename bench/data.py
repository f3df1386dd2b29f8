"""Job lists shaped like the issue's scenarios, deterministic for a seed."""

from __future__ import annotations

import random
from typing import Any

import msgspec

START_MS = 1_700_000_000_000.0
TYPES = ("HTTP", "TASK", "CRON")


def pair_jobs(pairs: int = 2000, per_pair: int = 5) -> list[dict[str, Any]]:
    """`pairs` distinct (type, name) pairs; per pair some finished (with durations), some not."""
    jobs = []
    for pair in range(pairs):
        for k in range(per_pair):
            finished = k < per_pair - 2
            item: dict[str, Any] = {
                "id": f"p{pair}-{k}",
                "name": f"job-{pair}",
                "startTimestamp": START_MS,
                "backgroundJobType": TYPES[pair % 3],
                "isFinished": finished,
            }
            if finished:
                item["finishTimestamp"] = START_MS + 250 * (k + 1) * (1 + pair % 7)
                item["status"] = "failed" if (pair + k) % 11 == 0 else "completed"
            jobs.append(item)
    return jobs


def many_jobs(count: int = 100_000, pairs: int = 2000, seed: int = 1) -> list[dict[str, Any]]:
    """`count` jobs over `pairs` pairs, half finished, a quarter with the optional fields."""
    rng = random.Random(seed)
    jobs = []
    for n in range(count):
        pair = n % pairs
        item: dict[str, Any] = {
            "id": f"job-{n:08d}-{rng.getrandbits(32):08x}",
            "name": f"job-{pair}",
            "startTimestamp": START_MS - n,
            "backgroundJobType": TYPES[pair % 3],
            "isFinished": n % 2 == 0,
        }
        if n % 4 == 0:
            item["finishTimestamp"] = START_MS
            item["status"] = "completed"
        jobs.append(item)
    return jobs


def finish_some(jobs: list[dict[str, Any]], share: float) -> int:
    """Finish `share` of the jobs (counted over all of them) among those still running."""
    wanted = int(len(jobs) * share)
    done = 0
    for item in jobs:
        if done == wanted:
            break
        if not item["isFinished"]:
            item["isFinished"] = True
            done += 1
    return done


def encode(jobs: list[dict[str, Any]]) -> bytes:
    return msgspec.json.encode(jobs)
