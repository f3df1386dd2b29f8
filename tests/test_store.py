"""The store protocol, run unchanged against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections import Counter

import hypothesis
import hypothesis.strategies as st
import pytest

from exporter.model.counts import Buckets, CountKind
from exporter.model.jobinfo import MAX_ATTEMPT, JobInfo
from exporter.model.tracked import PENDING, TrackedQuery
from exporter.store import Prune, StaleIndex, StoreError, open_store
from exporter.tracking.ingest import Ingestor, TrackingRules, write_plan
from exporter.tracking.plan import LabelGuard, plan_changes

_sources = itertools.count()

NOW = 1_700_000_000_000.0


def info(job_id: str, finished: bool = False) -> JobInfo:
    return JobInfo(job_id, "send_email", NOW, "TASK", finished)


def plan_for(index, *jobs: JobInfo, store=None):
    """A scrape's plan; with `store`, jobs it keeps as finished are known as such."""
    finished: dict[str, int] = {}
    if store is not None:
        finished = store.finished_among(index.source, {job.id for job in jobs}, index.finished)
    return plan_changes(
        index,
        list(jobs),
        NOW,
        complete_list=True,
        guard=LabelGuard(),
        buckets=Buckets(),
        finished=finished,
    )


@pytest.fixture
def store(store_url: str):
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_counts_and_jobs_survive_reopening(store_url: str):
    store = open_store(store_url)
    index = store.load_index("app")
    store.apply(index, plan_for(index, info("a"), info("b", finished=True)))
    store.close()

    reopened = open_store(store_url)
    index = reopened.load_index("app")
    assert set(index.open) == {"a"} and index.finished == 1
    assert reopened.finished_among("app", {"a", "b", "c"}, index.finished) == {"b": 1}
    assert index.series == {("TASK", "send_email")}
    counts = reopened.snapshot().series[("app", "TASK", "send_email")]
    assert counts[(CountKind.STARTED, "")] == 2 and counts[(CountKind.FINISHED, "completed")] == 1
    reopened.close()


def test_the_highest_attempt_a_push_may_give_is_stored(store):
    index = store.load_index("app")
    highest = JobInfo("a", "send_email", NOW, "TASK", False, attempt=MAX_ATTEMPT)
    store.apply(index, plan_for(index, highest))
    assert [row.attempt for row in store.tracked_jobs("app")] == [MAX_ATTEMPT]


def test_a_stale_index_writes_nothing(store_url: str):
    """Two writers planned against the same state: the second must replan, not double count."""
    first, second = open_store(store_url), open_store(store_url)
    index_one = first.load_index("app")
    index_two = second.load_index("app")
    first.apply(index_one, plan_for(index_one, info("a")))
    with pytest.raises(StaleIndex):
        second.apply(index_two, plan_for(index_two, info("a")))
    assert index_two.open == {}  # untouched, since nothing was written
    snapshot = second.snapshot()  # sees the first writer's commit
    assert snapshot.series[("app", "TASK", "send_email")][(CountKind.STARTED, "")] == 1
    first.close()
    second.close()


@pytest.mark.parametrize("rows", [2, 800], ids=["few", "copied"])
def test_a_failed_write_leaves_store_and_index_unchanged(store, rows: int):
    index = store.load_index("app")
    plan = plan_for(index, *(info(f"job-{n}") for n in range(rows)))
    plan.running_inserts.append(plan.running_inserts[0])  # a duplicate key fails midway
    with pytest.raises(StoreError):
        store.apply(index, plan)
    assert index.open == {} and index.generation == 0
    assert store.snapshot().series == {}
    assert store.load_index("app").open == {}


@pytest.mark.parametrize("pairs", [3, 800], ids=["few", "copied"])
def test_every_new_row_is_stored_as_planned(store, pairs: int):
    """Jobs labelled with their own type and name go in as short rows and folded ones as
    whole rows; each comes back exactly as `Plan.job_rows` spells it."""
    index = store.load_index("app")
    jobs = [
        JobInfo(
            f"job-{n}-{finished}",
            f"name-{n}",
            NOW - n,
            f"TYPE{n % 2}",
            finished,
            NOW + n if finished and n % 3 else None,
            "failed" if n % 5 == 0 else None,
        )
        for n in range(pairs)
        for finished in (False, True)
    ]
    plan = plan_changes(
        index, jobs, NOW, complete_list=True, guard=LabelGuard(2), buckets=Buckets()
    )
    assert plan.running_inserts and plan.finished_inserts and plan.inserts  # all three kinds
    store.apply(index, plan)
    stored = {row.id: tuple(row) for row in store.tracked_jobs("app")}
    assert stored == {row[1]: row for row in plan.job_rows()}
    assert len(stored) == len(jobs)


