"""Push job events to the exporter from a background thread, never blocking the app, across
forks and abrupt exits (docs/contract.md §6).

Events wait in a bounded queue; a thread sends them in batches to `POST /api/v1/push`. When
the exporter is down the thread retries with capped exponential backoff and jitter, and the
oldest events are dropped (and counted) once the queue is full. Resending a batch whose
answer was lost counts nothing twice: the exporter remembers jobs by source and id, and an
item equal to what it knows changes nothing. That is what makes the rest safe:

- **Forks.** Celery's prefork pool and RQ fork after the app made its reporter, and only the
  forking thread survives a fork. An `os.register_at_fork` hook (holding reporters weakly)
  gives the child fresh locks, an empty queue and no thread; the child's first emit starts
  its own sender. The parent's queued events stay the parent's to send.
- **Abrupt exits.** Every event is also written to this process's spool file (`spool.py`)
  as it is emitted, one `pwrite` into the page cache, and settled there once sent. A child
  that ends through `os._exit` or SIGKILL leaves what it had not sent in that file, and the
  next reporter with the same exporter URL and source (starting, or every
  `pickup_interval` in a live one) adopts and sends it. Sending sooner from the child
  instead would need the app to wait at every task's end; this costs it one write.
- **Heartbeats.** A pushed job cannot vanish from a list, so the exporter learns that its
  process died only by silence: every `heartbeat_interval` the sender re-sends the latest
  item of each job still running, and every push says `lostAfter` (three intervals), after
  which the exporter counts a silent running job `lost`.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import math
import os
import pickle
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar

from exporter.client import spool
from exporter.client.tracking import JobTracking

log = logging.getLogger(__name__)

HEARTBEAT_STATUSES = (None, "running")  # a job in one of these is running (docs/contract.md §1)
LOST_AFTER_BEATS = 3  # the exporter waits this many heartbeat intervals before `lost`
# The `lostAfter` a push may ask for, in seconds (docs/contract.md §4): the exporter refuses
# a push outside these, so a shorter or longer heartbeat interval asks for the nearest bound.
LOST_AFTER_RANGE = (5, 30 * 24 * 3600)

# Every reporter of this process, held weakly, for the fork hooks.
_REPORTERS: weakref.WeakSet[JobReporter] = weakref.WeakSet()
_HELD_FOR_FORK: list[JobReporter] = []


class JobReporter(JobTracking):
    def __init__(
        self,
        url: str,
        source: str = "push",
        *,
        token: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        timeout: float = 5.0,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        heartbeat_interval: float | None = 15.0,
        max_heartbeat_jobs: int = 10_000,
        spool_dir: str | os.PathLike[str] | bool | None = None,
        max_spool_bytes: int = 64 << 20,
        pickup_interval: float = 10.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        """`spool_dir`: the base folder of the spool (default `$JOB_EXPORTER_SPOOL_DIR`,
        else one of this user's under the temporary folder), `False` for none."""
        super().__init__(clock)
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive, or None for no heartbeats")
        self.push_url = f"{url.rstrip('/')}/api/v1/push"
        self.source = source
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.heartbeat_interval = heartbeat_interval
        self.max_heartbeat_jobs = max_heartbeat_jobs
        self.max_spool_bytes = max_spool_bytes
        self.pickup_interval = pickup_interval
        self._params = {"source": source}
        if heartbeat_interval is not None:
            low, high = LOST_AFTER_RANGE
            lost_after = min(high, max(low, math.ceil(LOST_AFTER_BEATS * heartbeat_interval)))
            self._params["lostAfter"] = str(lost_after)
        self._session = session or requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._folder: Path | None = None
        self._private_parent = False
        if spool_dir is not False and spool.AVAILABLE:
            base = None if spool_dir is None or spool_dir is True else spool_dir
            self._folder = spool.spool_folder(base, self.push_url, source)
            self._private_parent = base is None and not os.environ.get(spool.ENV_DIR)
        self._closing = False
        self._reset_process_state()
        _REPORTERS.add(self)
        self._start_sender()
        atexit.register(self.close)

    def _reset_process_state(self) -> None:
        """The state that belongs to one process: made here, and again in a forked child."""
        self._pid = os.getpid()
        self._changed = threading.Condition()
        self._queue: deque[tuple[bytes, int]] = deque()  # JSON line, its spool end offset
        self._in_flight: list[tuple[bytes, int]] = []
        self._running: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._spool: spool.OwnSpool | None = None
        self._spool_failed = self._folder is None
        self._orphans: list[spool.Orphan] = []
        self._thread: threading.Thread | None = None
        self._oldest_at = 0.0  # monotonic time the oldest queued event was queued
        self._flush_wanted = False  # flush() waits: send what there is without lingering
        self._sender_missing = False
        self._failures = 0
        self.dropped = 0  # events lost to a full queue or a full spool folder
        self.rejected = 0  # events the exporter refused (a 4xx: resending cannot help)
        self.sent = 0  # events delivered, this process's own and adopted ones
        self.heartbeats = 0  # running items re-sent as heartbeats
        self.coalesced = 0  # running items not sent: their run's end was queued behind them
        # A running item still queued, by job id: its entry, its keys and its attempt, so
        # the end of the same run queued behind it can make it unnecessary to send; and the
        # job id of each such entry (by id(), while the queue holds it).
        self._queued_running: dict[str, tuple[tuple[bytes, int], frozenset[str], Any]] = {}
        self._start_of: dict[int, str] = {}
        self._superseded: set[int] = set()  # id() of queued entries not to send
        self._warned: set[str] = set()

    def emit(self, item: dict[str, Any]) -> None:
        try:
            line = (json.dumps(item, separators=(",", ":"), allow_nan=False) + "\n").encode()
        except (TypeError, ValueError) as error:
            self.rejected += 1
            log.error("job reporter: an event that is not JSON was dropped: %s", error)
            return
        if self._pid != os.getpid():  # a fork the hook did not see (it always should)
            _after_fork_in_child()
        notices: list[str] = []  # logged once the lock is released
        with self._changed:
            if self.heartbeat_interval is not None:
                self._track_running(item, line, notices)
            offset = self._spool_write(line, notices)
            if len(self._queue) + len(self._in_flight) >= self.max_queue:
                self._drop_oldest(notices)
            if len(self._queue) + len(self._in_flight) < self.max_queue:
                if not self._queue:  # the sender may be asleep until its next pick-up
                    self._oldest_at = time.monotonic()
                    self._changed.notify_all()
                entry = (line, offset)
                self._queue.append(entry)
                self._coalesce(item, entry)
            if len(self._queue) == self.batch_size:  # a full batch: no need to wait for more
                self._changed.notify_all()
            if not self._closing and (self._thread is None or not self._thread.is_alive()):
                self._start_sender(notices)
        for message in notices:
            log.warning("%s", message)

    def _coalesce(self, item: dict[str, Any], entry: tuple[bytes, int]) -> None:
        """A run's end queued behind its still-queued start says all the start said (every
        one of its fields), so the start need not be sent: a short task costs the exporter
        one event, not two. Both stay in the spool until sent, so a crash loses neither."""
        job_id = item.get("id")
        if not isinstance(job_id, str):
            return
        attempt = item.get("attempt", 1)
        if item.get("isFinished") is False and item.get("status", "running") == "running":
            self._queued_running[job_id] = (entry, frozenset(item), attempt)
            self._start_of[id(entry)] = job_id
            return
        queued = self._queued_running.pop(job_id, None)
        if queued is None:
            return
        start, keys, start_attempt = queued
        del self._start_of[id(start)]
        ends_run = item.get("isFinished") is True or item.get("status") == "retrying"
        if ends_run and start_attempt == attempt and keys <= item.keys():
            self._superseded.add(id(start))

    def _taken(self, entries: list[tuple[bytes, int]]) -> int:
        """Entries leave the queue (sent or dropped): no later event may supersede them.
        Returns how many of them were superseded."""
        superseded = 0
        for entry in entries:
            key = id(entry)
            job_id = self._start_of.pop(key, None)
            if job_id is not None:
                del self._queued_running[job_id]
            if key in self._superseded:
                self._superseded.discard(key)
                superseded += 1
        return superseded

    def _notice(self, notices: list[str], key: str, message: str) -> None:
        """Queue a warning to log after the lock, once per process and `key`."""
        if key not in self._warned:
            self._warned.add(key)
            notices.append(message)

    def _track_running(self, item: dict[str, Any], line: bytes, notices: list[str]) -> None:
        job_id = item.get("id")
        if not isinstance(job_id, str):
            return
        if item.get("isFinished") is False and item.get("status") in HEARTBEAT_STATUSES:
            self._running[job_id] = line
            self._running.move_to_end(job_id)
            if len(self._running) > self.max_heartbeat_jobs:
                self._running.popitem(last=False)
                self._notice(
                    notices,
                    "heartbeats full",
                    f"job reporter: more than {self.max_heartbeat_jobs} running jobs; the "
                    "oldest get no heartbeat, and the exporter may count them lost",
                )
        else:
            self._running.pop(job_id, None)

    def _spool_write(self, line: bytes, notices: list[str]) -> int:
        """Append to this process's spool, made on the first event; 0 when there is none."""
        if self._spool_failed:
            return 0
        try:
            if self._spool is None:
                assert self._folder is not None
                spool.prepare_folder(self._folder, private_parent=self._private_parent)
                self._spool = spool.OwnSpool(self._folder)
            return self._spool.append(line)
        except OSError as error:
            self._spool_failed = True
            self._notice(
                notices,
                "spool",
                f"job reporter: no spool ({error}); events not sent yet are lost if this "
                "process ends abruptly",
            )
            return 0

    def _drop_oldest(self, notices: list[str]) -> None:
        """Keep the bound: the oldest queued event goes (the new one when all are in flight)."""
        if self._queue:
            self._taken([self._queue.popleft()])
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            notices.append(f"job reporter queue full: {self.dropped} events dropped so far")
        self._settle_spool()

    def _settle_spool(self) -> None:
        """Mark the spool settled up to the oldest event still held (in flight or queued)."""
        if self._spool is None:
            return
        held = self._in_flight[0] if self._in_flight else self._queue[0] if self._queue else None
        offset = held[1] - len(held[0]) if held else self._spool.end
        try:
            self._spool.settle(offset)
        except OSError as error:
            self._spool_failed = True
            self._spool = None
            log.warning("job reporter: the spool failed (%s); going on without it", error)

    def _start_sender(self, notices: list[str] | None = None) -> None:
        """Start this process's sending thread (lazily again after a fork). Events waiting
        with no live sender are warned about once, and so is the recovery."""
        notices = [] if notices is None else notices
        if self._thread is not None and not self._sender_missing:  # it ran here, and stopped
            self._sender_missing = True
            notices.append("job reporter: the sending thread had stopped; starting another")
        thread = threading.Thread(target=self._run, name="job-reporter", daemon=True)
        try:
            thread.start()
        except RuntimeError as error:  # at interpreter shutdown, or out of threads
            if not self._sender_missing:
                self._sender_missing = True
                notices.append(
                    f"job reporter: events wait with no sending thread ({error}); they stay "
                    "in the spool for the next process"
                )
            return
        self._thread = thread
        if self._sender_missing:
            self._sender_missing = False
            notices.append("job reporter: a sending thread runs again")

    @property
    def queued(self) -> int:
        with self._changed:
            return len(self._queue) + len(self._in_flight)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was sent (or refused), adopted ones included;
        False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            missing = self._thread is None or not self._thread.is_alive()
            notices: list[str] = []
            if (self._queue or self._orphans) and missing and not self._closing:
                self._start_sender(notices)
            self._flush_wanted = True
            self._changed.notify_all()
            while self._queue or self._in_flight or self._orphans:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
        for message in notices:
            log.warning("%s", message)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (one try each, within `timeout`), then stop the thread. What
        could not be sent stays in the spool for the next process."""
        if self._closing:
            return
        if self._failures == 0:  # while the exporter is unreachable, waiting is pointless
            self.flush(timeout)
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._changed:
            for orphan in self._orphans:
                orphan.release()
            self._orphans = []
            if self._spool is not None:
                self._spool.close(remove=not (self._queue or self._in_flight))
                self._spool = None
            self._spool_failed = True  # an emit after close queues in memory only
        atexit.unregister(self.close)

    # The sending thread.

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the next emit notices, warns and starts another
            log.exception("job reporter: the sending thread failed")
            with self._changed:  # the batch in hand goes back, for the next thread
                self._requeue(self._in_flight)
                self._in_flight = []

    def _loop(self) -> None:
        now = time.monotonic()
        next_beat = now + (self.heartbeat_interval or 0)
        next_pickup = now  # adopt what ended processes left, first thing
        while True:
            with self._changed:
                wake = min(next_pickup, next_beat) if self.heartbeat_interval else next_pickup
                self._wait_for_work(wake)
                if self._closing and (not self._queue or self._failures):
                    return
                now = time.monotonic()
            outcome = "sent"
            if now >= next_pickup and self._folder is not None:
                outcome = self._send_orphans()
                if outcome != "retry":
                    next_pickup = time.monotonic() + self.pickup_interval
            interval = self.heartbeat_interval
            if outcome != "retry" and interval and now >= next_beat and not self._closing:
                outcome = self._send_heartbeats()
                next_beat = time.monotonic() + interval
            if outcome != "retry":
                outcome = self._send_queued()
            if outcome == "retry":
                if self._closing:
                    return  # the app is exiting and the exporter is unreachable: give up
                self._back_off()

    def _wait_for_work(self, wake: float) -> None:
        """Wait (under the lock) until a batch is full, the oldest queued event has waited
        `flush_interval`, a flush or close asks, or `wake` comes. Sending at once instead
        would make many small pushes, each costing far more than the events in it."""
        while not self._closing:
            due = wake
            if self._queue:
                if len(self._queue) >= self.batch_size or self._flush_wanted:
                    return
                due = min(due, self._oldest_at + self.flush_interval)
            remaining = due - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(remaining)

    def _send_queued(self) -> str:
        with self._changed:
            if not self._queue:
                return "sent"
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = batch
            superseded = self._superseded
            lines = [entry[0] for entry in batch if id(entry) not in superseded]
            self.coalesced += self._taken(batch)
        outcome = self._send(lines) if lines else "sent"
        with self._changed:
            self._in_flight = []
            self._oldest_at = time.monotonic()  # about when what is left was queued
            if not self._queue:
                self._flush_wanted = False
            if outcome == "retry":
                self._requeue(batch)
            else:
                self._count(outcome, len(batch))
            self._settle_spool()
            self._changed.notify_all()
        return outcome

    def _send_orphans(self) -> str:
        """Adopt spool files of ended processes and send their events, a batch at a time."""
        while True:
            with self._changed:
                if sum(orphan.left for orphan in self._orphans) < self.batch_size:
                    self._adopt_more()
                batch: list[bytes] = []
                parts: list[tuple[spool.Orphan, int]] = []
                for orphan in self._orphans:
                    take = min(orphan.left, self.batch_size - len(batch))
                    if take <= 0:
                        break
                    batch += [line for line, _ in orphan.events[orphan.sent : orphan.sent + take]]
                    parts.append((orphan, take))
                if not batch or self._closing:
                    self._changed.notify_all()
                    return "sent"
            outcome = self._send(batch)
            if outcome == "retry":
                return outcome
            with self._changed:
                self._count(outcome, len(batch))
                for orphan, take in parts:
                    try:
                        orphan.settle(take)
                        if not orphan.left:
                            orphan.finish()
                    except OSError:
                        orphan.release()
                self._orphans = [orphan for orphan in self._orphans if orphan.fd >= 0]
                self._changed.notify_all()

    def _adopt_more(self) -> None:
        assert self._folder is not None
        skip = {orphan.path for orphan in self._orphans}
        if self._spool is not None:
            skip.add(self._spool.path)
        try:
            found, dropped = spool.adopt(self._folder, skip, self.batch_size, self.max_spool_bytes)
        except OSError as error:
            log.debug("job reporter: cannot read the spool folder: %s", error)
            return
        self._orphans += found
        if dropped:
            self.dropped += dropped
            log.warning(
                "job reporter: the spool folder is over %d bytes: %d events of ended "
                "processes dropped",
                self.max_spool_bytes,
                dropped,
            )

    def _send_heartbeats(self) -> str:
        with self._changed:
            running = list(self._running.values())
        for start in range(0, len(running), self.batch_size):
            outcome = self._send(running[start : start + self.batch_size])
            if outcome == "retry":
                return outcome  # not resent: the next round carries the same items
            if outcome == "sent":
                self.heartbeats += len(running[start : start + self.batch_size])
        return "sent"

    def _send(self, batch: list[bytes]) -> str:
        body = b"[" + b",".join(line.rstrip(b"\n") for line in batch) + b"]"
        try:
            response = self._session.post(
                self.push_url,
                params=self._params,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            return self._failed(f"exporter unreachable: {error}")
        if response.status_code in (408, 429) or response.status_code >= 500:
            return self._failed(f"exporter answered {response.status_code}")
        if response.status_code >= 400:
            log.error(
                "exporter refused %d job events (%d): %s",
                len(batch),
                response.status_code,
                response.text[:500],
            )
            return "rejected"
        if self._failures:
            log.info("job reporter reached the exporter again")
        self._failures = 0
        return "sent"

    def _count(self, outcome: str, count: int) -> None:
        if outcome == "sent":
            self.sent += count
        else:
            self.rejected += count

    def _failed(self, reason: str) -> str:
        if self._failures == 0:
            log.warning("job reporter: %s; retrying with backoff", reason)
        self._failures += 1
        return "retry"

    def _requeue(self, batch: list[tuple[bytes, int]]) -> None:
        """Put a failed batch back in front, keeping the bound by dropping the oldest."""
        self._queue.extendleft(reversed(batch))
        while len(self._queue) > self.max_queue:
            self._taken([self._queue.popleft()])
            self.dropped += 1

    def _back_off(self) -> None:
        delay = min(self.retry_cap, self.retry_base * 2 ** min(self._failures - 1, 16))
        deadline = time.monotonic() + delay * random.uniform(0.5, 1.0)
        with self._changed:  # a full batch must not cut the wait short, only closing does
            while not self._closing and (remaining := deadline - time.monotonic()) > 0:
                self._changed.wait(remaining)

    # Forks.

    def _after_fork_in_child(self) -> None:
        """Forget the parent's queue, thread, spool and adopted files; keep the settings."""
        if self._spool is not None:
            self._spool.abandon()
        for orphan in self._orphans:
            orphan.release()
        self._reset_process_state()
        _fresh_connections(self._session)


def _fresh_connections(session: requests.Session) -> None:
    """Give a forked child its own connection pools: a socket shared with the parent would
    mix both processes' requests on one connection. Adapter settings are kept."""
    for prefix, adapter in list(session.adapters.items()):
        if isinstance(adapter, HTTPAdapter):
            try:  # an adapter's pickled state is its settings; unpickling makes new pools
                fresh = pickle.loads(pickle.dumps(adapter))
            except Exception:
                fresh = HTTPAdapter()
            session.mount(prefix, fresh)
    session.cookies = RequestsCookieJar()  # its lock may have been held at the fork


def _before_fork() -> None:
    """Hold every reporter's lock across the fork, so the child never copies a half-made
    change to a queue or a spool file."""
    _HELD_FOR_FORK[:] = list(_REPORTERS)
    for reporter in _HELD_FOR_FORK:
        reporter._changed.acquire()


def _after_fork_in_parent() -> None:
    for reporter in _HELD_FOR_FORK:
        reporter._changed.release()
    _HELD_FOR_FORK.clear()


def _after_fork_in_child() -> None:
    _HELD_FOR_FORK.clear()
    for reporter in list(_REPORTERS):
        if reporter._pid != os.getpid():
            reporter._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
