"""`python -m bench [--quick] [--write] [--only NAME]`: every benchmark beside its baseline.

Each benchmark prints its figures and ends with `ratio <name> <value> goal <goal> <ok|MISSED>`.
A missed goal is reported, not fatal; a benchmark that breaks (wrong counts, a server that
will not start) exits 1, so CI catches correctness while timings stay informative.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from pathlib import Path

from bench.harness import Result, write_table

BENCHMARKS = (
    "metrics",
    "scrape",
    "throughput",
    "api",
    "memory",
    "dashboard",
    "tracked",
    "celery",
    "scale",
)

CHANGES = """
- `/metrics` is written straight from one metrics view (`exporter/metrics/text.py`): each series'
  labels are escaped once and lines are concatenated, instead of prometheus_client building a
  Sample per line, sorting its labels and formatting each value generically (474 ms to 24 ms
  for the 2,000-pair page). Lines are joined and encoded every 4,096 and the gzip variant
  is compressed piece by piece, so a fresh page (4 MB of text for 2,000 pairs) never lies in
  memory whole as strings, text and bytes at once (17 MB to 3.5 MB). The rendered bytes,
  gzip included, are kept until the store or the exporter's health changes.
- waitress keeps pages up to 64 MiB in memory instead of spooling those over 1 MiB to a
  temporary file (about 240 to 300 requests/s under wrk on this machine), reads request
  bodies in 64 KiB pieces instead of 8 KiB, and keeps bodies up to 8 MiB in memory.
- A scrape splits the response into undecoded items and fingerprints each item's bytes
  (xxh3, 64-bit, 20-25 ms for 100,000 items). An item byte for byte the same as one the last
  applied scrape listed decodes to the same job and passes the same checks, so only items
  with new bytes are decoded and planned; the running jobs no longer listed are found among
  the jobs whose old fingerprints vanished (`exporter/tracking/listing.py`). Steady scrape: 115-165
  ms to 70-85 ms. When most items are new, the whole body is decoded in one pass instead.
  A hypothesis test checks this path against decoding every item.
- The first scrape, and any whose memo is stale, decodes and validates the whole response
  in one msgspec pass, then checks the semantic rules of a healthy batch in one loop with no
  call per job (20 ms to 7 ms for 100,000 jobs; NUL is looked for in the bytes).
- Planning is one pass with one dict lookup per job: running jobs seen are marked with the
  pass's number, which finds duplicate ids and missing jobs without a set of every id; new
  jobs are tallied per (type, name) found by two string lookups, with no tuple built and
  hashed per job (55 to 20 ms); new rows are short plain tuples built without unpacking;
  running jobs are kept outside the garbage collector. Planning 100,000 new jobs: about 200
  ms to 130.
- First 100,000-job scrape, 1,150 ms to 600-740 ms: a job labelled
  with its own type and name (every job, until the cardinality cap folds some) binds 5
  values when running and 8 when finished instead of 11, its label columns repeating the
  bound ones in SQL; rows go in 199 or 124 to a statement (999 values, the limit before
  SQLite 3.32), prepared once a connection; the writer never spills dirty pages into the
  log midway through a large write only to read them back (SQLite's insert: 450 to 370 ms
  in same-run comparisons). The retention prune gathers the listed ids only when it finds
  a job old enough to go (gathering 100,000 ids takes about 20 ms).
- Steady scrape: a steady scrape's 3,000 count changes go in key order, 166 to a multi-row
  upsert (15 ms to 9), and changed places are found by comparing fingerprints 16 at a time
  as bytes first (8 ms to 4).
- The store: schema step 4 drops a column that was never read and an index on finished jobs
  that every insert and finish paid for; the write-ahead log is checkpointed by a thread of
  its own at most once a second, so a commit no longer pays now and then for a 20 ms
  checkpoint of pages it did not write (a commit of 1,000 finishes took 4 ms, or 24 ms when
  it drew the checkpoint).
- The snapshot behind `/metrics` takes running counts as started minus finished from the
  counts it has already read, and each series' oldest running start with one index seek
  (7 ms for 2,000 series over 100,000 jobs, where grouping every running job took 40-67 ms).
  Its series share one (family, label) key and one float per distinct count (7 MB to 1.5).
