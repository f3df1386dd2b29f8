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
  Sample per line, sorting its labels and formatting each value generically. The rendered
  bytes, gzip included, are kept until the store or the exporter's health changes.
- waitress keeps pages up to 64 MiB in memory instead of spooling those over 1 MiB to a
  temporary file.
- A scrape decodes and validates the whole response into typed structs in one msgspec pass and
  compares it with an in-memory index of each source's jobs, so only changed jobs reach the
  store, in one transaction.
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
