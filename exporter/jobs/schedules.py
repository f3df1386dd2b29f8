"""Recurring jobs: when a schedule is due, and firing it exactly once through the job queue.

APScheduler's triggers do the calendar arithmetic only; what is due is decided here, from the
injected clock, so tests move time across a DST change or a week of downtime instead of
sleeping. Each fire creates its job through `JobQueue.create` (retries, metrics and the UI
apply as to any job) together with a key unique per schedule and fire instant, in one store
transaction: replicas sweeping at once create one job per fire between them. When such a
job completes, the job queue's step names it a success of its schedule (`last_success_ms`,
which clears `unanswered_ms`), written in the transaction that completes it.

Cron expressions name wall-clock times in the schedule's time zone. A wall time the clocks
skip (spring forward) fires once, at the end of the gap; a wall time that happens twice
(fall back) fires once, at its first occurrence. APScheduler 3's CronTrigger alone gets both
wrong (it can fire twice in a repeated hour, or return an instant in the past), so it is
asked about naive wall times in UTC, where no clock jumps, and the mapping back to instants
is done here, as are two crontab rules it does not follow (weekdays from Sunday, and
either restricted day field matching). Intervals are elapsed seconds, anchored at the
schedule's creation, on the exporter's time line (clock.py); cron reads the wall clock as it
is now, so after a step it fires by the calendar: a step back repeats no fire (the next is
after the last), a step forward fires what it skipped as the misfire policy says.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.clock import Clock
from exporter.config import DEFAULT_MAX_SCHEDULES, DEFAULT_SCHEDULE_MISFIRE_GRACE
from exporter.jobs.queue import JobQueue, QueueFull
from exporter.model.queue import QueueJob
from exporter.model.schedules import (
    FireResult,
    FireTaken,
    MisfirePolicy,
    Schedule,
    ScheduleConflict,
    ScheduleFire,
    UnknownSchedule,
)
from exporter.store import Store

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0  # the sweep runs about every second; finer intervals cannot be kept
MAX_INTERVAL_S = 366 * 24 * 3600.0
MAX_CATCH_UP = 100_000  # missed cron fires walked one by one before the rest are jumped
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleInvalid(ValueError):
    """A schedule's definition is wrong; `field` names the request field (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or ScheduleInvalid naming `timezone`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ScheduleInvalid("timezone", f"unknown time zone {name!r}") from error


def _dt(ms: float) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> float:
    return (moment - _EPOCH) / timedelta(milliseconds=1)


_TICK = timedelta(microseconds=1)
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMERIC_DAYS = re.compile(r"^(\*|\d+|\d+-\d+)(?:/(\d+))?$")


def crontab_triggers(cron: str) -> tuple[CronTrigger, ...]:
    """Triggers (in UTC, for naive wall times) that fire when the crontab line does.

    Two crontab rules APScheduler 3 does not follow are applied here: weekday numbers count
    from Sunday (0 or 7), not Monday; and when both the day of the month and the day of the
    week are restricted, a day matching either one fires (two triggers, the earlier wins).
    """
    parts = cron.split()
    if len(parts) != 5:
        raise ScheduleInvalid(
            "cron", f"cron expression {cron!r} must have 5 fields, not {len(parts)}"
        )
    minute, hour, day, month, weekday = parts
    try:
        weekday = _weekday_names(weekday)

        def trigger(day: str, weekday: str) -> CronTrigger:
            return CronTrigger(
                minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=UTC
            )

        if day.startswith("*") or weekday.startswith("*"):
            return (trigger(day, weekday),)
        return (trigger(day, "*"), trigger("*", weekday))
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise ScheduleInvalid("cron", f"invalid cron expression {cron!r}: {error}") from error


def _weekday_names(field: str) -> str:
    """Crontab weekday numbers (0-7, Sunday first, with ranges and steps) as day names."""
    names: list[str] = []
    for item in field.split(","):
        match = _NUMERIC_DAYS.match(item)
        if match is None:
            names.append(item)  # names (mon-fri) mean the same to APScheduler
            continue
        body, step = match.group(1), int(match.group(2) or 1)
        if body == "*" and step == 1:
            names.append("*")
            continue
        if body == "*":
            low, high = 0, 6
        elif "-" in body:
            low, high = (int(part) for part in body.split("-"))
        else:
            low = high = int(body)
            if match.group(2):
                high = 6  # crontab's `n/step` runs from n to the end of the week
        if not 0 <= low <= high <= 7 or step < 1:
            raise ValueError(f"weekday {item!r} is not within 0-7 (Sunday is 0 or 7)")
        names.extend(_WEEKDAYS[number % 7] for number in range(low, high + 1, step))
    return ",".join(dict.fromkeys(names))


