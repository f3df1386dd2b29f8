"""Bytes to validated JobInfo items: one C pass when all is well, item by item when not.

A source's response is decoded straight into typed structs; only when that fails are the
items decoded one at a time, so a few bad items are skipped and counted by field while the
rest still apply (docs/contract.md §2: invalid items never spoil a scrape).
"""

from __future__ import annotations

import re
from array import array
from bisect import insort
from collections import Counter
from collections.abc import Iterator, Sequence
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
MAX_NESTING = 64  # levels of arrays and objects a document may nest (docs/contract.md §8)
MAX_LISTED_ERRORS = 100  # item errors described with their message; the rest are counted
UNLISTED = "invalid (only the first errors by place are described)"
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


class InvalidDocument(ValueError):
    """The body is not a JSON array at all: the whole scrape or push fails."""


@dataclass(slots=True)
class ItemError:
    """Why one item was skipped: its position, the wire field at fault and the reason."""

    index: int
    field: str
    message: str


class ItemErrors(Sequence[ItemError]):
    """The errors of the skipped items: every one's place and field, 10 bytes each, but a
    message only for the first `limit` by place (`listed`). A body of 4 million bad items
    then costs 40 MB here, not 4 million error objects and their messages; an answer
    lists `listed` and says `len()`. Iterating yields every error in place order, those
    not listed with a stock message."""

    __slots__ = ("_codes", "_names", "_ordered", "_packed", "by_field", "limit", "listed")

    def __init__(self, limit: int = MAX_LISTED_ERRORS) -> None:
        self.limit = limit
        self.listed: list[ItemError] = []  # in place order
        self.by_field: Counter[str] = Counter()
        self._packed = array("Q")  # place << 8 | field code
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        self._ordered = True

    def add(self, index: int, field: str, message: str) -> None:
        code = self._codes.get(field)
        if code is None:  # fields are the few wire names, and `item`
            code = self._codes[field] = len(self._names)
            self._names.append(field)
        packed = index << 8 | code
        if self._packed and packed < self._packed[-1]:
            self._ordered = False
        self._packed.append(packed)
        self.by_field[field] += 1
        listed = self.listed
        if len(listed) < self.limit or index < listed[-1].index:
            insort(listed, ItemError(index, field, message), key=_place)
            del listed[self.limit :]

    def __len__(self) -> int:
        return len(self._packed)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return list(self)[position]
        return self._error(self._in_order()[position])

    def __iter__(self) -> Iterator[ItemError]:
        return map(self._error, self._in_order())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemErrors | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ItemErrors({len(self)}, listed={self.listed!r})"

    def _in_order(self) -> array:
        if not self._ordered:  # semantic errors came after schema errors of later items
            self._packed = array("Q", sorted(self._packed))
            self._ordered = True
        return self._packed

    def _error(self, packed: int) -> ItemError:
        index, field = packed >> 8, self._names[packed & 0xFF]
        listed = self.listed
        if listed and index <= listed[-1].index:
            for error in listed:
                if error.index == index:
                    return error
        return ItemError(index, field, UNLISTED)


def _place(error: ItemError) -> int:
    return error.index


@dataclass(slots=True)
class Decoded:
    """The valid items in input order and the errors of the skipped ones. `positions` holds
    each valid item's place in the input, or is None when `jobs[i]` is item i."""

    jobs: list[JobInfo]
    errors: ItemErrors = field(default_factory=ItemErrors)
    positions: list[int] | None = None

    def invalid_by_field(self) -> Counter[str]:
        return self.errors.by_field


