"""The one path from observed jobs to the store, for scrapes and pushes alike.

It keeps each source's state in memory (its index, loaded from the store on first use, and
the memo of its last listing), plans the changes with the tracker, writes them in one
transaction, and replans once more if another writer moved the source on in between. One
lock per source keeps a scrape and a push of the same source from planning against the same
index at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.config import DAY_MS, DEFAULT_MAX_PUSH_SOURCES, DEFAULT_RETENTION_DAYS
from exporter.model.counts import Buckets, CountKind, PushRefusal
from exporter.model.exemplars import ExemplarBoard
from exporter.model.jobinfo import JobInfo
from exporter.model.tracked import Plan, SourceIndex
from exporter.store import Prune, StaleIndex, Store, StoreError
from exporter.store.base import PruneCursor
from exporter.tracking.compaction import COMPACT_FROM_JOBS, compact
from exporter.tracking.decode import Decoded
from exporter.tracking.listing import Changes, Listing, ListingMemo, mostly_new, relists_unchanged
from exporter.tracking.plan import LabelGuard, plan_changes, plan_timeouts

WRITE_ATTEMPTS = 3
# Jobs one prune transaction deletes at most: short enough that a scrape or push waiting for
# the source's lock or the store's writer waits milliseconds (docs/benchmarks.md).
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class TrackingRules:
    """How observed jobs become counts: cardinality cap, buckets, retention."""

    guard: LabelGuard = field(default_factory=LabelGuard)
    buckets: Buckets = field(default_factory=Buckets)
    retention_ms: float = DEFAULT_RETENTION_DAYS * DAY_MS


@dataclass(slots=True, eq=False)
class SourceState:
    """What the ingestor keeps of one source between writes; `lock` guards the rest."""

    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: SourceIndex | None = None  # None until loaded, or after another writer moved on
    memo: ListingMemo | None = None  # the last listing applied, while it fits the index
    listed: _Listed | None = None  # the ids the last complete list named, for the prune
    lost_after_ms: float | None = None  # asked for by the source's latest push
    # The pass of a large decode left to compact, held until then so the copies are made
    # while its items still fill their memory.
    compact_due: _ListingPass | None = None


class Ingestor:
    def __init__(
        self,
        store: Store,
        rules: TrackingRules | None = None,
        *,
        max_push_sources: int = DEFAULT_MAX_PUSH_SOURCES,
        exemplars: ExemplarBoard | None = None,
    ) -> None:
        self.store = store
        self.rules = rules or TrackingRules()
        # The latest job per bucket, in memory (docs/monitoring.md, "Exemplars").
        if exemplars is None:
            exemplars = ExemplarBoard(self.rules.buckets.labels)
        self.exemplars = exemplars
        self.max_push_sources = max_push_sources
        self._sources: dict[str, SourceState] = {}
        self._sources_guard = threading.Lock()
        self._pushed: set[str] | None = None  # push sources known; read from the store once
        self._refused: Counter[str] = Counter()  # pushes refused, by reason
        self._push_lock = threading.Lock()

    def admit_push_source(self, source: str, reserved: Collection[str]) -> bool:
        """Whether a push may name `source`: one known already, or a new one while fewer
        than `max_push_sources` are (every new name would otherwise start series and state
        of its own). The known ones are what the store holds of sources not `reserved`
        (scraped ones, the job API's), read at the first push, and every one admitted since.
        A refusal is counted (`refused_pushes`). Raises StoreError when the store cannot
        say which sources it holds."""
        with self._push_lock:
            if self._pushed is None:
                self._pushed = set(_stored_sources(self.store)) - set(reserved)
            if source in self._pushed:
                return True
            if len(self._pushed) < self.max_push_sources:
                self._pushed.add(source)
                return True
            self._refused[PushRefusal.SOURCES] += 1
            return False

    def refused_pushes(self) -> dict[str, int]:
        """Pushes refused so far in this process, by reason."""
        with self._push_lock:
            return dict(self._refused)

    def ingest(
        self,
        source: str,
        jobs: Sequence[JobInfo],
        now_ms: float,
        *,
        complete_list: bool,
        invalid_by_field: Mapping[str, int] | None = None,
        lost_after_ms: float | None = None,
    ) -> Plan:
        """Apply observed jobs (a scrape's complete list, or a push) in one transaction.
        `lost_after_ms` is what a push asks for its source's open jobs (see expire_open).

        Returns the plan that was written. Raises StoreError when nothing could be written;
        then neither the store nor the index changed.
        """
        invalid = _invalid_counts(invalid_by_field or {})
        state = self._state_of(source)
        if lost_after_ms is not None:
            state.lost_after_ms = lost_after_ms

        def planner(index: SourceIndex) -> Plan:
            plan = plan_changes(
                index,
                jobs,
                now_ms,
                complete_list=complete_list,
                guard=self.rules.guard,
                buckets=self.rules.buckets,
                finished=self._finished_among(index, jobs),
            )
            plan.counts.update(invalid)
            return plan

        with state.lock:
            plan = self._write(state, planner)
            if complete_list:  # what the prune must keep; a listing's memo says it itself
                ids = {job.id for job in jobs}
                state.listed = _Listed(self._index_of(state).generation, ids, None)
            return plan

    def ingest_listing(self, source: str, listing: Listing, now_ms: float) -> Decoded:
        """Apply a scrape's complete list in one transaction, like `ingest`. While the memo
        of the last scrape applied still fits the index, only the items whose bytes are new
        are decoded and planned (listing.py). Returns what was decoded: every valid item,
        or only the new ones. Raises StoreError when nothing could be written."""
        state = self._state_of(source)
        with state.lock:
            state.compact_due = None  # not compacted since: let it be
            memo, state.memo = state.memo, None  # put back only once this write stands
            attempt = _ListingPass(listing, now_ms, memo)

            def planner(index: SourceIndex) -> Plan:
                decoded, unlisted = attempt.decode_for(index)
                plan = plan_changes(
                    index,
                    decoded.jobs,
                    now_ms,
                    complete_list=True,
                    guard=self.rules.guard,
                    buckets=self.rules.buckets,
                    unlisted=unlisted,
                    finished=self._finished_among(index, decoded.jobs),
                )
                plan.counts.update(_invalid_counts(decoded.invalid_by_field()))
                return plan

            plan = self._write(state, planner)
            if not plan.deduplicated:  # see ListingMemo on jobs listed twice
                state.memo = attempt.memo_after(self._index_of(state), plan)
            if len(attempt.decoded.jobs) >= COMPACT_FROM_JOBS:
                state.compact_due = attempt
            return attempt.decoded

    def compact_due(self) -> list[str]:
        """Compact the indexes that a large decode left among its items (compaction.py),
        then let the items go. Housekeeping for right after a scrape, off its own path (its
        cost is in docs/benchmarks.md). Returns the sources compacted."""
        done = []
        with self._sources_guard:
            due = [state for state in self._sources.values() if state.compact_due is not None]
        for state in due:
            with state.lock:
                held, state.compact_due = state.compact_due, None
                if held is not None and state.index is not None:
                    compact(state.index, state.memo)
                    done.append(state.name)
                del held  # only now may the items go: the copies are made
        return done

    def expire_open(self, source: str, lost_after_ms: float, now_ms: float) -> Plan:
        """A pushed source's open jobs not reported for `lost_after_ms` are gone: running
        ones count as lost (plan.py's plan_timeouts)."""
        state = self._state_of(source)
        with state.lock:
            return self._write(state, lambda index: plan_timeouts(index, lost_after_ms, now_ms))

    def prune(self, source: str, now_ms: float, *, listed: bool, batch: int = PRUNE_BATCH) -> int:
        """Delete the source's finished jobs counted longer ago than the retention period,
        `batch` at a time, each batch its own transaction under the source's lock, so
        scrapes and pushes go on in between (the retention timer's work, off their path).
        A scraped (`listed`) source keeps the jobs its last listing still names: pruned,
        they would come back as new jobs and be counted twice. Without a listing that fits
        its index (none yet in this process, or another writer's since), nothing is pruned
        until a scrape leaves one. Returns how many jobs went."""
        state = self._state_of(source)
        prune = Prune(before_ms=now_ms - self.rules.retention_ms)
        after: PruneCursor | None = None
        pruned = stale = 0
        while True:
            with state.lock:
                index = self._index_of(state)
                memo = state.memo
                fits = memo is not None and memo.fits(index)
                if listed:
                    still_listed = _still_listed(state, index)
                    if still_listed is None:
                        return pruned
                    prune = Prune(prune.before_ms, still_listed)
                try:
                    done = self.store.prune_batch(index, prune, after, batch)
                except StaleIndex:
                    state.index = None  # another writer moved on: reload, go on from here
                    stale += 1
                    if stale >= WRITE_ATTEMPTS:
                        message = f"source {source!r} kept changing under the prune"
                        raise StoreError(message) from None
                    continue
                stale = 0
                index.forget(done.ids)
                # Neither the memo nor the list names a pruned job: both still describe
                # the index once it has moved on.
                if memo is not None and fits:
                    memo.generation = done.generation
                if state.listed is not None and state.listed.generation == index.generation:
                    state.listed.generation = done.generation
                index.generation = done.generation
            pruned += len(done.ids)
            if done.after is None:
                return pruned
            after = done.after

    def forget(self, source: str) -> None:
        """Drop what this process keeps of `source` (its index and last listing), so that
        the next write plans against the store's state: another replica may have written
        the source since."""
        state = self._state_of(source)
        with state.lock:
            state.index = None
            state.memo = None
            state.compact_due = None

    def lost_after_asked(self, source: str) -> float | None:
        """The lost-after time (ms) the source's latest push asked for, if any."""
        return self._state_of(source).lost_after_ms

    def push_sources(self) -> list[str]:
        """The sources this process has ingested or asked about, for the timeout sweep."""
        with self._sources_guard:
            return sorted(self._sources)

    def _write(self, state: SourceState, planner: Callable[[SourceIndex], Plan]) -> Plan:
        """Plan against the index and write; replan when another writer moved the source
        on. The caller holds the source's lock."""
        for _ in range(WRITE_ATTEMPTS):
            index = self._index_of(state)
            plan = planner(index)
            if plan.empty:
                return plan
            try:
                write_plan(self.store, index, plan)
            except StaleIndex:
                state.index = None  # another writer moved on: reload, plan again
                continue
            # Only once committed: an exemplar must name a job whose counts are stored.
            self.exemplars.record(state.name, plan.exemplars)
            return plan
        raise StoreError(f"source {state.name!r} kept changing under this write")

    def _finished_among(self, index: SourceIndex, jobs: Sequence[JobInfo]) -> Mapping[str, int]:
        """Of the jobs named that are not open, those the store keeps as finished (with
        their last attempt): asked only when it keeps any, so a first scrape into a fresh
        store asks nothing, and a steady scrape only about the few new items not open."""
        if not index.finished:
            return {}
        open_jobs = index.open
        return self.store.finished_among(
            index.source, {job.id for job in jobs if job.id not in open_jobs}, index.finished
        )

    def _index_of(self, state: SourceState) -> SourceIndex:
        """The source's index, loaded on first use. The caller holds the source's lock."""
        index = state.index
        if index is None:
            index = state.index = self.store.load_index(state.name)
        return index

    def _state_of(self, source: str) -> SourceState:
        with self._sources_guard:
            state = self._sources.get(source)
            if state is None:
                state = self._sources[source] = SourceState(source)
            return state


def write_plan(store: Store, index: SourceIndex, plan: Plan) -> None:
    """Write `plan` and bring `index` up to date with it: the store only writes. When the
    write raises, the index is left as it was."""
    index.apply(plan, store.apply(index, plan))


def _stored_sources(store: Store) -> set[str]:
    snapshot = store.snapshot()
    sources = {source for source, _, _ in snapshot.series}
    return sources | snapshot.tracked.keys() | snapshot.health.keys()


def _invalid_counts(invalid_by_field: Mapping[str, int]) -> Counter:
    return Counter({("", "", CountKind.INVALID_JOBS, f): n for f, n in invalid_by_field.items()})


@dataclass(slots=True)
class _Listed:
    """The job ids a source's last complete list named, as of `generation`; for a listing,
    made once from its memo's ids (`made_from`) when the prune first asks, since the
    prune asks about every job it would delete, batch after batch."""

    generation: int
    ids: set[str]
    made_from: list[str | None] | None


def _still_listed(state: SourceState, index: SourceIndex) -> Container[str] | None:
    """The ids the source's last complete list named, if they describe `index`: from the
    memo of its last listing, or from the last complete list ingested whole."""
    memo = state.memo
    if memo is not None and memo.fits(index):
        if state.listed is None or state.listed.made_from is not memo.ids:
            ids = set(filter(None, memo.ids))
            state.listed = _Listed(index.generation, ids, memo.ids)
        return state.listed.ids
    listed = state.listed
    if listed is not None and listed.made_from is None and listed.generation == index.generation:
        return listed.ids
    return None


class _ListingPass:
    """One scrape's way through `Ingestor.ingest_listing`: what was decoded for the index
    last planned against, and whether only the new items were (then `changes` is set)."""

    def __init__(self, listing: Listing, now_ms: float, memo: ListingMemo | None) -> None:
        self.listing = listing
        self.now_ms = now_ms
        self.memo = memo
        self.changes: Changes | None = None
        self.decoded = Decoded([])
        self._all: Decoded | None = None

    def decode_for(self, index: SourceIndex) -> tuple[Decoded, set[str] | None]:
        """The jobs to plan and, when they are only the new items, the jobs that may have
        gone unlisted."""
        memo = self.memo
        if memo is not None and memo.fits(index):
            changes = memo.compare(self.listing)
            if mostly_new(changes, self.listing):
                return self._decode_all()
            decoded = self.listing.decode_places(changes.new_places, self.now_ms)
            if not relists_unchanged(index, decoded.jobs, changes):
                self.changes, self.decoded = changes, decoded
                return decoded, changes.gone_ids | memo.absent
        return self._decode_all()

    def _decode_all(self) -> tuple[Decoded, None]:
        if self._all is None:
            self.listing.items = []  # fingerprinted already: free them before decoding all
            self._all = self.listing.decode_all(self.now_ms)
        self.changes, self.decoded = None, self._all
        return self._all, None

    def memo_after(self, index: SourceIndex, plan: Plan) -> ListingMemo:
        """The memo once `plan` stands and `index` shows it."""
        absent = {row.id for row in plan.missing if row.missing}
        if self.changes is not None and self.memo is not None:
            return self.memo.advance(index, self.listing, self.decoded, self.changes, absent)
        return ListingMemo.of(index, self.listing, self.decoded, absent)
