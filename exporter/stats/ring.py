"""Fixed-size rings of samples: the dashboard's history, in bounded memory.

A `Tier` keeps, for each key (the summary, a job type, one job function), the last
`capacity` samples of a few totals, all keys sharing one ring of sample times. Samples land
in step-aligned slots: a second sample in the same slot overwrites the first, so the newest
point is always fresh while memory stays fixed.

Each slot holds the gauges (running, pending) as they were and, of every cumulative total,
how much it grew since the totals last known before that slot. Summing the growth of the
slots between two points gives exactly the difference of the totals there, so a chart can
be thinned to any number of points without losing a single counted job. Growth in one slot
is small where totals are not, so a slot keeps its whole numbers in 2 bytes each (the rare
larger value aside, in a dict) and the duration sum's growth in a 4-byte float: 18 bytes a
slot where 8 totals of 8 bytes took 64.

A tier given the duration histogram's bucket bounds also keeps each bucket's growth (the
count of runs that finished in that bucket, not cumulative across buckets), 2 bytes a bucket
a slot like the other counts: with the 13 default buckets a slot takes 44 bytes
(`slot_bytes`). A point's p50 / p95 / p99 come from the buckets' growth over its interval,
by `exporter.stats.quantiles.quantile`, as `histogram_quantile(q, rate(...))` would give.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import ne
from typing import Any

from exporter.stats.quantiles import quantile

NAN = math.nan


class Field:
    """Where each total sits in a key's sample: the first two are gauges, the rest cumulative.

    Plain ints, not an IntEnum: the rings index arrays with them in their innermost loops.
    """

    RUNNING = 0
    PENDING = 1
    STARTED = 2
    COMPLETED = 3
    FAILED = 4
    LOST = 5
    DURATION_SUM = 6
    DURATION_COUNT = 7


FIELDS = 8
GAUGES = (Field.RUNNING, Field.PENDING)
CUMULATIVE = range(Field.STARTED, FIELDS)
PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
COLUMNS = (
    "running",
    "pending",
    "started",
    "completed",
    "failed",
    "lost",
    "avgDuration",
    *(name for name, _ in PERCENTILES),
)


def empty_series() -> dict[str, list]:
    """The columns of a series with no samples yet."""
    return {"t": [], **{name: [] for name in COLUMNS}}


@dataclass(frozen=True)
class Window:
    """Which samples a query wants: the last `seconds`, thinned to at most `points`."""

    seconds: float
    points: int


# How a slot keeps the whole-number fields: two bytes each, two codes set aside.
_UNKNOWN = 0xFFFF  # NaN
_WIDE = 0xFFFE  # did not fit (a count past 65,533, or a negative growth): kept in `wide`
_WHOLE = (
    Field.RUNNING,
    Field.PENDING,
    Field.STARTED,
    Field.COMPLETED,
    Field.FAILED,
    Field.LOST,
    Field.DURATION_COUNT,
)
_WHOLE_AT = {position: n for n, position in enumerate(_WHOLE)}
_PER_SLOT = len(_WHOLE)  # whole numbers a slot keeps besides its buckets
# Read once per field of every key at each sample: module globals cost less than `Field.X`.
_SUM = Field.DURATION_SUM
_RUNNING_AT = _WHOLE_AT[Field.RUNNING]


def slot_bytes(buckets: int) -> int:
    """Bytes one slot of one key takes in its arrays, with `buckets` histogram buckets."""
    return 2 * (_PER_SLOT + buckets) + 4


class _Key:
    """One key's slots and its exact totals: the newest (`last`, NaN until sampled in the
    newest slot) and those known before it (`base`, what the newest slot's growth is
    measured from). A slot holds the gauges, the growth of the counts and of each duration
    bucket in 2 bytes each (rare larger values aside), and the growth of the duration sum
    in a 4-byte float."""

    __slots__ = ("base", "last", "per_slot", "sums", "whole", "wide")

    def __init__(self, capacity: int, zeros: bool, buckets: int = 0) -> None:
        self.per_slot = per_slot = _PER_SLOT + buckets
        self.whole = array("H", [0 if zeros else _UNKNOWN]) * (capacity * per_slot)
        self.sums = array("f", [0.0 if zeros else NAN]) * capacity
        self.wide: dict[int, float] | None = None  # by place in `whole`, once needed
        self.last = array("d", [NAN]) * (FIELDS + buckets)
        self.base = array("d", [0.0 if zeros else NAN]) * (FIELDS + buckets)

    def allocated(self) -> int:
        """Bytes its arrays hold (the buffers, as the allocator gave them)."""
        return sum(sys.getsizeof(a) for a in (self.whole, self.sums, self.last, self.base))

    def close_slot(self) -> None:
        """The newest slot is done: what it knew becomes the base of the next."""
        last, base = self.last, self.base
        for position in range(len(last)):
            if last[position] == last[position]:  # not NaN
                base[position] = last[position]
                last[position] = NAN

    def clear_slot(self, index: int) -> None:
        per_slot = self.per_slot
        at = index * per_slot
        self.whole[at : at + per_slot] = array("H", [_UNKNOWN]) * per_slot
        self.sums[index] = NAN
        if self.wide:
            for place in range(at, at + per_slot):
                self.wide.pop(place, None)

    def write(self, index: int, sample: Sequence[float]) -> None:
        base, last = self.base, self.last
        for position, value in enumerate(sample):
            last[position] = value  # in place: a new array each time would churn memory
        for position in GAUGES:
            self._put(index, position, sample[position])
        for position in range(Field.STARTED, len(sample)):
            value, before = sample[position], base[position]
            if value != value:
                growth = NAN  # the total is unknown now
            elif before != before:
                growth = 0.0  # unknown before: no rate reaches back past this slot anyway
            else:
                growth = value - before
            self._put(index, position, growth)

    def _put(self, index: int, position: int, value: float) -> None:
        if position == _SUM:
            self.sums[index] = value
            return
        place = index * self.per_slot + _place(position)
        if value != value:
            code = _UNKNOWN
        elif 0 <= value < _WIDE and value == int(value):
            code = int(value)
        else:
            code = _WIDE
            if self.wide is None:
                self.wide = {}
            self.wide[place] = value
        if code != _WIDE and self.wide:
            self.wide.pop(place, None)  # a value of the same slot sampled before
        self.whole[place] = code

    def column(self, position: int) -> list[float]:
        """One field (or bucket) of every slot, NaN where unknown."""
        if position == Field.DURATION_SUM:
            return self.sums.tolist()
        n, per_slot = _place(position), self.per_slot
        column = [NAN if code == _UNKNOWN else code for code in self.whole[n::per_slot]]
        for place, value in (self.wide or {}).items():
            if place % per_slot == n:
                column[place // per_slot] = value
        return column

    def sum_after(self, position: int, before: int, index: int) -> float:
        """The growth of one field over the slots after `before` up to `index`, around the
        ring, unknown slots counting none; at C speed for the whole numbers."""
        if position == Field.DURATION_SUM:
            column = self.sums
            return sum(g for g in _after(column, before, index) if g == g)
        n, per_slot = _place(position), self.per_slot
        codes = _after(self.whole[n::per_slot], before, index)
        total = sum(codes) - codes.count(_UNKNOWN) * _UNKNOWN - codes.count(_WIDE) * _WIDE
        if self.wide:
            places = {i * per_slot + n for i in _indices_after(before, index, len(self.sums))}
            total += sum(v for place, v in self.wide.items() if place in places)
        return float(total)

    def known(self, index: int) -> bool:
        """Whether the key was sampled in slot `index`."""
        return self.whole[index * self.per_slot + _RUNNING_AT] != _UNKNOWN


def _after(column: Any, before: int, index: int) -> Any:
    """The slots after `before` up to `index` of a column, around the ring."""
    if before < index:
        return column[before + 1 : index + 1]
    return column[before + 1 :] + column[: index + 1]


def _indices_after(before: int, index: int, capacity: int) -> list[int]:
    if before < index:
        return list(range(before + 1, index + 1))
    return [*range(before + 1, capacity), *range(index + 1)]


def _place(position: int) -> int:
    """Where a field sits among a slot's whole numbers: the buckets follow the counts."""
    return _WHOLE_AT[position] if position < FIELDS else _PER_SLOT + position - FIELDS