def deeper_than(data: bytes | bytearray, limit: int) -> bool:
    """Whether JSON `data` nests arrays and objects more than `limit` levels deep. Found
    with no recursion and in C-speed passes (a 14 MB body in about 0.3 s): strings are cut
    out, everything but brackets dropped, and innermost pairs removed a level a round.
    Malformed brackets count as deep (the document is refused either way)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b'"' not in data:
        text = bytes(data)
    elif b"\\" not in data:  # no escapes: strings are what lies between quote pairs
        text = b"".join(bytes(data).split(b'"')[::2])
    else:
        text = _STRING.sub(b"", data)
    brackets = text.translate(_AS_SQUARE, _NOT_BRACKETS)
    for level in range(limit):
        if len(brackets) <= 2 * (limit - level):  # too short to hold what is left
            return False
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):  # unbalanced: nothing more comes out
            return True
        brackets = inner
    return bool(brackets)


def _check_nesting(data: bytes | bytearray, objects: int, limit: int) -> None:
    """InvalidDocument when `data` nests deeper than `limit`. `objects` items of it decoded
    as JobInfo, an object with no container fields: when the body holds no more brackets
    than those and its own array, it is two deep and nothing needs scanning, so a healthy
    listing costs two counts of its bytes (about 1 ms a MB)."""
    if data.count(b"[") + data.count(b"{") > objects + 1 and deeper_than(data, limit):
        raise InvalidDocument(f"JSON nested more than {limit} levels deep")


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


def decode_jobs(
    body: bytes | bytearray,
    now_ms: float,
    *,
    max_nesting: int = MAX_NESTING,
    max_listed: int = MAX_LISTED_ERRORS,
) -> Decoded:
    """Decode a JSON array of JobInfoBase; raise InvalidDocument if it is not one, or if it
    nests deeper than `max_nesting`. Errors past the first `max_listed` are only counted."""
    positions: list[int] | None = None  # None: jobs[i] is item i of the input
    try:
        jobs = _list_decoder.decode(body)
        errors = ItemErrors(max_listed)
    except msgspec.ValidationError:
        jobs, positions, errors = _decode_item_by_item(body, max_listed)
    except msgspec.DecodeError as error:
        raise InvalidDocument(f"not valid JSON: {error}") from error
    except RecursionError as error:  # msgspec's own guard, near 1,000 levels
        raise InvalidDocument(f"JSON nested more than {max_nesting} levels deep") from error
    _check_nesting(body, len(jobs), max_nesting)
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


def decode_items(
    raw_items: Sequence[msgspec.Raw],
    places: Sequence[int],
    now_ms: float,
    *,
    max_nesting: int = MAX_NESTING,
    max_listed: int = MAX_LISTED_ERRORS,
) -> Decoded:
    """Decode some items of an already split response, one by one; `places` are their
    positions in it, which errors and `Decoded.positions` report. InvalidDocument when an
    item nests deeper than the body may (its array is one level)."""
    jobs, positions, errors = _decode_each(raw_items, places, max_listed)
    if raw_items:
        joined = b"".join(raw_items)  # depth of the items side by side: the deepest one's
        if joined.count(b"[") + joined.count(b"{") > len(jobs) and deeper_than(
            joined, max_nesting - 1
        ):
            raise InvalidDocument(f"JSON nested more than {max_nesting} levels deep")
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
    except RecursionError as error:  # msgspec's own guard, near 1,000 levels
        raise InvalidDocument(f"JSON nested more than {MAX_NESTING} levels deep") from error


def _decode_item_by_item(
    body: bytes | bytearray, max_listed: int
) -> tuple[list[JobInfo], list[int], ItemErrors]:
    raw_items = split_items(body)
    return _decode_each(raw_items, range(len(raw_items)), max_listed)


def _decode_each(
    raw_items: Sequence[msgspec.Raw], places: Sequence[int], max_listed: int
) -> tuple[list[JobInfo], list[int], ItemErrors]:
    jobs: list[JobInfo] = []
    positions: list[int] = []
    errors = ItemErrors(max_listed)
    decode = _item_decoder.decode
    for index, raw in zip(places, raw_items, strict=True):
        try:
            jobs.append(decode(raw))
            positions.append(index)
        except msgspec.ValidationError as error:
            errors.add(index, field_of(error), _message_of(error))
        except RecursionError as error:
            raise InvalidDocument(f"JSON nested more than {MAX_NESTING} levels deep") from error
    return jobs, positions, errors


def _apply_semantic_rules(
    jobs: list[JobInfo], positions: list[int] | None, errors: ItemErrors, now_ms: float
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
            errors.add(index, problem[0], problem[1])
    return Decoded(valid, errors, valid_positions)
