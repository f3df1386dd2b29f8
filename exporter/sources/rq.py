"""The RQ source: RQ's own queues and registries in Redis, read as one JobInfoBase listing.

With `--source NAME=rq+redis://HOST:PORT/DB` (docs/contract.md §6) neither the app nor its
workers run any code of ours. Each scrape reads where RQ keeps its jobs and builds the JSON
array an app would serve, which then takes the same path as an HTTP scrape
(`Listing.split`, `Ingestor.ingest_listing`): the same validation, listing memo, lost
detection and counts.

Where RQ (1.x to 3.x) keeps a job of queue Q, and what the job becomes here:

- `rq:queue:Q`, and `rq:queue:Q:intermediate` (popped by a worker, not started yet), lists;
  `rq:scheduled:Q` (also a retry with an interval) and `rq:deferred:Q`, sorted sets: the job
  waits, `pending`; or `retrying` when RQ requeued it after a failed run.
- `rq:wip:Q`, a sorted set of `ID:EXECUTION` scored by the worker's heartbeat deadline:
  `running` while that deadline lies ahead.
- `rq:finished:Q` and `rq:failed:Q`, sorted sets scored by expiry: `completed`, `failed`
  (a stopped job is failed too).
- `rq:canceled:Q`: not listed.

The job hash `rq:job:ID` is the truth of a job's state (its `status`), read after the
registries so a job that moved in between is reported where it went. Three round trips per
scrape (the queue names, the registries in one MULTI so every job is seen in one place, the
hashes), four when a failed job's error is new; no SCAN. Only redis-py is used, never the `rq`
package, and nothing pickled is read: the name is the job's `description` up to its first
"(" (RQ writes `module.function(args)` there), and the error is text RQ stores compressed.
"""

from __future__ import annotations

import logging
import time
import zlib
from base64 import b64decode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from exporter.config import rq_options
from exporter.model.counts import ScrapeErrorReason
from exporter.model.jobinfo import MAX_ERROR_LENGTH, MAX_NAME_LENGTH, MAX_TYPE_LENGTH
from exporter.sources.fetch import FetchError, FetchLimits

log = logging.getLogger(__name__)

PREFIX = "rq"  # RQ_KEY_PREFIX, RQ's default
UNKNOWN_NAME = "unknown"  # a job without a description
HASH_BATCH = 5000  # job hashes per pipeline, the deadline checked between pipelines
MAX_ERROR_TEXT = 1 << 20  # decompressed bytes of one exception read at most

# Fields of `rq:job:ID` read: no `data`, `result` or `meta`, which hold pickles.
JOB_FIELDS = (
    "status",
    "origin",
    "description",
    "created_at",
    "enqueued_at",
    "started_at",
    "ended_at",
    "retries_left",
    "number_of_retries",
    "exc_info",
)
WAITING = frozenset({"queued", "scheduled", "deferred", "created", "ready_to_enqueue"})
# The places a job is looked for, most wanted first: past `max_jobs` the rest are left out,
# and a running job left out would be counted lost, a finished one only shown late.
PLACES = ("started", "intermediate", "queued", "scheduled", "deferred", "failed", "finished")
RESULT_STOPPED, RESULT_MAX_RETRIES = b"3", b"5"  # values of rq.results.Result.Type


@dataclass(frozen=True, slots=True)
class Found:
    """A job id, the place it was found in (one of PLACES) and that place's queue."""

    id: str
    place: str
    queue: str