def test_many_inserts_and_their_counts(store):
    index = store.load_index("app")
    store.apply(index, plan_for(index, *(info(f"job-{n}", n % 2 == 0) for n in range(2000))))
    reloaded = store.load_index("app")
    assert len(reloaded.open) == 1000 and reloaded.finished == 1000
    asked = {f"job-{n}" for n in range(0, 2000, 7)}  # fewer than kept: asked by id
    found = store.finished_among("app", asked, reloaded.finished)
    assert found == {i: 1 for i in asked if int(i[4:]) % 2 == 0}
    everyone = {f"job-{n}" for n in range(2500)}  # more than kept: every finished one read
    found = store.finished_among("app", everyone, reloaded.finished)
    assert found == {f"job-{n}": 1 for n in range(0, 2000, 2)}
    counts = store.snapshot().series[("app", "TASK", "send_email")]
    assert (
        counts[(CountKind.STARTED, "")] == 2000
        and counts[(CountKind.FINISHED, "completed")] == 1000
    )
    assert store.snapshot().running[("app", "TASK", "send_email")].count == 1000


def test_prune_spares_listed_and_recent_jobs(store):
    index = store.load_index("app")
    store.apply(index, plan_for(index, info("old"), info("listed"), info("running")))
    index = store.load_index("app")
    write_plan(
        store, index, plan_for(index, info("old", True), info("listed", True), info("running"))
    )
    prune = Prune(before_ms=NOW + 1, still_listed={"listed", "running"})
    done = store.prune_batch(index, prune, None, 10)
    assert done.ids == ["old"] and done.after is None
    assert store.snapshot().tracked == {"app": 2}
    index = store.load_index("app")
    found = store.finished_among("app", {"old", "listed"}, index.finished)
    assert index.finished == 1 and found == {"listed": 1}
    # Nothing is counted before an earlier cutoff: nothing goes, and the source stays put.
    assert store.prune_batch(index, Prune(before_ms=NOW), None, 10).generation == index.generation


def test_health_counts_add_up(store):
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 1}))
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 2}))
    assert store.snapshot().health["app"][("scrape_errors", "timeout")] == 3


def test_snapshot_is_cached_until_something_changes(store):
    # PostgreSQL's version moves with any commit in the cluster (autovacuum's ANALYZE, other
    # tests), so a pair of reads only proves the cache when nothing moved between them.
    pairs = [(store.snapshot(), store.snapshot()) for _ in range(20)]
    quiet = [(a, b) for a, b in pairs if a.version == b.version]
    assert quiet, "the version moved between every pair of reads"
    assert all(b is a for a, b in quiet)
    first = quiet[-1][1]
    store.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 1}))
    assert store.snapshot() is not first


def test_another_writers_change_refreshes_the_snapshot(store_url: str):
    reader, writer = open_store(store_url), open_store(store_url)
    before = reader.snapshot()
    writer.add_counts("app", Counter({("", "", "scrape_errors", "timeout"): 1}))
    after = reader.snapshot()
    assert after is not before
    assert after.health["app"][("scrape_errors", "timeout")] == 1
    reader.close()
    writer.close()


def test_ping_answers_until_closed(store_url: str):
    store = open_store(store_url)
    store.ping()
    store.close()
    with pytest.raises(StoreError):
        store.ping()


def _store_at_version_3(url: str) -> None:
    """A store as release 0.1.0 left it: schema 3, one running job in the old row shape."""
    old_row = ("app", "a", "TASK", "send_email", "TASK", "send_email", NOW, *[None] * 3, 0, NOW)
    if url.startswith("sqlite:///"):
        import sqlite3

        from exporter.store.sqlite import MIGRATIONS, _statements, sqlite_path

        with sqlite3.connect(sqlite_path(url)) as db:
            for script in MIGRATIONS[:3]:
                for statement in _statements(script):
                    db.execute(statement)
            db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", old_row)
            db.execute("INSERT INTO sources VALUES ('app', 1)")
            db.execute("PRAGMA user_version = 3")
        return
    import psycopg

    from exporter.store.postgres import MIGRATIONS

    with psycopg.connect(url, autocommit=False) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:3]:
            db.execute(script)
        db.execute(
            "INSERT INTO jobs VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", old_row
        )
        db.execute("INSERT INTO sources VALUES ('app', 1)")
        db.execute("INSERT INTO schema_version VALUES (3)")


def test_a_store_from_schema_3_upgrades_with_its_jobs(store_url: str):
    _store_at_version_3(store_url)
    store = open_store(store_url)
    try:
        [row] = store.tracked_jobs("app")
        assert (row.id, row.outcome, row.start_ms) == ("a", None, NOW)
        index = store.load_index("app")
        assert set(index.open) == {"a"} and index.generation == 1
        store.apply(index, plan_for(index, info("a", finished=True)))
        [row] = store.tracked_jobs("app")
        assert row.outcome == "completed"
    finally:
        store.close()


