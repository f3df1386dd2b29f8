"""A per-process spool of job events on local disk, so a process that ends abruptly (through
`os._exit`, SIGKILL, an OOM kill) leaves its unsent events for the next process to send.

Why a spool file and not a flush at exit: Celery's prefork children and RQ's work horses end
through `os._exit`, which runs no `atexit` handler and stops no thread politely, and a
SIGKILL gives no chance at all. What a process already handed to the kernel survives it, so
every event is written to the page cache with one `os.pwrite` when it is emitted (no fsync:
the page cache outlives the process, and only a power loss or a kernel crash loses it).

One file per process instance, named `<pid>-<random>.spool` (a container restarts its
worker as the same pid, so the pid alone would not name one life). It starts with a fixed
header holding the offset of the first event not yet settled (delivered, refused, or dropped
on purpose), then one JSON line per event. The owner rewrites the header after each batch,
truncates the file when everything is settled, and copies the unsettled tail to a fresh file
when the settled part grows large.

Liveness is the owner's exclusive `flock` on its open file, held for the process's whole
life: the kernel releases it when the process ends, however it ends, and it cannot be fooled
by a reused pid. A process that can take the lock of a file it does not own knows the owner
is gone and adopts the file: it sends the unsettled events and deletes the file, still under
the lock, so two live processes never send the same file. A forked child closes its copy of
the parent's descriptor (the lock stays the parent's) and opens its own file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock (Windows): no spool, events live in memory only
    AVAILABLE = False
else:
    AVAILABLE = True

log = logging.getLogger(__name__)

MAGIC = b"JOBSPOOL1 "
HEADER_SIZE = len(MAGIC) + 20 + 1  # magic, the settled offset in 20 digits, a newline
SUFFIX = ".spool"
COMPACT_BYTES = 1 << 20  # copy the unsettled tail to a new file once this much is settled
STALE_TMP_S = 60.0  # a half-created file of a dead process older than this is removed
ENV_DIR = "JOB_EXPORTER_SPOOL_DIR"


class SpoolError(OSError):
    """The spool cannot be written (disk full, folder gone): reporting goes on without it."""


def spool_folder(base: str | os.PathLike[str] | None, push_url: str, source: str) -> Path:
    """The folder of one exporter URL and source: files there are sent to that target only.

    `base` defaults to `$JOB_EXPORTER_SPOOL_DIR`, then to a folder of this user's under the
    system's temporary folder."""
    if base is None:
        base = os.environ.get(ENV_DIR) or Path(tempfile.gettempdir()) / (
            f"job-exporter-spool-{os.getuid()}"
        )
    digest = hashlib.sha256(f"{push_url}\0{source}".encode()).hexdigest()[:16]
    return Path(base) / digest