class Tier:
    """The rings of one kind of key, with one step and capacity; not thread-safe alone.

    `bounds` are the duration histogram's upper bounds (the last +Inf): a sample then
    holds, after the FIELDS totals, one cumulative count per bucket, and series gain the
    percentile columns. Without bounds, a tier keeps no buckets and its percentiles are null.
    """

    def __init__(
        self, step_s: float, capacity: int, max_keys: int, bounds: Sequence[float] = ()
    ) -> None:
        if step_s <= 0 or capacity < 2 or max_keys < 1:
            raise ValueError("a tier needs a positive step, two samples and one key")
        self.step_ms = step_s * 1000
        self.capacity = capacity
        self.max_keys = max_keys
        self.bounds = tuple(bounds)
        self.width = FIELDS + len(self.bounds)  # values in one sample
        self.times = array("d", [NAN]) * capacity
        self.rings: dict[Hashable, _Key] = {}
        self.last_change_ms: dict[Hashable, float] = {}
        self.head = -1  # index of the newest sample; -1 before the first
        self.count = 0  # samples held, up to capacity
        self.untracked = 0  # keys turned away because the tier was full of active keys
        self._slot: int | None = None

    @property
    def span_s(self) -> float:
        """How far back the rings reach once full."""
        return (self.capacity - 1) * self.step_ms / 1000

    def key_bytes(self) -> int:
        """The budget of one key's arrays: its slots, plus its two rows of exact totals."""
        return self.capacity * slot_bytes(len(self.bounds)) + 2 * 8 * self.width

    def allocated(self) -> int:
        """Bytes the keys' arrays hold now (not the dicts around them)."""
        return sum(ring.allocated() for ring in self.rings.values())

    def record(
        self, now_ms: float, totals: Mapping[Any, Sequence[float]], fresh: Iterable = ()
    ) -> None:
        """Write one sample of every key's totals at `now_ms`.

        `fresh` names keys that had no counts at all at the previous sample: their earlier
        samples are zeros, which is the truth. Any other key seen for the first time (one
        evicted earlier, or everything after a restart) gets unknown (NaN) history instead.
        Samples longer than the tier's width (buckets it does not keep) are cut to it.
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
        previous = (head - 1) % self.capacity
        width = self.width
        for key, values in totals.items():
            if len(values) != width:
                values = [*values[:width], *[NAN] * (width - len(values))]
            ring = self.rings.get(key)
            if ring is None:
                ring = self._admit(key, now_ms, zeros=key in fresh)
                if ring is None:
                    continue
            if self.count > 1 and (not ring.known(previous) or any(map(ne, ring.base, values))):
                self.last_change_ms[key] = now_ms
            ring.write(head, values)

    def _advance(self) -> None:
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.times[self.head] = NAN
        for ring in self.rings.values():
            ring.close_slot()
            ring.clear_slot(self.head)

    def _admit(self, key: Hashable, now_ms: float, zeros: bool) -> _Key | None:
        """A ring for a new key, evicting the key idle longest if it sat still all window."""
        if len(self.rings) >= self.max_keys:
            idle = min(self.last_change_ms, key=self.last_change_ms.__getitem__)
            if now_ms - self.last_change_ms[idle] <= self.span_s * 1000:
                self.untracked += 1
                return None
            del self.rings[idle], self.last_change_ms[idle]
        ring = self.rings[key] = _Key(self.capacity, zeros, len(self.bounds))
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
        return list(ring.last)

    def series(self, key: Hashable, window: Window) -> dict[str, object] | None:
        """A key's history as chart columns; None when the tier does not hold the key."""
        ring = self.rings.get(key)
        if ring is None:
            return None
        picked = self._pick(window)
        sampled = ring.column(Field.RUNNING)  # NaN in the slots the key missed
        pending = ring.column(Field.PENDING)
        cumulative = range(Field.STARTED, self.width)
        totals = {position: ring.column(position) for position in cumulative}
        growths = {  # a missed slot grew by nothing: the next one's growth covers it
            position: [g if g == g else 0.0 for g in column] for position, column in totals.items()
        }
        columns: dict[str, list[float | None]] = {name: [] for name in COLUMNS}
        times: list[float] = []
        for before, index in picked:
            times.append(self.times[index])
            columns["running"].append(_number(sampled[index]))
            columns["pending"].append(_number(max(pending[index], 0.0)))
            growth = None
            if before is not None and _known(sampled[before]) and _known(sampled[index]):
                growth = [NAN] * self.width
                for position in cumulative:
                    column = totals[position]
                    if _known(column[before]) and _known(column[index]):
                        growth[position] = self._sum_after(growths[position], before, index)
            minutes = None if before is None else (self.times[index] - self.times[before]) / 60e3
            for name, position in (
                ("started", Field.STARTED),
                ("completed", Field.COMPLETED),
                ("failed", Field.FAILED),
                ("lost", Field.LOST),
            ):
                columns[name].append(_per_minute(growth, position, minutes))
            columns["avgDuration"].append(_average_duration(growth))
            for name, q in PERCENTILES:
                columns[name].append(self._percentile(growth, q))
        return {"t": times, **columns}

    def _percentile(self, growth: Sequence[float] | None, q: float) -> float | None:
        """The `q` quantile of the runs that finished over a point's interval, from the
        buckets' growth; None when none finished, or a bucket's growth is unknown or
        negative (the store was replaced: no honest answer)."""
        if growth is None or not self.bounds:
            return None
        counts = growth[FIELDS:]
        if any(c != c or c < 0 for c in counts):
            return None
        value = quantile(q, self.bounds, counts)
        return None if value is None else round(value, 4)

    def window_growth(
        self, key: Hashable, seconds: float, positions: Iterable[int] | None = None
    ) -> list[float] | None:
        """How much each cumulative total of a key (or those at `positions`) grew over the
        last `seconds`: from the oldest sample inside the window to the newest (slots the key
        missed count as no growth). None when the tier does not hold the key or has under
        two samples there."""
        ring = self.rings.get(key)
        inside = self._inside(seconds)
        if ring is None or inside < 2:
            return None
        oldest = (self.head - inside + 1) % self.capacity
        growth = [0.0] * self.width
        for position in range(Field.STARTED, self.width) if positions is None else positions:
            growth[position] = ring.sum_after(position, oldest, self.head)
        return growth

    def _inside(self, seconds: float) -> int:
        """How many of the newest samples lie within `seconds` of the newest."""
        if self.count == 0:
            return 0
        newest_ms = self.times[self.head]
        inside = 0
        while inside < self.count:
            index = (self.head - inside) % self.capacity
            time_ms = self.times[index]
            if not math.isnan(time_ms) and newest_ms - time_ms > seconds * 1000:
                break
            inside += 1
        return inside

    def _sum_after(self, growth: list[float], before: int, index: int) -> float:
        """The growth of the slots after `before` up to `index`, around the ring: the
        difference of the totals at the two."""
        if before < index:
            return sum(growth[before + 1 : index + 1])
        return sum(growth[before + 1 :]) + sum(growth[: index + 1])

    def _pick(self, window: Window) -> list[tuple[int | None, int]]:
        """(previous, index) pairs of the samples to show, oldest first, newest included.

        Every `stride`-th sample back from the newest, so each point's rate covers the
        samples thinned away before it; the first point's previous sample may lie just
        outside the window (it only serves for that rate).
        """
        if self.count == 0:
            return []
        inside = self._inside(window.seconds)
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


def _known(value: float) -> bool:
    return value == value  # NaN is unknown


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _per_minute(
    growth: Sequence[float] | None, position: int, minutes: float | None
) -> float | None:
    if growth is None or not minutes or minutes <= 0:
        return None
    delta = growth[position]
    if math.isnan(delta) or delta < 0:
        return None  # unknown, or the store was replaced: no honest rate
    return round(delta / minutes, 4)


def _average_duration(growth: Sequence[float] | None) -> float | None:
    """Mean run time of the jobs that finished between two samples; None when none did."""
    if growth is None:
        return None
    count = growth[Field.DURATION_COUNT]
    total = growth[Field.DURATION_SUM]
    if math.isnan(count) or math.isnan(total) or count <= 0 or total < 0:
        return None
    return round(total / count, 4)