class RQReader:
    """Reads one RQ Redis as a JobInfoBase array (bytes); `read` raises only FetchError.

    It keeps two memos between scrapes, both pruned to the jobs of the last one: the highest
    `retries_left` seen of each job (see `_attempt`), and each failed job's error text (so a
    failed job's results stream is read once, not on every scrape).
    """

    def __init__(self, url: str, limits: FetchLimits) -> None:
        options = rq_options(url)
        self.queues = options.queues
        self.max_jobs = options.max_jobs
        self.limits = limits
        self.left_out = 0  # jobs the last scrape could not read, past max_jobs
        self._where = _redacted(url)
        self._redis = redis.Redis.from_url(
            _redis_url(url),
            socket_connect_timeout=limits.connect_timeout,
            socket_timeout=limits.read_timeout,
            retry=Retry(NoBackoff(), 0),  # a failed scrape is retried by the next one
        )
        self._retries_top: dict[str, int] = {}
        self._errors: dict[str, tuple[bytes | None, str | None]] = {}

    def read(self) -> bytes:
        """Every job RQ keeps (up to `max_jobs`), as the JSON array of an app's endpoint."""
        deadline = time.monotonic() + self.limits.total_timeout
        try:
            body = msgspec.json.encode(self._items(deadline))
        except FetchError:
            raise
        except redis.TimeoutError as error:
            raise FetchError(ScrapeErrorReason.TIMEOUT, f"{self._where}: {error}") from error
        except redis.ConnectionError as error:
            raise FetchError(ScrapeErrorReason.CONNECTION, f"{self._where}: {error}") from error
        except Exception as error:  # a WRONGTYPE key, a reply we did not expect: counted
            raise FetchError(
                ScrapeErrorReason.INTERNAL, f"{self._where}: {type(error).__name__}: {error}"
            ) from error
        if len(body) > self.limits.max_bytes:
            raise FetchError(
                ScrapeErrorReason.TOO_LARGE,
                f"{len(body)} bytes of jobs, cap {self.limits.max_bytes}",
            )
        return body

    def close(self) -> None:
        self._redis.close()

    def _items(self, deadline: float) -> list[dict[str, Any]]:
        queues = self.queues or self._queue_names()
        _check(deadline)
        places = self._places(queues, time.time())
        _check(deadline)
        items: list[dict[str, Any]] = []
        retries_top: dict[str, int] = {}
        errors: dict[str, tuple[bytes | None, str | None]] = {}
        for batch in _batches(places, HASH_BATCH):
            for found, fields, latest in self._hashes(batch):
                item = self._item(found, fields, latest, retries_top, errors)
                if item is not None:
                    items.append(item)
            _check(deadline)
        self._retries_top, self._errors = retries_top, errors
        return items

    def _queue_names(self) -> list[str]:
        """Every queue RQ has registered (`rq:queues` holds their keys)."""
        keys = self._redis.smembers(f"{PREFIX}:queues")
        start = len(f"{PREFIX}:queue:")
        return sorted(_text(key)[start:] for key in keys)

    def _places(self, queues: Sequence[str], now_s: float) -> list[Found]:
        """Where each job is, read in one MULTI so that no job is caught moving between two
        places; at most `max_jobs`, the most wanted places first (PLACES)."""
        cap = self.max_jobs
        with self._redis.pipeline(transaction=True) as pipe:
            for queue in queues:
                wip = f"{PREFIX}:wip:{queue}"
                # Live entries only: one whose heartbeat deadline passed belongs to a worker
                # that died, and RQ fails or retries it only when its cleanup next runs.
                pipe.zrangebyscore(wip, now_s, "+inf", start=0, num=cap)
                pipe.zcount(wip, now_s, "+inf")
                for key in (f"{PREFIX}:queue:{queue}:intermediate", f"{PREFIX}:queue:{queue}"):
                    pipe.lrange(key, 0, cap - 1)
                    pipe.llen(key)
                for kind in ("scheduled", "deferred"):
                    pipe.zrange(f"{PREFIX}:{kind}:{queue}", 0, cap - 1)
                    pipe.zcard(f"{PREFIX}:{kind}:{queue}")
                for kind in ("failed", "finished"):  # newest first: the highest expiry
                    pipe.zrevrange(f"{PREFIX}:{kind}:{queue}", 0, cap - 1)
                    pipe.zcard(f"{PREFIX}:{kind}:{queue}")
            replies = pipe.execute()
        per_queue = 2 * len(PLACES)
        total = sum(int(size) for size in replies[1::2])
        places: dict[str, Found] = {}
        for offset, place in enumerate(PLACES):
            for number, queue in enumerate(queues):
                for member in replies[number * per_queue + 2 * offset]:
                    job_id = _text(member)
                    if place == "started":
                        job_id = job_id.split(":", 1)[0]  # ID:EXECUTION since RQ 2.0
                    if job_id not in places and len(places) < cap:
                        places[job_id] = Found(job_id, place, queue)
        self._note_left_out(max(0, total - len(places)))
        return list(places.values())

    def _hashes(
        self, batch: list[Found]
    ) -> Iterator[tuple[Found, list[bytes | None], list[Any] | None]]:
        """Each job's fields, and for a failed job whose error is not known yet the latest
        entry of its results stream (where RQ 1.12 and later keep the exception)."""
        with self._redis.pipeline(transaction=False) as pipe:
            wanted: list[bool] = []
            for found in batch:
                pipe.hmget(f"{PREFIX}:job:{found.id}", JOB_FIELDS)
                needs_result = found.place == "failed" and found.id not in self._errors
                if needs_result:
                    pipe.xrevrange(f"{PREFIX}:results:{found.id}", "+", "-", count=1)
                wanted.append(needs_result)
            replies = iter(pipe.execute())
        for entry, needs_result in zip(batch, wanted, strict=True):
            fields = next(replies)
            latest = next(replies) if needs_result else None
            yield entry, fields, latest

    def _item(
        self,
        found: Found,
        fields: list[bytes | None],
        latest: list[Any] | None,
        retries_top: dict[str, int],
        errors: dict[str, tuple[bytes | None, str | None]],
    ) -> dict[str, Any] | None:
        """One JobInfoBase item of a job's hash; None for a job gone (its hash expired since
        the registries were read) or canceled, or one whose hash does not parse."""
        (status_raw, origin, description, created, enqueued, started, ended) = fields[:7]
        retries_left, number_of_retries, exc_info = fields[7:]
        job_id = found.id
        if status_raw is None and origin is None:
            return None  # expired or deleted
        status = _text(status_raw)
        try:
            created_ms, enqueued_ms = _ms(created), _ms(enqueued)
            started_ms, ended_ms = _ms(started), _ms(ended)
            left = _int(retries_left)
            retried = _int(number_of_retries) or 0
        except ValueError as unreadable:
            log.debug("RQ %s: job %s skipped, unreadable hash: %s", self._where, job_id, unreadable)
            return None
        requeues = retried
        if left is not None:
            # How many runs RQ's `Retry` has had so far. Returning `Retry(...)` from a job
            # counts up `number_of_retries`; raising with `enqueue(retry=Retry(max=N))`
            # counts `retries_left` down from N, and N is kept nowhere. So the highest
            # `retries_left` seen of the job stands in for N: a job seen from its enqueue on
            # gets its exact run number, and one first seen waiting after a run (RQ keeps
            # `started_at` of the run it requeued) is taken to have had one retry so far.
            known = self._retries_top.get(job_id)
            top = left if known is None else max(known, left)
            if known is None and status in WAITING and started_ms is not None and not retried:
                top = left + 1
            retries_top[job_id] = top
            requeues += top - left
        item: dict[str, Any] = {
            "id": job_id,
            "name": _name(description),
            "backgroundJobType": (_text(origin) or found.queue)[:MAX_TYPE_LENGTH],
        }
        waited_since = enqueued_ms if enqueued_ms is not None else created_ms
        if status in WAITING:
            if requeues and started_ms is not None:
                # Between two runs: the run that just failed, as RQ requeued it (§2).
                item |= {"status": "retrying", "isFinished": False, "attempt": requeues}
                item["startTimestamp"] = started_ms
                if ended_ms is not None and ended_ms >= started_ms:
                    item["finishTimestamp"] = ended_ms
                return item
            if waited_since is None:
                return None
            item |= {"status": "pending", "isFinished": False, "startTimestamp": waited_since}
            if enqueued_ms is not None:
                item["enqueueTimestamp"] = enqueued_ms
            return item
        if status == "started":
            if found.place != "started":
                # Started, but not live in the started registry: its worker stopped sending
                # heartbeats (or it started a moment ago and shows there next time).
                return None
            item |= {"status": "running", "isFinished": False}
        elif status == "finished":
            item |= {"status": "completed", "isFinished": True}
        elif status in ("failed", "stopped"):
            item |= {"status": "failed", "isFinished": True}
            error = self._error_of(job_id, ended, exc_info, latest)
            errors[job_id] = (ended, error)
            if error:
                item["error"] = error
        else:
            return None  # canceled, rate limited, or a status RQ may add later
        start = started_ms if started_ms is not None else waited_since
        if start is None:
            return None
        item["startTimestamp"] = start
        item["attempt"] = requeues + 1
        if enqueued_ms is not None and enqueued_ms <= start:
            item["enqueueTimestamp"] = enqueued_ms
        if item["isFinished"] and ended_ms is not None and ended_ms >= start:
            item["finishTimestamp"] = ended_ms
        return item

    def _error_of(
        self, job_id: str, ended: bytes | None, exc_info: bytes | None, latest: list[Any] | None
    ) -> str | None:
        """The last line of the exception: from the hash (RQ before 1.12 kept it there), else
        from the latest entry of the results stream, read once per failure."""
        if exc_info:
            return _last_line(_inflate(exc_info))
        known = self._errors.get(job_id)
        if latest is None and known is not None:
            if known[0] == ended:
                return known[1]
            # Failed again since (requeued by hand): one more round trip, for this job only.
            latest = self._redis.xrevrange(f"{PREFIX}:results:{job_id}", "+", "-", count=1)
        return _result_error(latest)

    def _note_left_out(self, left_out: int) -> None:
        """Log once when jobs start being left out past max_jobs, and once when it ends."""
        if left_out and not self.left_out:
            log.warning(
                "RQ %s: %d jobs left out of this scrape, past max_jobs=%d",
                self._where,
                left_out,
                self.max_jobs,
            )
        elif self.left_out and not left_out:
            log.info("RQ %s: every job read again (max_jobs=%d)", self._where, self.max_jobs)
        self.left_out = left_out


