"""SQLite store faults against real `serve` processes: the file truncated, deleted, replaced
or overwritten while running, a full disk and the space freed, another process holding the
write lock, and start-ups on a store that cannot be used.

Each asserts what `/metrics` (`job_exporter_store_up`), `/healthz` and `/readyz` answer and
how fast, that no push is acknowledged (202) once the fault can be seen, and what the log
says: one line when the store breaks (and one when a full disk is back), never a traceback.
A file fault is found by the write that follows it, before that write is acknowledged, so
every push sent after the fault is refused; with no write, by the check the store runs once
a second, so `/readyz` says 503 within DETECT_S.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.helpers.data import job
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, require_tool
from tests.helpers.scripts import PythonScript
from tests.helpers.waiting import poll, wait_until

pytestmark = pytest.mark.slow

SOURCE = "faults"
ANSWER_S = 2.0  # the longest /metrics, /healthz or /readyz may take, whatever the store does
PUSH_ANSWER_S = 2.5  # a push waits at most 2 s for a write lock, then answers
DETECT_S = 2.0  # with no write to find it, a file fault shows in /readyz within this
HOLD_S = 5.0  # how long another process holds SQLite's write lock
TRACEBACK = "Traceback (most recent call last)"
EXPORTER = (sys.executable, "-m", "exporter")


def serve(store: Path) -> ExporterProcess:
    return ExporterProcess("serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}")


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic seconds
    took: float
    status: int
    text: str
    ids: tuple[str, ...]


@dataclass
class Pusher:
    """Pushes new running jobs, one request at a time, and keeps every answer."""

    url: str
    per_push: int = 1
    answers: list[Answer] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _session: requests.Session = field(default_factory=requests.Session)

    def push(self) -> Answer:
        ids = tuple(f"job-{next(self._ids)}" for _ in range(self.per_push))
        sent = time.monotonic()
        response = self._session.post(
            f"{self.url}/api/v1/push?source={SOURCE}", json=[job(i) for i in ids], timeout=10
        )
        answer = Answer(sent, time.monotonic() - sent, response.status_code, response.text, ids)
        self.answers.append(answer)
        return answer

    @contextmanager
    def running(self) -> Iterator[None]:
        """Push without pause on a thread of its own while the block runs."""
        stop = threading.Event()
        thread = threading.Thread(target=lambda: self._until(stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(15)

    def _until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.push()

    def acknowledged(self, after: float = float("-inf")) -> list[Answer]:
        return [a for a in self.answers if a.status == 202 and a.sent >= after]

    def refused(self, after: float = float("-inf")) -> list[Answer]:
        return [a for a in self.answers if a.status != 202 and a.sent >= after]


@dataclass(frozen=True)
class Probe:
    status: int
    took: float
    text: str


def probe(url: str, path: str) -> Probe:
    started = time.monotonic()
    response = requests.get(f"{url}{path}", timeout=10)
    return Probe(response.status_code, time.monotonic() - started, response.text)


def store_up(url: str) -> float | None:
    return Metrics(probe(url, "/metrics").text).value("job_exporter_store_up")


def started(process: ExporterProcess) -> float:
    """Jobs started in the push source, as /metrics reads them from the store."""
    found = process.metrics().job("background_jobs_started_total", source=SOURCE)
    return found or 0.0


def assert_endpoints_down(url: str, fault: str) -> dict[str, float]:
    """/healthz still 200, /readyz 503 with the fault, the store gauge 0; each within
    ANSWER_S. Returns how long each took."""
    took = {}
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = probe(url, path)
        assert answer.took < ANSWER_S, (path, answer.took)
        took[path] = answer.took
        if path == "/healthz":
            assert answer.status == 200
        elif path == "/readyz":
            assert answer.status == 503 and f"({fault})" in answer.text, answer
        else:
            assert answer.status == 200
            assert Metrics(answer.text).value("job_exporter_store_up") == 0
    return took


def wait_for_readyz(url: str, status: int, since: float, timeout: float) -> float:
    """Seconds from `since` until /readyz answers `status`; fails after `timeout`."""
    answer = poll(
        lambda: probe(url, "/readyz"), until=lambda a: a.status == status, timeout=timeout
    )
    assert answer.status == status, answer
    return time.monotonic() - since


def start_once(store: Path) -> subprocess.CompletedProcess[str]:
    """`serve` on a store it is expected to refuse: it exits by itself."""
    return subprocess.run(
        [*EXPORTER, "serve", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def run_tool(*args: str) -> None:
    subprocess.run([require_tool(args[0]), *args[1:]], check=True, capture_output=True)


# --- the store file changed under a running process ------------------------------------


def truncate(store: Path) -> None:
    run_tool("truncate", "-s", "0", str(store))


def delete(store: Path) -> None:
    run_tool("rm", str(store))


def replace(store: Path) -> None:
    """Another SQLite database moved over the store, as a restore gone wrong would."""
    other = store.with_name("other.db")
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    run_tool("mv", str(other), str(store))


def overwrite(store: Path) -> None:
    """Random bytes over the whole file, its size kept."""
    run_tool(
        "dd",
        "if=/dev/urandom",
        f"of={store}",
        "bs=4096",
        f"count={max(1, store.stat().st_size // 4096)}",
        "conv=notrunc",
    )


FILE_FAULTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (what the test does, the fault word, what the log line says)
    "truncated": (truncate, "corrupt", r"was truncated while running \(from \d+ to 0 bytes\)"),
    "deleted": (delete, "replaced", "was deleted while running"),
    "replaced": (replace, "replaced", "was replaced by another file while running"),
    "overwritten": (overwrite, "corrupt", "was overwritten while running"),
}


def count(process: ExporterProcess, pattern: re.Pattern[str]) -> int:
    return sum(1 for line in list(process.lines) if pattern.search(line))


def fault_line(fault: str, says: str) -> re.Pattern[str]:
    return re.compile(
        rf"ERROR exporter\.store\.health: store fault \({fault}\): store file .*{says}"
    )


@pytest.mark.parametrize("name", FILE_FAULTS)
def test_a_file_fault_with_no_write_shows_in_readyz_and_refuses_every_push(
    tmp_path: Path, name: str
):
    act, fault, says = FILE_FAULTS[name]
    store = tmp_path / "store.db"
    process = serve(store)
    try:
        pusher = Pusher(process.url)
        for _ in range(20):
            assert pusher.push().status == 202
        assert probe(process.url, "/readyz").status == 200

        act(store)
        broken_at = time.monotonic()
        detected_s = wait_for_readyz(process.url, 503, broken_at, timeout=DETECT_S + 1)
        assert detected_s < DETECT_S, detected_s
        took = assert_endpoints_down(process.url, fault)

        refused = [pusher.push() for _ in range(10)]
        assert [a.status for a in refused] == [503] * 10
        assert all(f"({fault})" in a.text for a in refused), refused[0]
        assert max(a.took for a in refused) < ANSWER_S
        line = process.wait_for_log(fault_line(fault, says))
        assert "writes are refused" in line.string and "restart" in line.string
        assert count(process, fault_line(fault, "")) == 1
        print(f"{name}: detected in {detected_s:.2f} s, probes {took}")
    finally:
        process.stop()
    assert TRACEBACK not in process.log
    if name == "deleted":  # what the message says: a restart begins a new, empty store
        again = serve(store)
        try:
            assert started(again) == 0
        finally:
            again.stop()
    elif name == "replaced":  # the file now there is used, without the old file's log
        result = start_once(store)
        assert result.returncode == 1 and "is not a job-exporter store" in result.stderr


@pytest.mark.parametrize("name", FILE_FAULTS)
def test_a_file_fault_under_pushes_refuses_every_push_sent_after_it(tmp_path: Path, name: str):
    act, fault, says = FILE_FAULTS[name]
    store = tmp_path / "store.db"
    process = serve(store)
    try:
        pusher = Pusher(process.url)
        with pusher.running():
            wait_until(lambda: len(pusher.acknowledged()) >= 50)
            act(store)
            broken_at = time.monotonic()
            wait_until(lambda: len(pusher.refused(after=broken_at)) >= 50, timeout=20)
        late = pusher.acknowledged(after=broken_at)
        assert late == [], f"{len(late)} push(es) sent after the fault were acknowledged"
        assert max(a.took for a in pusher.answers) < PUSH_ANSWER_S
        assert_endpoints_down(process.url, fault)
        process.wait_for_log(fault_line(fault, says))
        assert count(process, fault_line(fault, "")) == 1
        before = pusher.acknowledged()
        print(
            f"{name}: {len(before)} acknowledged before, "
            f"{len(pusher.refused(after=broken_at))} refused after"
        )
    finally:
        process.stop()
    assert TRACEBACK not in process.log


# --- a full disk, then space freed -----------------------------------------------------


@contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A small file system of its own; a mount that fails fails the test."""
    where.mkdir()
    run_tool("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run([require_tool("umount"), "-l", str(where)], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every byte left on the file system."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                break
    for size in (4096, 512, 1):  # what a whole chunk no longer fitted into
        try:
            with filler.open("ab", buffering=0) as out:
                while out.write(b"\0" * size):
                    pass
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


FULL = re.compile(r"ERROR exporter\.store\.health: store failing \(disk_full\)")
BACK = re.compile(r"WARNING exporter\.store\.health: store is back after")


def test_a_full_disk_refuses_pushes_until_space_is_freed_and_loses_none(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "8m") as disk:
        store = disk / "store.db"
        process = serve(store)
        try:
            pusher = Pusher(process.url, per_push=200)
            for _ in range(5):
                assert pusher.push().status == 202
            filler = fill(disk)
            first = poll(pusher.push, until=lambda a: a.status != 202, timeout=60)
            assert first.status == 503 and "(disk_full)" in first.text, first
            full_at = time.monotonic()
            wal = store.with_name("store.db-wal")
            wal_full = wal.stat().st_size
            acknowledged_filling = len(pusher.acknowledged()) - 5
            refused = [pusher.push() for _ in range(10)]
            assert [a.status for a in refused] == [503] * 10
            assert max(a.took for a in refused) < ANSWER_S
            assert_endpoints_down(process.url, "disk_full")

            filler.unlink()
            freed_at = time.monotonic()
            ready_s = wait_for_readyz(process.url, 200, freed_at, timeout=5)
            back = poll(pusher.push, until=lambda a: a.status == 202, timeout=5)
            assert back.status == 202, back
            back_s = back.sent + back.took - freed_at
            # The log was emptied before writes went on: it cannot grow into the freed space
            # and leave none for a checkpoint.
            wal_back = wal.stat().st_size
            assert wal_back < wal_full, (wal_back, wal_full)
            pusher.per_push = 20  # and not back for a moment only
            after = [pusher.push() for _ in range(50)]
            assert [a.status for a in after] == [202] * 50
            assert count(process, FULL) == 1 and count(process, BACK) == 1, process.log
            assert ready_s < DETECT_S and back_s < DETECT_S, (ready_s, back_s)
            ids = {i for a in pusher.acknowledged() for i in a.ids}
            assert started(process) == len(ids)
            print(
                f"disk full: {acknowledged_filling} pushes of 200 acknowledged while filling, "
                f"{len(pusher.refused())} refused over {freed_at - full_at:.1f} s, "
                f"ready {ready_s:.2f} s and a push acknowledged {back_s:.2f} s after space "
                f"was freed; log {wal_full} bytes when full, {wal_back} once back, "
                f"{wal.stat().st_size} after 50 more"
            )
        finally:
            assert process.stop() == 0
        assert TRACEBACK not in process.log

        again = serve(store)  # the file survived: every acknowledged job is in it
        try:
            assert started(again) == len(ids)
        finally:
            again.stop()


# --- another process holding SQLite's write lock ---------------------------------------

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("COMMIT")
print("released", flush=True)
"""
TIMED_OUT = re.compile(r"ERROR exporter\.store\.health: store failing \(timeout\)")


def test_a_write_lock_held_elsewhere_bounds_every_answer(tmp_path: Path):
    store = tmp_path / "store.db"
    process = serve(store)
    holder: PythonScript | None = None
    try:
        pusher = Pusher(process.url)
        for _ in range(5):
            assert pusher.push().status == 202
        probes: list[tuple[str, Probe]] = []
        with pusher.running():
            holder = PythonScript(HOLD_LOCK, str(store))
            holder.wait_for_line("locked")
            locked_at = time.monotonic()
            while time.monotonic() - locked_at < HOLD_S:  # the scenario: HOLD_S of lock
                probes += [(path, probe(process.url, path)) for path in ("/healthz", "/readyz")]
                probes.append(("/metrics", probe(process.url, "/metrics")))
            assert holder.finish() == 0
            released_at = time.monotonic()
            wait_until(lambda: pusher.acknowledged(after=released_at), timeout=5)
        held = [a for a in pusher.answers if locked_at <= a.sent and a.sent + a.took < released_at]
        wrong = [a for a in held if a.status != 503 or "(timeout)" not in a.text]
        assert held and not wrong, (locked_at, released_at, wrong[:3])
        assert max(a.took for a in pusher.answers) < PUSH_ANSWER_S
        assert max(p.took for _, p in probes) < ANSWER_S
        readyz = [p for path, p in probes if path == "/readyz"]
        assert any(p.status == 503 and "(timeout)" in p.text for p in readyz)
        assert all(p.status == 200 for path, p in probes if path == "/healthz")
        back = pusher.acknowledged(after=released_at)[0]
        ids = {i for a in pusher.acknowledged() for i in a.ids}
        assert started(process) == len(ids)
        process.wait_for_log(TIMED_OUT)
        process.wait_for_log(BACK)
        print(
            f"lock held {HOLD_S:g} s: {len(held)} pushes refused (longest "
            f"{max(a.took for a in held):.2f} s), {len(pusher.acknowledged())} acknowledged, "
            f"first one {back.sent + back.took - released_at:.2f} s after the release; "
            f"/readyz 503 in {sum(p.status == 503 for p in readyz)} of {len(readyz)}, "
            f"longest probe {max(p.took for _, p in probes):.3f} s; "
            f"log: {count(process, TIMED_OUT)} failing, {count(process, BACK)} back"
        )
    finally:
        if holder is not None:
            holder.finish()
        process.stop()
    assert TRACEBACK not in process.log


# --- start-ups on a store that cannot be used ------------------------------------------


def make_store(path: Path) -> Path:
    """A real store, made by a process that then stopped."""
    serve(path).stop()
    return path


def build_steps(path: Path, steps: int, version: int, extra: str = "") -> None:
    from exporter.store.sqlite import MIGRATIONS, _statements

    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:steps]:
            for statement in _statements(script):
                db.execute(statement)
        if extra:
            db.execute(extra)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()


def unrelated(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT)")
        db.execute("INSERT INTO jobs (title) VALUES ('plumber')")
    db.close()


def half_migrated(path: Path) -> None:
    """Version 2, yet step 3's tables are there."""
    build_steps(path, 3, 2)


def failing_step(path: Path) -> None:
    """Version 3 as it should be, plus a table step 4 is about to create."""
    build_steps(path, 3, 3, "CREATE TABLE jobs_slim (x)")


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(16384))


