"""A scraped response as undecoded items with a fingerprint of each item's bytes.

An item byte for byte the same as one the last applied scrape listed decodes to the same job
and passes the same checks (the one rule that depends on the time, startTimestamp at most
24 h ahead, only loosens as time goes on), and its job's state is applied already: seeing it
again changes nothing. So once a source has a `ListingMemo`, a scrape decodes and plans only
the items with new bytes, and finds the running jobs it no longer lists among the jobs whose
old fingerprints vanished. On a steady source that is 1% of the items instead of all of them.

Fingerprints are 64-bit xxh3 digests, seeded afresh per process; two different items share
one with a chance of about 2^-64, so in a century of scrapes no change goes unseen.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from itertools import compress, count, filterfalse, repeat
from operator import attrgetter, ne, not_

import msgspec
import xxhash

from exporter.model.jobinfo import JobInfo
from exporter.model.tracked import SourceIndex
from exporter.tracking.decode import Decoded, decode_items, decode_jobs, split_items

_SEED = int.from_bytes(os.urandom(8), "little")
_fingerprint = xxhash.xxh3_64_intdigest


@dataclass(slots=True)
class Listing:
    """One response: its body, its items undecoded, and each item's fingerprint."""

    body: bytes | bytearray
    items: list[msgspec.Raw]
    fingerprints: array  # of unsigned 64-bit ints: 8 bytes an item, where an int takes 40

    @classmethod
    def split(cls, body: bytes | bytearray) -> Listing:
        """Raises decode.InvalidDocument if the body is not a JSON array."""
        items = split_items(body)
        return cls(body, items, array("Q", map(_fingerprint, items, repeat(_SEED))))

    def decode_all(self, now_ms: float) -> Decoded:
        """Every item, in one decoding pass over the body."""
        return decode_jobs(self.body, now_ms)

    def decode_places(self, places: list[int], now_ms: float) -> Decoded:
        items = self.items
        return decode_items([items[place] for place in places], places, now_ms)


@dataclass(slots=True)
class Changes:
    """How a listing differs from the memo: the places of its items with new bytes, and the
    jobs whose items of last time are gone (they changed, or are no longer listed)."""

    new_places: list[int]
    gone_ids: set[str]
    kept: list[str | None]  # the job id of each unchanged item, by place; None elsewhere