class Timing:
    """When a schedule fires: `next_after(t)` is its first fire instant strictly after t."""

    def __init__(
        self, cron: str | None, interval_s: float | None, timezone: str, anchor_ms: float
    ) -> None:
        self.zone = zone(timezone)
        self.interval_s = interval_s
        if cron is not None:
            self._cron: tuple[CronTrigger, ...] = crontab_triggers(cron)
            self._interval: IntervalTrigger | None = None
        elif interval_s is not None:
            self._cron = ()
            start = _dt(anchor_ms) + timedelta(seconds=interval_s)
            self._interval = IntervalTrigger(seconds=interval_s, start_date=start, timezone=UTC)
        else:
            raise ScheduleInvalid("cron", "give either cron or intervalSeconds")

    @classmethod
    def of(cls, schedule: Schedule) -> Timing:
        return cls(schedule.cron, schedule.interval_s, schedule.timezone, schedule.created_ms)

    def next_after(self, after_ms: float) -> float | None:
        """The first fire instant after `after_ms`; None when the expression never fires."""
        if self._interval is not None:
            fire = self._interval.get_next_fire_time(None, _dt(after_ms + 1))
            return None if fire is None else _ms(fire)
        wall = self._wall(after_ms)
        for _ in range(400):  # each step moves a day at least once past a DST oddity
            candidate = self._next_wall(wall)
            if candidate is None:
                return None
            instant = self._instant(candidate)
            if instant > after_ms:
                return instant
            wall = candidate  # its one occurrence is already past (a repeated hour)
        return None

    def skip_before(self, first_ms: float, cutoff_ms: float) -> tuple[int, float, float | None]:
        """Walk fires from `first_ms` (a fire instant) while before `cutoff_ms`: how many,
        the last of them, and the first fire at or after the cutoff."""
        if self.interval_s is not None:
            step = self.interval_s * 1000
            count = max(1, math.ceil((cutoff_ms - first_ms) / step))
            last = first_ms + (count - 1) * step
            return count, last, self.next_after(last)
        count, last = 0, first_ms
        fire: float | None = first_ms
        while fire is not None and fire < cutoff_ms:
            count, last = count + 1, fire
            if count >= MAX_CATCH_UP:  # years of minutely fires: jump, count what was walked
                return count, last, self.next_after(cutoff_ms - 1)
            fire = self.next_after(fire)
        return count, last, fire

    def _wall(self, ms: float) -> datetime:
        """The naive local wall time at instant `ms`."""
        return _dt(ms).astimezone(self.zone).replace(tzinfo=None)

    def _next_wall(self, wall: datetime) -> datetime | None:
        fires = [
            fire
            for trigger in self._cron
            if (fire := trigger.get_next_fire_time(None, wall.replace(tzinfo=UTC) + _TICK))
        ]
        return min(fires).replace(tzinfo=None) if fires else None

    def _instant(self, wall: datetime) -> float:
        """A wall time's instant: its first occurrence, or the end of the gap it falls in."""
        first = _ms(wall.replace(tzinfo=self.zone, fold=0))
        if self._wall(first) == wall:
            return first
        # In a gap: fold=0 reads it with the offset before the jump (too late), fold=1 with
        # the one after (too early); the jump itself lies between.
        low, high = _ms(wall.replace(tzinfo=self.zone, fold=1)), first
        offset = self._offset(high)
        while high - low > 1000:
            middle = (low + high) / 2
            if self._offset(middle) == offset:
                high = middle
            else:
                low = middle
        return float(math.ceil(high / 1000) * 1000)

    def _offset(self, ms: float) -> timedelta | None:
        return _dt(ms).astimezone(self.zone).utcoffset()


