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

BENCHMARKS = ("metrics", "scrape", "throughput", "api", "memory", "dashboard")

CHANGES = """
- `/metrics` is written straight from one metrics view (`exporter/render.py`): each series'
  labels are escaped once and lines are concatenated, instead of prometheus_client building a
  Sample per line, sorting its labels and formatting each value generically (474 ms to 24 ms
  for the 2,000-pair page). The rendered bytes, gzip included, are kept until the store or
  the exporter's health changes.
- waitress keeps pages up to 64 MiB in memory instead of spooling those over 1 MiB to a
  temporary file (about 240 to 300 requests/s under wrk on this machine), reads request
  bodies in 64 KiB pieces instead of 8 KiB, and keeps bodies up to 8 MiB in memory.
- A scrape splits the response into undecoded items and fingerprints each item's bytes
  (xxh3, 64-bit, 20-25 ms for 100,000 items). An item byte for byte the same as one the last
  applied scrape listed decodes to the same job and passes the same checks, so only items
  with new bytes are decoded and planned; the running jobs no longer listed are found among
  the jobs whose old fingerprints vanished (`exporter/listing.py`). Steady scrape: 115-165
  ms to 70-85 ms. A hypothesis test checks this path against decoding every item.
- The first scrape, and any whose memo is stale, decodes and validates the whole response
  in one msgspec pass, then checks the semantic rules of a healthy batch in one loop with no
  call per job (20 ms to 7 ms for 100,000 jobs; NUL is looked for in the bytes).
- Planning is one pass with one dict lookup per job: running jobs seen are marked with the
  pass's number, which finds duplicate ids and missing jobs without a set of every id (the
  separate deduplication pass took 10-17 ms); counts are summed per series and added once;
  new rows are plain tuples; the index's new entries are built while planning and added in
  one update (40 ms to 15 ms after a first scrape); running jobs are kept outside the
  garbage collector.
- The store: schema step 4 drops a column that was never read and an index on finished jobs
  that every insert and finish paid for; the write-ahead log is checkpointed by a thread of
  its own at most once a second, so a commit no longer pays now and then for a 20 ms
  checkpoint of pages it did not write.
- The snapshot behind `/metrics` takes running counts as started minus finished from the
  counts it has already read, and each series' oldest running start with one index seek
  (7 ms for 2,000 series over 100,000 jobs, where grouping every running job took 40-67 ms).
- Resident memory: glibc's allocator is given a fixed mmap threshold (8 MiB) and two arenas
  at start. Before, a 100,000-job exporter crept from +60 MB to +240 MB within 15 s of
  scrapes, as every scrape's large buffers landed in heaps that were never given back; now
  it stays flat. (A 256 KiB threshold was tried first: as flat, but every /metrics response
  then mapped and faulted in a fresh buffer, 110 requests/s under wrk instead of 130-200.)
- Method: the batched pushes and the raw store, and each scrape and its orjson baseline, take
  turns, so both sides see this shared machine in the same state (its speed drifts by tens of
  percent within a minute); memory is the peak of readings taken every 50 ms over several
  scrapes while 1% of the jobs finish between them.

Still missed, and why (profiled with py-spy, per stage, on this machine):

- First 100,000-job scrape: inserting 100,000 rows (11 columns, primary key, index of
  running jobs) takes 500-700 ms at 5-6 us a row, most of the time; a 32 MB page cache and
  pausing the garbage collector while planning measured no difference, and SQLite's own
  json_each parsing the rows was slower (830-1,100 ms). Splitting and fingerprinting for
  the next scrape's sake adds 25-30 ms. Planning 100,000 new jobs takes 170-220 ms.
- Batched pushes: between 0.45 and 0.55 from run to run. Of the server's time per 500-job
  request, the same SQLite inserts as the baseline are about 45%, waitress parsing requests
  on its main thread about 30%, Flask, decoding and planning the rest.
- Memory: after loading, Python objects hold about 39 MB: the dashboard's history rings 16 MB
  (2,000 job functions x 122 samples x 8 totals), the job ids 8 MB, the rest of the index 6
  MB, the cached /metrics page 4 MB, the snapshot 3.5 MB. A steady scrape now adds about
  24 MB for a moment (the body 15, its undecoded items 6.4), where decoding every item added
  30. What is left is fragmentation: the first scrape's ids and start times survive among
  30 MB of freed decoded items, so their memory pools are never given back. Copying the
  survivors measured 13 MB less, and malloc_trim 10 MB more, in a trial outside the code.
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
