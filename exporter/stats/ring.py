"""Fixed-size rings of cumulative samples: the dashboard's history, in bounded memory.

A `Tier` keeps, for each key (the summary, a job type, one job function), the last
`capacity` samples of a few cumulative totals in one flat `array('d')`, all keys sharing one
ring of sample times. Samples land in step-aligned slots: a second sample in the same slot
overwrites the first, so the newest point is always fresh while memory stays fixed.

Keeping cumulative totals rather than per-step deltas means any subset of samples still
gives exact rates (the difference of two totals over the time between them), so a chart can
be thinned to any number of points without losing a single counted job.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

NAN = math.nan

# The totals kept per key, in this order.
RUNNING, PENDING, STARTED, COMPLETED, FAILED, LOST, DURATION_SUM, DURATION_COUNT = range(8)
FIELDS = 8
COLUMNS = ("running", "pending", "started", "completed", "failed", "lost", "avgDuration")


def empty_series() -> dict[str, list]:
    """The columns of a series with no samples yet."""
    return {"t": [], **{name: [] for name in COLUMNS}}


@dataclass(frozen=True)
class Window:
    """Which samples a query wants: the last `seconds`, thinned to at most `points`."""

    seconds: float
    points: int


class Tier:
    """The rings of one kind of key, with one step and capacity; not thread-safe alone."""

    def __init__(self, step_s: float, capacity: int, max_keys: int) -> None:
        if step_s <= 0 or capacity < 2 or max_keys < 1:
            raise ValueError("a tier needs a positive step, two samples and one key")
        self.step_ms = step_s * 1000
        self.capacity = capacity
        self.max_keys = max_keys
        self.times = array("d", [NAN]) * capacity
        self.rings: dict[Hashable, array] = {}
        self.last_change_ms: dict[Hashable, float] = {}
        self.head = -1  # index of the newest sample; -1 before the first
        self.count = 0  # samples held, up to capacity
        self.untracked = 0  # keys turned away because the tier was full of active keys
        self._slot: int | None = None

    @property
    def span_s(self) -> float:
        """How far back the rings reach once full."""
        return (self.capacity - 1) * self.step_ms / 1000

    def record(
        self, now_ms: float, totals: Mapping[Hashable, Sequence[float]], fresh: Iterable = ()
    ) -> None:
        """Write one sample of every key's totals at `now_ms`.

        `fresh` names keys that had no counts at all at the previous sample: their earlier
        samples are zeros, which is the truth. Any other key seen for the first time (one
        evicted earlier, or everything after a restart) gets unknown (NaN) history instead.
        """
        slot = math.floor(now_ms / self.step_ms)
        if self._slot is not None and slot < self._slot:
            return  # the clock went back: keep times increasing, wait for it to catch up
        if slot != self._slot:
            self._advance()
            self._slot = slot
        head = self.head
        self.times[head] = now_ms
        fresh = set(fresh)
        for key, values in totals.items():
            ring = self.rings.get(key)
            if ring is None:
                ring = self._admit(key, now_ms, zeros=key in fresh)
                if ring is None:
                    continue
            base = head * FIELDS
            sample = array("d", values)
            if self.count > 1:
                previous = (head - 1) % self.capacity * FIELDS
                if ring[previous : previous + FIELDS] != sample:
                    self.last_change_ms[key] = now_ms
            ring[base : base + FIELDS] = sample

    def _advance(self) -> None:
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.times[self.head] = NAN
        base = self.head * FIELDS
        unknown = array("d", [NAN]) * FIELDS
        for ring in self.rings.values():
            ring[base : base + FIELDS] = unknown

    def _admit(self, key: Hashable, now_ms: float, zeros: bool) -> array | None:
        """A ring for a new key, evicting the key idle longest if it sat still all window."""
        if len(self.rings) >= self.max_keys:
            idle = min(self.last_change_ms, key=self.last_change_ms.__getitem__)
            if now_ms - self.last_change_ms[idle] <= self.span_s * 1000:
                self.untracked += 1
                return None
            del self.rings[idle], self.last_change_ms[idle]
        ring = array("d", [0.0 if zeros else NAN]) * (self.capacity * FIELDS)
        self.rings[key] = ring
        self.last_change_ms[key] = now_ms
        return ring

    def tracked(self) -> list[Hashable]:
        """The keys that have a ring now."""
        return list(self.rings)

    def latest(self, key: Hashable) -> list[float] | None:
        """The newest totals of a key, or None when the tier does not hold it."""
        ring = self.rings.get(key)
        if ring is None or self.head < 0:
            return None
        base = self.head * FIELDS
        return list(ring[base : base + FIELDS])

    def series(self, key: Hashable, window: Window) -> dict[str, object] | None:
        """A key's history as chart columns; None when the tier does not hold the key."""
        ring = self.rings.get(key)
        if ring is None:
            return None
        picked = self._pick(window)
        columns: dict[str, list[float | None]] = {name: [] for name in COLUMNS}
        times: list[float] = []
        for before, index in picked:
            times.append(self.times[index])
            now = ring[index * FIELDS : index * FIELDS + FIELDS]
            columns["running"].append(_number(now[RUNNING]))
            columns["pending"].append(_number(max(now[PENDING], 0.0)))
            past = None if before is None else ring[before * FIELDS : before * FIELDS + FIELDS]
            minutes = None if before is None else (self.times[index] - self.times[before]) / 60e3
            for name, position in (("started", STARTED), ("completed", COMPLETED),
                                   ("failed", FAILED), ("lost", LOST)):  # fmt: skip
                columns[name].append(_per_minute(past, now, position, minutes))
            columns["avgDuration"].append(_average_duration(past, now))
        return {"t": times, **columns}

    def _pick(self, window: Window) -> list[tuple[int | None, int]]:
        """(previous, index) pairs of the samples to show, oldest first, newest included.

        Every `stride`-th sample back from the newest, so each point's rate covers the
        samples thinned away before it; the first point's previous sample may lie just
        outside the window (it only serves for that rate).
        """
        if self.count == 0:
            return []
        newest_ms = self.times[self.head]
        inside = 0
        while inside < self.count:
            index = (self.head - inside) % self.capacity
            time_ms = self.times[index]
            if not math.isnan(time_ms) and newest_ms - time_ms > window.seconds * 1000:
                break
            inside += 1
        stride = max(1, math.ceil(inside / max(window.points, 1)))
        steps_back = list(range(0, inside, stride))[: window.points]
        pairs: list[tuple[int | None, int]] = []
        for back in reversed(steps_back):
            index = (self.head - back) % self.capacity
            if math.isnan(self.times[index]):
                continue
            before_back = back + stride
            before = (self.head - before_back) % self.capacity
            if before_back >= self.count or math.isnan(self.times[before]):
                pairs.append((None, index))
            else:
                pairs.append((before, index))
        return pairs


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _per_minute(
    past: Sequence[float] | None, now: Sequence[float], position: int, minutes: float | None
) -> float | None:
    if past is None or not minutes or minutes <= 0:
        return None
    delta = now[position] - past[position]
    if math.isnan(delta) or delta < 0:
        return None  # unknown, or the store was replaced: no honest rate
    return round(delta / minutes, 4)


def _average_duration(past: Sequence[float] | None, now: Sequence[float]) -> float | None:
    """Mean run time of the jobs that finished between two samples; None when none did."""
    if past is None:
        return None
    count = now[DURATION_COUNT] - past[DURATION_COUNT]
    total = now[DURATION_SUM] - past[DURATION_SUM]
    if math.isnan(count) or math.isnan(total) or count <= 0 or total < 0:
        return None
    return round(total / count, 4)