@dataclass(frozen=True)
class FirePlan:
    """What one sweep does with a due schedule: skip `skipped` missed fires (advancing the
    next fire from `expected_next_ms` to `advance_to_ms`), then create one job per fire."""

    expected_next_ms: float
    skipped: int
    advance_to_ms: float | None
    fires: tuple[tuple[float, str, float | None], ...]  # (instant, result, next fire after)


def plan(schedule: Schedule, timing: Timing, now_ms: float, grace_ms: float) -> FirePlan | None:
    """The fires due at `now_ms`. Fires older than the misfire grace were missed while no
    exporter ran: under `run_once` the latest of them runs (late) and the rest are skipped;
    under `skip` all are. Fires within the grace run on time."""
    first = schedule.next_fire_ms
    if schedule.paused or first > now_ms:
        return None
    cutoff = now_ms - grace_ms
    skipped, advance_to = 0, first
    fires: list[tuple[float, str, float | None]] = []
    fire: float | None = first
    if first < cutoff:
        missed, last_missed, fire = timing.skip_before(first, cutoff)
        if schedule.misfire == MisfirePolicy.RUN_ONCE:
            skipped = missed - 1
            fires.append((last_missed, FireResult.LATE, fire))
            advance_to = last_missed
        else:
            skipped = missed
            advance_to = fire if fire is not None else math.inf
    while fire is not None and fire <= now_ms:
        after = timing.next_after(fire)
        fires.append((fire, FireResult.ON_TIME, after))
        fire = after
    return FirePlan(first, skipped, advance_to, tuple(fires))


# --- transitions ---------------------------------------------------------------------


def definition(schedule: Schedule) -> tuple[Any, ...]:
    """What an edit may change: a fire planned from one definition is not made under
    another."""
    return tuple(getattr(schedule, name) for name in EDITABLE)


def after_fire(
    instant_ms: float,
    result: str,
    next_ms: float | None,
    job_id: str,
    planned: tuple[Any, ...] | None = None,
):
    """The schedule after one of its scheduled fires created job `job_id`. `planned` is the
    definition the fire was planned from: an edit since then refuses the fire (FireTaken,
    nothing written), and the next sweep plans again from the edited schedule."""

    def transition(schedule: Schedule) -> Schedule:
        if schedule.paused:
            raise FireTaken(f"schedule {schedule.id} was paused meanwhile")
        if planned is not None and definition(schedule) != planned:
            raise FireTaken(f"schedule {schedule.id} was edited meanwhile")
        counts: dict[str, Any] = {
            "fires_on_time": schedule.fires_on_time + (result == FireResult.ON_TIME),
            "fires_late": schedule.fires_late + (result == FireResult.LATE),
        }
        unanswered = schedule.unanswered_ms
        return replace(
            schedule,
            last_fire_ms=max(instant_ms, schedule.last_fire_ms or 0),
            unanswered_ms=instant_ms if unanswered is None else min(unanswered, instant_ms),
            next_fire_ms=max(schedule.next_fire_ms, next_ms if next_ms is not None else math.inf),
            last_job_id=job_id,
            **counts,
        )

    return transition


def after_manual(job_id: str):
    def transition(schedule: Schedule) -> Schedule:
        return replace(schedule, fires_manual=schedule.fires_manual + 1, last_job_id=job_id)

    return transition


def skip(expected_next_ms: float, advance_to_ms: float, skipped: int):
    """Count missed fires as skipped and move the next fire past them, only if nobody did
    already (the next fire is still where this sweep found it)."""

    def transition(schedule: Schedule) -> Schedule:
        if schedule.next_fire_ms != expected_next_ms or schedule.paused:
            raise FireTaken(f"schedule {schedule.id} moved on meanwhile")
        return replace(
            schedule,
            next_fire_ms=advance_to_ms,
            fires_skipped=schedule.fires_skipped + skipped,
        )

    return transition


# The fields of a schedule an edit may change (ScheduleSpec's, as Schedule names them).
EDITABLE = ("type", "name", "payload", "max_attempts", "cron", "interval_s", "timezone", "misfire")
TIMING = ("cron", "interval_s", "timezone")


def check_timing(schedule: Schedule) -> Timing:
    """The schedule's timing, or ScheduleInvalid naming the field that is wrong."""
    if (schedule.cron is None) == (schedule.interval_s is None):
        raise ScheduleInvalid("cron", "give exactly one of cron and intervalSeconds")
    interval = schedule.interval_s
    if interval is not None and not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise ScheduleInvalid(
            "intervalSeconds", f"must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g}"
        )
    return Timing.of(schedule)