def damaged_pages(path: Path) -> None:
    """A real store's header, random pages after it."""
    make_store(path)
    size = path.stat().st_size
    with path.open("r+b") as out:
        out.seek(4096)
        out.write(os.urandom(size - 4096))


@contextmanager
def read_only_file(path: Path) -> Iterator[None]:
    """The store file bind-mounted read-only over itself: root may not write it either."""
    make_store(path)
    run_tool("mount", "--bind", str(path), str(path))
    try:
        run_tool("mount", "-o", "remount,bind,ro", str(path))
        yield
    finally:
        subprocess.run([require_tool("umount"), str(path)], check=True)


@contextmanager
def read_only_disk(path: Path) -> Iterator[None]:
    with tmpfs(path.parent, "4m") as disk:
        make_store(disk / path.name)
        run_tool("mount", "-o", "remount,ro", str(disk))
        yield None
        run_tool("mount", "-o", "remount,rw", str(disk))


START_UPS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    # name: (what makes the store, where it is, what the one line must say)
    "read-only file": (read_only_file, "store.db", "the file or its folder is read-only here"),
    "read-only disk": (read_only_disk, "ro/store.db", "it is on a read-only file system"),
    "unrelated": (unrelated, "store.db", r"is not a job-exporter store: it has tables \(jobs\)"),
    "half-migrated": (half_migrated, "store.db", r"is half-migrated: it has tables .*schedules"),
    "failing step": (failing_step, "store.db", r"schema step 4 of \d+ failed .* jobs_slim"),
    "random bytes": (random_bytes, "store.db", "it is not an SQLite database or it is damaged"),
    "damaged pages": (damaged_pages, "store.db", "it is not an SQLite database or it is damaged"),
}


@pytest.mark.parametrize("name", START_UPS)
def test_a_store_that_cannot_be_used_stops_the_start_with_one_line(tmp_path: Path, name: str):
    make, where, says = START_UPS[name]
    store = tmp_path / where
    setup = make(store)
    with setup if isinstance(setup, AbstractContextManager) else nullcontext():
        started_at = time.monotonic()
        result = start_once(store)
        took = time.monotonic() - started_at
    lines = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert result.returncode == 1, result.stderr
    assert TRACEBACK not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(says, lines[0]), lines[0]
    print(f"{name}: exit {result.returncode} after {took:.2f} s: {lines[0]}")