def prepare_folder(folder: Path, *, private_parent: bool) -> None:
    """Create the folder (private to this user) and refuse one another user could change;
    `private_parent` checks the parent too, for the default one under a shared temp folder,
    where another user could have made it first."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for checked in (folder, folder.parent) if private_parent else (folder,):
        info = os.lstat(checked)
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolError(errno.ENOTDIR, "not a folder", str(checked))
        if info.st_uid != os.geteuid():
            raise SpoolError(errno.EPERM, "owned by another user", str(checked))
        if info.st_mode & 0o022:
            raise SpoolError(errno.EPERM, "writable by other users", str(checked))


def _header(settled: int) -> bytes:
    return MAGIC + b"%020d\n" % settled


def _write_all(fd: int, data: bytes, offset: int) -> None:
    written = os.pwrite(fd, data, offset)
    if written != len(data):  # only a full disk writes part of a regular file
        raise SpoolError(errno.ENOSPC, "short write to the spool")


class OwnSpool:
    """This process's spool file. Offsets given out are logical (bytes appended since the
    file was made), so they stay valid when the file is compacted; not thread-safe: the
    reporter calls it under its lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        temporary = folder / f".{name}.tmp"
        self.path = folder / f"{name}{SUFFIX}"
        self._fd = self._create(temporary)
        os.rename(temporary, self.path)  # only ever visible locked
        self.end = 0  # logical offset of the end of the last event
        self.origin = 0  # logical offset of the first byte after the header
        self.settled = 0  # logical offset of the first event not settled

    @staticmethod
    def _create(path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, _header(HEADER_SIZE), 0)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd

    def append(self, line: bytes) -> int:
        """Write one event line (ending in a newline); returns its logical end offset."""
        _write_all(self._fd, line, HEADER_SIZE + self.end - self.origin)
        self.end += len(line)
        return self.end

    def settle(self, offset: int) -> None:
        """Everything before logical `offset` is delivered, refused or dropped on purpose."""
        if offset <= self.settled:
            return
        self.settled = offset
        if offset >= self.end:  # nothing left: start over with an empty file
            os.ftruncate(self._fd, HEADER_SIZE)
            _write_all(self._fd, _header(HEADER_SIZE), 0)
            self.origin = self.settled = self.end
            return
        if offset - self.origin >= COMPACT_BYTES and offset - self.origin > self.end - offset:
            self._compact()
            return
        _write_all(self._fd, _header(HEADER_SIZE + offset - self.origin), 0)

    def _compact(self) -> None:
        """Copy the unsettled tail to a fresh file, renamed over this one under its lock."""
        start = HEADER_SIZE + self.settled - self.origin
        tail = os.pread(self._fd, self.end - self.settled, start)
        temporary = self.folder / f".{self.path.stem}.compact.tmp"
        temporary.unlink(missing_ok=True)
        fd = self._create(temporary)
        try:
            _write_all(fd, tail, HEADER_SIZE)
            os.rename(temporary, self.path)
        except OSError:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        os.close(self._fd)  # a reader that opened the old file finds it unlinked
        self._fd = fd
        self.origin = self.settled

    def close(self, *, remove: bool) -> None:
        """Close the file; remove it when nothing in it is left to send."""
        if self._fd < 0:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # the lock goes with it: what is left is anyone's to send
        self._fd = -1

    def abandon(self) -> None:
        """In a forked child: drop the inherited descriptor; the file stays the parent's."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class Orphan:
    """A spool file left by a process that has ended, locked by this process."""

    path: Path
    fd: int
    events: list[tuple[bytes, int]] = field(default_factory=list)  # line, physical end
    sent: int = 0  # events of `events` settled so far

    @property
    def left(self) -> int:
        return len(self.events) - self.sent

    def settle(self, count: int) -> None:
        """The next `count` events were delivered or refused: record it in the header."""
        self.sent += count
        end = self.events[self.sent - 1][1] if self.sent else HEADER_SIZE
        _write_all(self.fd, _header(end), 0)

    def finish(self) -> None:
        """Everything was settled: remove the file, still under the lock, then close."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Let go of the file (this process is stopping, or forked): another may adopt it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def adopt(folder: Path, skip: set[Path], limit: int, max_bytes: int) -> tuple[list[Orphan], int]:
    """Lock and read spool files of ended processes, oldest first, until `limit` events;
    also the number of events dropped because the folder held more than `max_bytes`.

    A file whose lock is held belongs to a live process and is left alone; one that was
    unlinked between the listing and the lock (another adopter finished it) is skipped."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return [], 0
    _remove_stale_temporaries(entries)
    candidates = []
    total = 0
    for entry in entries:
        if not entry.name.endswith(SUFFIX):
            continue
        try:
            info = entry.stat()
        except FileNotFoundError:
            continue
        total += info.st_size
        if Path(entry.path) not in skip:
            candidates.append((info.st_mtime, info.st_size, Path(entry.path)))
    candidates.sort()
    dropped = 0
    while total > max_bytes and candidates:  # the oldest go first, as in the queue
        _, size, path = candidates.pop(0)
        orphan = _lock(path)
        if orphan is not None:
            dropped += orphan.left
            orphan.finish()
            total -= size
    found: list[Orphan] = []
    count = 0
    for _, _, path in candidates:
        if count >= limit:
            break
        orphan = _lock(path)
        if orphan is None:
            continue
        if not orphan.events:
            orphan.finish()
            continue
        count += len(orphan.events)
        found.append(orphan)
    return found, dropped


def _lock(path: Path) -> Orphan | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # its owner is alive
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # finished or compacted by someone else meanwhile
        os.close(fd)
        return None
    orphan = Orphan(path, fd)
    try:
        orphan.events = list(_read_events(fd))
    except OSError:
        orphan.release()
        return None
    return orphan


def _read_events(fd: int) -> Iterator[tuple[bytes, int]]:
    """The unsettled events: complete lines that parse as JSON objects after the header's
    offset. A torn last line (a power loss mid-write) or a damaged header yields nothing
    for that part rather than an invalid push that would sink a whole batch."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    if not data.startswith(MAGIC) or len(data) < HEADER_SIZE:
        return
    try:
        position = max(int(data[len(MAGIC) : HEADER_SIZE - 1]), HEADER_SIZE)
    except ValueError:
        position = HEADER_SIZE
    while position < len(data):
        newline = data.find(b"\n", position)
        if newline < 0:
            return
        line = data[position : newline + 1]
        position = newline + 1
        try:
            valid = isinstance(json.loads(line), dict)
        except ValueError:
            valid = False
        if valid:
            yield line, position


def _remove_stale_temporaries(entries: list[os.DirEntry[str]]) -> None:
    """A process killed between creating its file and naming it leaves a `.tmp` file; its
    events are still in the named file, if any (a compaction copies, it never moves)."""
    now = time.time()
    for entry in entries:
        if not entry.name.endswith(".tmp"):
            continue
        try:
            if now - entry.stat().st_mtime <= STALE_TMP_S:
                continue
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except (BlockingIOError, FileNotFoundError):
            pass  # its creator is alive, or someone else removed it
        finally:
            os.close(fd)