def edited(changes: dict[str, Any], now_for: Callable[[str | None], float]):
    """The schedule with `changes` (EDITABLE names) applied, checked as a create is.

    Changing the timing (cron, interval, time zone) moves the next fire to the first one
    after now, and after the latest fire made, so an edit never runs missed fires and never
    repeats a fire (its key `at:<instant>` would be taken). An interval stays anchored at
    the schedule's creation: the next fire is the first creation + k * interval after now.
    Everything else keeps: pause, counts, last fire and success.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")

    def transition(schedule: Schedule) -> Schedule:
        new = replace(schedule, **changes)
        timing = check_timing(new)
        if all(getattr(new, name) == getattr(schedule, name) for name in TIMING):
            return new
        after = max(now_for(new.cron), schedule.last_fire_ms or -math.inf)
        first = timing.next_after(after)
        if first is None:
            raise ScheduleInvalid("cron", f"cron expression {new.cron!r} never fires")
        return replace(new, next_fire_ms=first)

    return transition


def set_paused(paused: bool, next_fire_ms: float | None = None):
    def transition(schedule: Schedule) -> Schedule:
        if schedule.paused == paused:
            state = "paused" if paused else "active"
            raise ScheduleConflict(f"schedule {schedule.id} is already {state}")
        if next_fire_ms is None:
            return replace(schedule, paused=paused)
        # Resumed: a fresh start, owed nothing from before the pause.
        return replace(schedule, paused=paused, next_fire_ms=next_fire_ms, unanswered_ms=None)

    return transition


# --- the scheduler ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as asked for; checked by `Scheduler.create`."""

    type: str
    name: str
    payload: bytes | None = None
    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"
    misfire: str = MisfirePolicy.RUN_ONCE
    max_attempts: int | None = None