_job_states = st.lists(
    st.tuples(
        st.integers(0, 11),  # id: a few, so the same jobs come back, twice in one list too
        st.sampled_from(["a", "b", "c", "d"]),  # name: more than the cap of 3 admits
        st.sampled_from([None, "completed", "failed"]),  # running, or finished how
        st.integers(0, 5),  # start, in seconds
    ),
    max_size=10,
)


@hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.function_scoped_fixture,
    ],
)
@hypothesis.given(scrapes=st.lists(_job_states, min_size=1, max_size=5))
def test_running_stats_agree_with_the_running_rows(store_url: str, scrapes) -> None:
    """The snapshot derives running counts from started minus finished counts; whatever
    the scrapes (duplicates, vanishing, finishing, folding), they match the rows."""
    store = open_store(store_url)
    try:
        ingestor = Ingestor(store, TrackingRules(guard=LabelGuard(3)))
        source = f"s{next(_sources)}"  # hypothesis reuses the store: a fresh source each time
        for n, listed in enumerate(scrapes):
            jobs = [
                JobInfo(
                    f"j{i}", name, NOW + start * 1000, "TASK", outcome is not None, status=outcome
                )
                for i, name, outcome, start in listed
            ]
            ingestor.ingest(source, jobs, NOW + n * 1000, complete_list=True)
            rows: dict[tuple[str, str], list[float]] = {}
            for row in store.tracked_jobs(source):
                if row.outcome is None:
                    rows.setdefault((row.label_type, row.label_name), []).append(row.start_ms)
            running = {
                key[1:]: (stats.count, stats.oldest_start_ms)
                for key, stats in store.snapshot().running.items()
                if key[0] == source
            }
            assert running == {key: (len(s), min(s)) for key, s in rows.items()}
    finally:
        store.close()


def test_runs_and_tracked_pages_read_alike_on_both_stores(store):
    """The extension columns round-trip, and GET /api/v1/tracked's query (filters, text,
    keyset order) runs the same SQL on SQLite and PostgreSQL."""
    ingestor = Ingestor(store)
    items = [
        JobInfo("a_1", "Mail%", NOW, "TASK", False, status="pending", enqueue_timestamp=NOW - 5),
        JobInfo("b", "resize", NOW + 1, "TASK", True, status="failed", error="boom"),
        JobInfo("c", "resize", NOW + 2, "TASK", False, attempt=2),
    ]
    ingestor.ingest("app", items, NOW, complete_list=False)
    by_id = {row.id: row for row in store.tracked_page(TrackedQuery(limit=10))}
    assert [row.id for row in store.tracked_page(TrackedQuery(limit=10))] == ["c", "b", "a_1"]
    assert (by_id["a_1"].waiting, by_id["a_1"].enqueue_ms) == (PENDING, NOW - 5)
    assert (by_id["b"].outcome, by_id["b"].error) == ("failed", "boom")
    assert by_id["c"].attempt == 2
    pages = [
        store.tracked_page(TrackedQuery(limit=1, newest_first=False, after=after))
        for after in (None, (NOW, "app", "a_1"), (NOW + 1, "app", "b"))
    ]
    assert [[row.id for row in page] for page in pages] == [["a_1"], ["b"], ["c"]]
    assert [r.id for r in store.tracked_page(TrackedQuery(text="MAIL%"))] == ["a_1"]
    assert [r.id for r in store.tracked_page(TrackedQuery(text="a_"))] == ["a_1"]
    assert store.tracked_page(TrackedQuery(text="b_")) == []
    assert [r.id for r in store.tracked_page(TrackedQuery(status="pending"))] == ["a_1"]
    assert [r.id for r in store.tracked_page(TrackedQuery(status="running"))] == ["c"]
    assert [r.id for r in store.tracked_page(TrackedQuery(status="failed", name="resize"))] == ["b"]
    later = NOW + 3_600_000  # pushed an hour after its start: lost-after runs from here
    ingestor.ingest(
        "late", [JobInfo("l", "resize", NOW, "TASK", False)], later, complete_list=False
    )
    [late] = store.tracked_jobs("late")
    assert (late.reported_ms, store.load_index("late").open["l"].reported_ms) == (later, later)
    reloaded = store.load_index("app")
    assert {i: (j.waiting, j.attempt) for i, j in reloaded.open.items()} == {
        "a_1": (PENDING, 1),
        "c": (0, 2),
    }
    assert reloaded.open["a_1"].start_ms == NOW - 5  # its queue wait runs from here
