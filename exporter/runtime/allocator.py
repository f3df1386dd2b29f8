"""Keep a long-running exporter's resident memory flat under glibc's allocator.

Every scrape of a large source briefly allocates tens of MB (the body, the decoded list)
and frees it. glibc raises its mmap threshold each time such a block is freed, so later
large blocks come from the heap instead, which it rarely gives back; and each new thread
(timers, server) may get an arena of its own that keeps its peak. Under scrapes of a
large source resident memory creeps scrape after scrape; with a fixed threshold and two arenas
it stays flat (docs/benchmarks.md has the figures). Both settings are what the `MALLOC_*`
variables would set, applied here so every way of starting the service gets them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
M_ARENA_MAX = -8
# Blocks above this are mapped, and unmapped when freed: a large source's body goes back to
# the system after each scrape, while a cached /metrics page of a few MB, copied into the
# server's buffer on every request, reuses heap memory instead of being mapped and faulted
# in each time (a threshold of 256 KiB cut /metrics throughput under wrk).
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
ARENAS = 2


def give_back() -> bool:
    """Return the free pages inside the C heaps to the system (glibc's `malloc_trim`);
    True when it ran. A scrape of a large source frees lists and arrays of a megabyte or
    so in the middle of a heap, where glibc keeps them resident; trimming after each
    scrape gives them back, for a small fraction of a scrape's time."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim(0)  # says whether it released anything, which does not matter here
    return True


def tune_allocator() -> bool:
    """Apply the settings when the C library is glibc; True when they took effect."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False  # not glibc (musl has no mallopt): nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENAS)
    )
    if not applied:
        log.debug("glibc refused the allocator settings; resident memory may creep")
    return applied


@functools.cache
def _glibc(function: str):
    """One of glibc's own functions, or None on another C library or system."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None