class Scheduler:
    """Schedules over a store; `sweep()` fires what is due. Safe to call from many threads
    and many replicas: every write is checked in its own transaction."""

    def __init__(
        self,
        store: Store,
        queue: JobQueue,
        clock: Clock,
        misfire_grace_s: float = DEFAULT_SCHEDULE_MISFIRE_GRACE,
        max_schedules: int = DEFAULT_MAX_SCHEDULES,
    ) -> None:
        self.store = store
        self.queue = queue
        self.clock = clock
        self.grace_ms = misfire_grace_s * 1000
        self.max_schedules = max_schedules
        self._waiting_for_room = False  # said once while the queue is full

    def create(self, spec: ScheduleSpec) -> Schedule:
        if (spec.cron is None) == (spec.interval_s is None):
            raise ScheduleInvalid("cron", "give exactly one of cron and intervalSeconds")
        if spec.interval_s is not None and not MIN_INTERVAL_S <= spec.interval_s <= MAX_INTERVAL_S:
            raise ScheduleInvalid(
                "intervalSeconds", f"must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g}"
            )
        now_ms = self.clock.now_ms()
        timing = Timing(spec.cron, spec.interval_s, spec.timezone, now_ms)
        first = timing.next_after(self._now_for(spec.cron))
        if first is None:
            raise ScheduleInvalid("cron", f"cron expression {spec.cron!r} never fires")
        schedule = Schedule(
            id=uuid.uuid4().hex,
            type=spec.type,
            name=spec.name,
            payload=spec.payload,
            max_attempts=spec.max_attempts,
            cron=spec.cron,
            interval_s=spec.interval_s,
            timezone=spec.timezone,
            misfire=spec.misfire,
            paused=False,
            created_ms=now_ms,
            next_fire_ms=first,
            last_fire_ms=None,
            last_success_ms=None,
            unanswered_ms=None,
            last_job_id=None,
        )
        if not self.store.schedule_insert(schedule, self.max_schedules):
            raise ScheduleConflict(
                f"there are already {self.max_schedules} schedules (--max-schedules)", "id"
            )
        return schedule

    def get(self, schedule_id: str) -> Schedule:
        schedule = self.store.schedule_get(schedule_id)
        if schedule is None:
            raise UnknownSchedule(schedule_id)
        return schedule

    def list(self) -> list[Schedule]:
        return self.store.schedule_list()

    def pause(self, schedule_id: str) -> Schedule:
        return self._update(schedule_id, set_paused(True))

    def resume(self, schedule_id: str) -> Schedule:
        """Active again from now: fires due while paused are not run."""
        schedule = self.get(schedule_id)
        next_ms = Timing.of(schedule).next_after(self._now_for(schedule.cron))
        return self._update(schedule_id, set_paused(False, next_ms if next_ms else math.inf))

    def edit(self, schedule_id: str, changes: dict[str, Any]) -> Schedule:
        """Change the EDITABLE fields in `changes`, in one transaction over the locked row:
        all of them or, when one is invalid (ScheduleInvalid naming it), none."""
        return self._update(schedule_id, edited(changes, self._now_for))

    def delete(self, schedule_id: str) -> None:
        if not self.store.schedule_delete(schedule_id):
            raise UnknownSchedule(schedule_id)

    def run_now(self, schedule_id: str) -> QueueJob:
        """One job now, outside the timetable (paused or not); counted as a `manual` fire."""
        schedule = self.get(schedule_id)
        key = f"manual:{uuid.uuid4().hex}"
        return self._create(schedule, key, after_manual)

    def sweep(self) -> int:
        """Fire every due schedule; returns how many jobs were created. While the queue is
        full (--max-pending-jobs) due fires wait, and fire late once there is room."""
        due_before_ms = max(self.clock.now_ms(), self.clock.wall_ms())
        created = 0
        for schedule in self.store.schedule_list(due_before_ms=due_before_ms):
            try:
                created += self._fire_due(schedule, self._now_for(schedule.cron))
            except UnknownSchedule:
                continue  # deleted meanwhile
            except ScheduleInvalid as error:  # e.g. its time zone left the system's tzdata
                log.error("schedule %s cannot fire: %s", schedule.id, error)
            except QueueFull as error:
                if not self._waiting_for_room:
                    log.warning("schedules wait to fire: %s", error)
                    self._waiting_for_room = True
                return created
        if self._waiting_for_room:
            log.info("schedules fire again: the queue has room")
            self._waiting_for_room = False
        return created

    def _fire_due(self, schedule: Schedule, now_ms: float) -> int:
        todo = plan(schedule, Timing.of(schedule), now_ms, self.grace_ms)
        if todo is None:
            return 0
        if todo.skipped:
            try:
                advance_to = math.inf if todo.advance_to_ms is None else todo.advance_to_ms
                self._update(schedule.id, skip(todo.expected_next_ms, advance_to, todo.skipped))
            except FireTaken:
                return 0  # another replica is handling this schedule's backlog
            log.info("schedule %s: %d missed fire(s) skipped", schedule.id, todo.skipped)
        created = 0
        planned = definition(schedule)
        for instant, result, next_ms in todo.fires:
            transition = partial(after_fire, instant, result, next_ms, planned=planned)
            try:
                self._create(schedule, f"at:{instant:.0f}", transition)
            except FireTaken:
                continue  # another replica created this fire's job
            created += 1
        return created

    def _now_for(self, cron: str | None) -> float:
        """Cron follows the calendar, so the wall clock as it is now, steps and all; an
        interval is elapsed time, on the exporter's own time line."""
        return self.clock.wall_ms() if cron is not None else self.clock.now_ms()

    def _create(self, schedule: Schedule, key: str, transition_for) -> QueueJob:
        return self.queue.create(
            schedule.type,
            schedule.name,
            schedule.payload,
            schedule.max_attempts,
            fire=lambda job_id: ScheduleFire(schedule.id, key, transition_for(job_id)),
        )

    def _update(self, schedule_id: str, transition) -> Schedule:
        schedule = self.store.schedule_update(schedule_id, transition)
        if schedule is None:
            raise UnknownSchedule(schedule_id)
        return schedule


def due_instants(timing: Timing, after_ms: float, count: int) -> Iterator[float]:
    """The next `count` fire instants after `after_ms` (for tests and the docs' examples)."""
    fire = after_ms
    for _ in range(count):
        next_fire = timing.next_after(fire)
        if next_fire is None:
            return
        yield next_fire
        fire = next_fire