def _result_error(latest: list[Any] | None) -> str | None:
    """The error of the latest entry of a job's results stream (`exc_string` is zlib text in
    base64; `return_value`, a pickle, is never touched)."""
    if not latest:
        return None
    _, entry = latest[0]
    text = entry.get(b"exc_string")
    if text:
        return _last_line(_inflate(b64decode(text)))
    if entry.get(b"type") == RESULT_MAX_RETRIES:
        return "maximum number of retries exceeded"
    if entry.get(b"type") == RESULT_STOPPED:
        return "stopped"
    return None


def _redis_url(url: str) -> str:
    """The redis-py URL: the scheme without `rq+`, and no query (its parameters are ours)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.removeprefix("rq+"), parts.netloc, parts.path, "", ""))


def _redacted(url: str) -> str:
    """The URL as logs may show it: no password, no query."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise FetchError(ScrapeErrorReason.TIMEOUT, "RQ's registries not read within the timeout")


def _batches(entries: list[Found], size: int) -> Iterator[list[Found]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def _text(raw: bytes | str | None) -> str:
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "replace") if raw else ""


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw else None


def _ms(raw: bytes | None) -> float | None:
    """RQ's UTC timestamps (`2024-05-01T12:00:00.123456Z`) in epoch milliseconds."""
    if not raw:
        return None
    moment = datetime.fromisoformat(raw.decode().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def _name(description: bytes | None) -> str:
    """The function of `module.function(args)`, RQ's description of a job."""
    name = _text(description).split("(", 1)[0].strip()
    return name[:MAX_NAME_LENGTH] or UNKNOWN_NAME


def _inflate(raw: bytes) -> str:
    """RQ's zlib-compressed exception text (or plain text, as very old RQ wrote it), bounded
    so a large traceback cannot take the scrape's memory."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, MAX_ERROR_TEXT)
    except zlib.error:
        text = raw[:MAX_ERROR_TEXT]
    return text.decode("utf-8", "replace")


def _last_line(text: str) -> str | None:
    """The exception's last line (`ValueError: ...` of a traceback), at most 4,000 chars."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:MAX_ERROR_LENGTH] if lines else None