- Resident memory, +102 MB to about +57 (peak; median 86 to 36):
  - glibc's allocator is given a fixed mmap threshold (8 MiB) and two arenas at start, and
    `malloc_trim` runs after each scheduled scrape (about 1 ms): free pages in the middle
    of a heap go back instead of creeping (+61 to +71 MB over 20 scrapes before). Without
    the fixed threshold and arenas, scrapes of the 100,000-job source (a 14 MB body) took
    resident memory from +60 MB to +240 MB in 15 s; trimming took it from +61 to +45 MB
    (median), and 20 scrapes later from +71 to +48. A threshold of 256 KiB instead of
    8 MiB cut /metrics throughput under wrk from 130-200 to 110 requests/s.
  - Right after a scheduled scrape that decoded 10,000 items or more, the index's ids,
    start times and running records are copied while that scrape's items are still held,
    then the items go (`exporter/tracking/compaction.py`, about 80 ms, off the scrape's path): the
    survivors no longer keep the decoded items' memory arenas alive (about 25 MB of them;
    +81 MB to +59, median readings).
  - The index keeps only a count of finished jobs; their ids stay in the store, asked only
    about the few jobs a scrape names that are not running. Memory no longer grows with
    the finished jobs kept for the retention period.
  - The dashboard's history keeps, per slot, the gauges and each total's growth in 2 bytes
    (the rare larger value aside) and the duration sum's growth in 4: 2,000 job functions'
    hour in 4.4 MB instead of 15.6.
  - A body of declared length is read into a buffer made whole at once (mapped straight
    away) instead of grown through the heap.
- Method: the batched pushes and the raw store, and each scrape and its orjson baseline, take
  turns, so both sides see this shared machine in the same state (its speed drifts by tens of
  percent within a minute); memory is the peak of readings taken every 50 ms over several
  scrapes while 1% of the jobs finish between them. It moves by 2-3 MB from run to run: a
  steady scrape holds the 14 MB body and its 100,000 undecoded items (6.4 MB) for a moment
  above the 35-38 MB the exporter keeps.

Close to the line (full runs of this session, same machine):

- First scrape: 6.1x, 6.9x, 7.1x, 7.3x (the table above), 7.5x and 8.06x. Ours took
  550-740 ms; orjson's own time right after it moved between 74 and 112 ms from run to
  run, and most of the spread is there. Most of ours is SQLite inserting 100,000 rows
  (about 300-370 ms).
- Steady scrape: 1.08x to 1.24x before the last two changes, 1.08x to 1.14x after them,
  with orjson at 64-67 ms in this session's later runs (90-118 ms in its first).
- Memory: 55-59 MB across runs; the median reading is 35-37 MB.
- Celery (`bench/celery.py`): the integration queues each event on the pool process's
  reporter and never waits for the exporter during a task (a retry's `retrying` is the only
  event flushed, for 1 s at most); not flushing after each task is what keeps trivial tasks
  near the uninstrumented rate. The reporter also leaves out a start whose end is queued
  behind it (a short task is one event, not two). On a 2-core machine the worker, its
  producer and the exporter share the cores, and one turn of the same mode moves between
  about 300 and 870 tasks/s: this session's runs read 0.78x, 0.82x, 1.09x and 1.41x, so
  the table's figure is one draw of a wide spread. With `-E`, 0.57-0.65x every time.

Issue 18 (per-run counting for every source):

- A plain first run (what nearly every job is) keeps the planner's short path; anything the
  extension fields say (a wait, a retry, a later attempt, an error) goes to
  `tracking/runs.py`, which writes whole rows. An open job keeps attempt, wait and last
  report in one optional `RunState`, so 100,000 plain running jobs carry one empty field:
  the memory benchmark's median reading went from 34 to 38-39 MB with three fields, and
  back to 36-37 MB with one. The rest of the peak's 2-4 MB is the decoded items' four new
  optional fields, held until the scrape is written.
- A pushed running job first reported more than a minute after its start gets a short row
  of its own with its report time (the batched-push benchmark's jobs all do): without it
  that benchmark fell to 0.43x; with it, 0.61-0.62x beside 0.55-0.61x before issue 18.
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (CI)")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--only", choices=BENCHMARKS, action="append")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    results: list[Result] = []
    broken = []
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            for result in module.run(args.quick):
                result.print()
                results.append(result)
        except Exception:
            traceback.print_exc()
            broken.append(name)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"{sum(r.ok for r in results)} of {len(results)} goals met", flush=True)
    if args.write:
        path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        write_table(results, path, "quick" if args.quick else "full", CHANGES)
        print(f"wrote {path.name}")
    if broken:
        print(f"broken benchmarks: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
