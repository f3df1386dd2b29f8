"""Bytes to validated JobInfo items: one C pass when all is well, item by item when not.

A source's response is decoded straight into typed structs; only when that fails are the
items decoded one at a time, so a few bad items are skipped and counted by field while the
rest still apply (docs/contract.md §2: invalid items never spoil a scrape).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from exporter.model.jobinfo import (
    FIELD_WIRE_NAMES,
    FINISHED_STATUSES,
    ITEM_FIELD,
    MAX_FUTURE_MS,
    JobInfo,
)

_list_decoder = msgspec.json.Decoder(list[JobInfo])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_item_decoder = msgspec.json.Decoder(JobInfo)

_PATH_FIELD = re.compile(r"`\$(?:\[\d+\])?\.(\w+)")
_MISSING_FIELD = re.compile(r"missing required field `(\w+)`")
_KNOWN_FIELDS = frozenset(FIELD_WIRE_NAMES.values())
NUL = "\x00"
ESCAPED_NUL = b"\\u0000"  # the only way JSON carries NUL: a raw one is malformed JSON


class InvalidDocument(ValueError):
    """The body is not a JSON array at all: the whole scrape or push fails."""


@dataclass(slots=True)
class ItemError:
    """Why one item was skipped: its position, the wire field at fault and the reason."""

    index: int
    field: str
    message: str


@dataclass(slots=True)
class Decoded:
    """The valid items in input order and the errors of the skipped ones. `positions` holds
    each valid item's place in the input, or is None when `jobs[i]` is item i."""

    jobs: list[JobInfo]
    errors: list[ItemError] = field(default_factory=list)
    positions: list[int] | None = None

    def invalid_by_field(self) -> Counter[str]:
        return Counter(error.field for error in self.errors)


def field_of(error: msgspec.ValidationError) -> str:
    """The wire field a msgspec validation error is about (`item` when it names none)."""
    text = str(error)
    match = _MISSING_FIELD.search(text) or _PATH_FIELD.search(text)
    if match and match.group(1) in _KNOWN_FIELDS:
        return match.group(1)
    return ITEM_FIELD


def _message_of(error: msgspec.ValidationError) -> str:
    return str(error).split(" - at ")[0]


def _semantic_error(job: JobInfo, latest_start_ms: float) -> tuple[str, str] | None:
    """Rules a static schema cannot state: not too far in the future, finish after start,
    enqueued before start, a status that agrees with isFinished, no NUL character
    (PostgreSQL text cannot hold one; both stores refuse it alike)."""
    if NUL in job.id or NUL in job.name or NUL in job.background_job_type:
        field = "id" if NUL in job.id else "name" if NUL in job.name else "backgroundJobType"
        return field, "contains a NUL character"
    if job.error is not None and NUL in job.error:
        return "error", "contains a NUL character"
    if job.start_timestamp > latest_start_ms:
        return "startTimestamp", "more than 24 h in the future"
    if job.finish_timestamp is not None and job.finish_timestamp < job.start_timestamp:
        return "finishTimestamp", "earlier than startTimestamp"
    if job.enqueue_timestamp is not None and job.enqueue_timestamp > job.start_timestamp:
        return "enqueueTimestamp", "later than startTimestamp"
    if job.status is not None and (job.status in FINISHED_STATUSES) != job.is_finished:
        need = "true" if job.status in FINISHED_STATUSES else "false"
        return "status", f"status {job.status!r} needs isFinished {need}"
    return None


def decode_jobs(body: bytes | bytearray, now_ms: float) -> Decoded:
    """Decode a JSON array of JobInfoBase; raise InvalidDocument if it is not one."""
    positions: list[int] | None = None  # None: jobs[i] is item i of the input
    try:
        jobs = _list_decoder.decode(body)
        errors: list[ItemError] = []
    except msgspec.ValidationError:
        jobs, positions, errors = _decode_item_by_item(body)
    except msgspec.DecodeError as error:
        raise InvalidDocument(f"not valid JSON: {error}") from error
    if positions is None and _batch_passes(body, jobs, now_ms + MAX_FUTURE_MS):
        return Decoded(jobs, errors)
    return _apply_semantic_rules(jobs, positions, errors, now_ms)


def _batch_passes(body: bytes | bytearray, jobs: list[JobInfo], latest_start_ms: float) -> bool:
    """The semantic rules for a whole healthy batch in one tight loop, with no call per job
    (a call per job was most of the time), and NUL looked for in the bytes.
    False means some job may break a rule; each is then checked on its own."""
    if b"\\" in body and ESCAPED_NUL in body:
        return False
    for job in jobs:
        start = job.start_timestamp
        finish = job.finish_timestamp
        if start > latest_start_ms or (finish is not None and finish < start):
            return False
    # The extension fields' rules, only for a body that names them at all.
    if b'"status"' in body:
        finished = FINISHED_STATUSES
        for job in jobs:
            status = job.status
            if status is not None and (status in finished) != job.is_finished:
                return False
    if b'"enqueueTimestamp"' in body:
        for job in jobs:
            enqueued = job.enqueue_timestamp
            if enqueued is not None and enqueued > job.start_timestamp:
                return False
    return True


def decode_items(raw_items: Sequence[msgspec.Raw], places: Sequence[int], now_ms: float) -> Decoded:
    """Decode some items of an already split response, one by one; `places` are their
    positions in it, which errors and `Decoded.positions` report."""
    jobs, positions, errors = _decode_each(raw_items, places)
    return _apply_semantic_rules(jobs, positions, errors, now_ms)


def split_items(body: bytes | bytearray) -> list[msgspec.Raw]:
    """The items of a JSON array, undecoded (views of `body`); InvalidDocument if the body
    is not a JSON array."""
    try:
        return _raw_list_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidDocument(f"expected a JSON array of jobs: {_message_of(error)}") from error
    except msgspec.DecodeError as error:
        raise InvalidDocument(f"not valid JSON: {error}") from error


def _decode_item_by_item(
    body: bytes | bytearray,
) -> tuple[list[JobInfo], list[int], list[ItemError]]:
    raw_items = split_items(body)
    return _decode_each(raw_items, range(len(raw_items)))


def _decode_each(
    raw_items: Sequence[msgspec.Raw], places: Sequence[int]
) -> tuple[list[JobInfo], list[int], list[ItemError]]:
    jobs: list[JobInfo] = []
    positions: list[int] = []
    errors: list[ItemError] = []
    decode = _item_decoder.decode
    for index, raw in zip(places, raw_items, strict=True):
        try:
            jobs.append(decode(raw))
            positions.append(index)
        except msgspec.ValidationError as error:
            errors.append(ItemError(index, field_of(error), _message_of(error)))
    return jobs, positions, errors


def _apply_semantic_rules(
    jobs: list[JobInfo], positions: list[int] | None, errors: list[ItemError], now_ms: float
) -> Decoded:
    latest_start_ms = now_ms + MAX_FUTURE_MS
    # Fast check first: on a healthy response no item breaks a rule and nothing is copied.
    if not any(_semantic_error(job, latest_start_ms) for job in jobs):
        return Decoded(jobs, errors, positions)
    valid: list[JobInfo] = []
    valid_positions: list[int] = []
    for offset, job in enumerate(jobs):
        problem = _semantic_error(job, latest_start_ms)
        index = positions[offset] if positions is not None else offset
        if problem is None:
            valid.append(job)
            valid_positions.append(index)
        else:
            errors.append(ItemError(index, problem[0], problem[1]))
    errors.sort(key=lambda error: error.index)
    return Decoded(valid, errors, valid_positions)
