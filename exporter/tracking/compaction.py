"""Copy what an index keeps of its jobs into fresh objects once a large decode is over.

CPython's small-object allocator gives a 1 MiB arena back only when every object in it is
freed. Decoding 100,000 jobs allocates each job's id, start time and running record among
its decoded item, name, type and row; the items go once the scrape is written, the ids and
the rest stay, a few in every pool, and keep whole arenas from going back. Copies made while
the scrape's items are still held pack into other arenas, and the originals' arenas are
freed whole with the items (docs/benchmarks.md has the resident memory before and after).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import attrgetter
from typing import cast

from exporter.model.tracked import OpenJob, SourceIndex
from exporter.tracking.listing import ListingMemo

# Decodes or loads of fewer jobs leave too little behind to be worth copying.
COMPACT_FROM_JOBS = 10_000


def compact(index: SourceIndex, memo: ListingMemo | None) -> None:
    """Replace the index's ids, start times and open-job records with copies, keeping their
    values, and point the memo at the same copies (they share one string per id). Every
    step is a C-level map, with no Python call per job. The caller holds the source's
    lock."""
    open_jobs = index.open
    ids = [*open_jobs, *filter(None, memo.ids)] if memo is not None else list(open_jobs)
    copies = dict(zip(ids, map(bytes.decode, map(str.encode, ids)), strict=True))  # str(): no copy
    del ids
    copy_of = copies.__getitem__
    jobs = open_jobs.values()
    index.open = dict(
        zip(
            map(copy_of, open_jobs),
            map(
                OpenJob,
                map(_series, jobs),
                map(float.__mul__, map(_start_ms, jobs), repeat(1.0)),  # keeps a -0.0
                map(_missing, jobs),
                map(_seen, jobs),
                map(_run, jobs),  # frozen, and mostly None: shared, not copied
            ),
            strict=True,
        )
    )
    if memo is not None and memo.fits(index):
        copy_or_none = cast(Callable[[str | None], str | None], copies.get)
        memo.ids = list(map(copy_or_none, memo.ids))  # an invalid item's None stays None
        memo.absent = set(map(copy_of, memo.absent))


_series = attrgetter("series")
_start_ms = attrgetter("start_ms")
_missing = attrgetter("missing")
_seen = attrgetter("seen")
_run = attrgetter("run")