@dataclass(slots=True)
class ListingMemo:
    """What a source's last applied scrape listed, item by item: each item's fingerprint
    and job id (None for an invalid item, which must be decoded and counted again every
    time), and the running jobs it left out (missing at least once). It describes one index
    at one generation; any other write to the source makes it stale.

    The same bytes twice are the same id twice. For a running or a new job the tracker
    settles that only over the whole list, and such a listing leaves no memo; a finished
    job may stay listed twice, as nothing any listing says of it changes anything."""

    index: SourceIndex
    generation: int
    fingerprints: array
    ids: list[str | None]
    invalid: list[int]  # the places of invalid items
    absent: set[str] = field(default_factory=set)

    def fits(self, index: SourceIndex) -> bool:
        return self.index is index and self.generation == index.generation

    @classmethod
    def of(
        cls, index: SourceIndex, listing: Listing, decoded: Decoded, absent: set[str]
    ) -> ListingMemo:
        """The memo of a listing decoded whole, once it is applied to `index`."""
        ids: list[str | None] = list(map(_job_id, decoded.jobs))
        if decoded.positions is not None:
            ids = _spread(ids, decoded.positions, len(listing.fingerprints))
        invalid = [error.index for error in decoded.errors]
        return cls(index, index.generation, listing.fingerprints, ids, invalid, absent)

    def compare(self, listing: Listing) -> Changes:
        """Item by item while most items stay in their places (one C pass comparing the two
        lists), else by looking each fingerprint up."""
        new, old, ids = listing.fingerprints, self.fingerprints, self.ids
        differ = _differing_places(new, old)
        differ.extend(range(min(len(new), len(old)), max(len(new), len(old))))
        if self.invalid:
            differ = sorted({*differ, *(i for i in self.invalid if i < len(new))})
        if by_lookup(len(differ), len(new)):
            return self._compare_by_lookup(new)
        old_at = {old[i]: i for i in differ if i < len(old) and ids[i] is not None}
        moved_in = {new[i] for i in differ if i < len(new)}
        kept = ids[: len(new)]  # one copy: `+` would make a second for a moment
        kept.extend(repeat(None, len(new) - len(ids)))
        new_places = []
        for i in differ:
            if i < len(new):
                was = old_at.get(new[i])
                kept[i] = None if was is None else ids[was]
                if was is None:
                    new_places.append(i)
        gone = {ids[i] for fp, i in old_at.items() if fp not in moved_in}
        return Changes(new_places, gone, kept)  # type: ignore[arg-type]

    def _compare_by_lookup(self, new: array) -> Changes:
        id_of = dict(zip(self.fingerprints, self.ids, strict=True))  # invalid ones map to None
        kept = list(map(id_of.get, new))
        new_places = list(compress(count(), map(not_, kept)))  # ids are never empty
        listed = set(new)
        gone = {id_of[fp] for fp in filterfalse(listed.__contains__, id_of)}
        gone.discard(None)
        return Changes(new_places, gone, kept)

    def advance(
        self,
        index: SourceIndex,
        listing: Listing,
        new: Decoded,
        changes: Changes,
        absent: set[str],
    ) -> ListingMemo:
        """This memo, moved on to a listing of which only the new items were decoded."""
        ids = changes.kept
        for place, job in zip(new.positions or [], new.jobs, strict=True):
            ids[place] = job.id
        self.index, self.generation, self.absent = index, index.generation, absent
        self.fingerprints, self.ids = listing.fingerprints, ids
        self.invalid = [error.index for error in new.errors]
        return self


def relists_unchanged(index: SourceIndex, jobs: list[JobInfo], changes: Changes) -> bool:
    """Whether a new item names a running job whose unchanged item of last time is still
    listed too: the same id twice, whose last occurrence wins; only the whole list can say
    which that is."""
    open_jobs, gone = index.open, changes.gone_ids
    for job in jobs:
        known = open_jobs.get(job.id)
        if known is not None and not known.missing and job.id not in gone:
            return True
    return False


def mostly_new(changes: Changes, listing: Listing) -> bool:
    """Whether most items are new (a first scrape after an empty one, a source that
    started afresh): one decoding pass over the whole body then costs less, in time and in
    memory, than decoding the items one by one with all of them held undecoded."""
    return len(changes.new_places) > len(listing.fingerprints) // 2


def by_lookup(differing: int, size: int) -> bool:
    """Past an eighth of the items differing in place, items were added or removed and the
    rest shifted: looking each fingerprint up then costs less than matching by place."""
    return differing > size // 8 + 16


def _differing_places(new: array, old: array, block: int = 16) -> list[int]:
    """The places, over the shorter length, where the fingerprints differ. Blocks of
    `block` fingerprints are compared as bytes first and only differing blocks item by
    item, which beats comparing an item at a time (that makes two ints per place)."""
    size = min(len(new), len(old))
    new_bytes, old_bytes = new[:size].tobytes(), old[:size].tobytes()
    step = block * new.itemsize
    places: list[int] = []
    for start in range(0, size * new.itemsize, step):
        if new_bytes[start : start + step] != old_bytes[start : start + step]:
            first = start // new.itemsize
            last = min(first + block, size)
            places.extend(compress(range(first, last), map(ne, new[first:last], old[first:last])))
    return places


def _spread(ids: list[str | None], places: list[int], size: int) -> list[str | None]:
    spread: list[str | None] = [None] * size
    for place, job_id in zip(places, ids, strict=True):
        spread[place] = job_id
    return spread


_job_id = attrgetter("id")
