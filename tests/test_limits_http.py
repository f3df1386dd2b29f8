"""docs/contract.md §8 at the HTTP edge, against real `serve` processes and raw sockets.

A thousand clients sending a byte a second must not delay `/metrics` or `/healthz` for
another client by more than a second; a write without its token gets its 401, and a body
over the cap its 413, before the body is read or spooled to a temporary file; and `serve`
says so when it listens beyond loopback with writes open. The figures each test measures
are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from waitress.adjustments import Adjustments

from exporter import server
from exporter.runtime import edge
from tests.helpers.processes import ExporterProcess, resident_mb
from tests.helpers.waiting import poll

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
CAP = 16 * 1024 * 1024  # Settings.max_body_bytes's default
SLOW_CLIENTS = 1000
# ... and idle ones beside them, so that the server holds descriptors past select()'s 1,024
IDLE_CLIENTS = 100
ATTACK_S = 12.0
LATENCY_LIMIT_S = 1.0
PUSH_BYTES = 200 * 1024 * 1024
# What the kernel may hold of a body the server does not read: the client's send buffer
# and the server's receive window (a few MiB on loopback); far below the cap either way.
KERNEL_SLACK = 8 * 1024 * 1024
LISTENING = re.compile(r"listening on http://")
OPEN_WARNING = re.compile(r"beyond loopback with no --api-token")


@contextmanager
def exporter(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    process = ExporterProcess(
        "serve", "--store", f"sqlite:///{tmp_path / 'store.db'}", *args, env=env
    )
    try:
        yield process
    finally:
        process.kill()


def port_of(process: ExporterProcess) -> int:
    return int(process.url.rsplit(":", 1)[1])


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_own_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed


# -- a thousand slow clients --------------------------------------------------------------


def slow_request(index: int) -> bytes:
    """What one slow client trickles: half never finish their headers, half their body."""
    if index % 2:
        return b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
    head = b"POST /api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    return head + b"[" * 4096


class Trickle:
    """Sockets that each send one byte a second, spread over the second, from a thread."""

    def __init__(self, port: int, count: int, idle: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        self.idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
        self.payloads = [slow_request(i) for i in range(count)]
        self.sent = [0] * count
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.sockets + self.idle:
            sock.close()

    def _run(self) -> None:
        ticks = 50  # per second: each tick sends one byte on a fiftieth of the sockets
        start = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            for index in range(tick % ticks, len(self.sockets), ticks):
                self._send_one(index)
            tick += 1
            # pacing is the attack itself: this is a rate, not a wait for an event
            self.stop.wait(max(0.0, start + tick / ticks - time.monotonic()))

    def _send_one(self, index: int) -> None:
        payload, done = self.payloads[index], self.sent[index]
        if done >= len(payload):
            return
        try:
            self.sockets[index].send(payload[done : done + 1])
            self.sent[index] += 1
        except OSError:
            self.failures += 1


def timed_get(url: str) -> float:
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=5)
        response.raise_for_status()
    except requests.RequestException:
        return float("inf")
    return time.monotonic() - started


def test_a_thousand_slow_clients_do_not_delay_metrics_or_healthz(tmp_path: Path):
    raise_own_open_files_limit(SLOW_CLIENTS + IDLE_CLIENTS + 200)
    with exporter(tmp_path, "--listen", "127.0.0.1:0") as process:
        pid = process.process.pid
        idle_files, idle_mb = open_files(pid), resident_mb(pid)
        timings: dict[str, list[float]] = {"/metrics": [], "/healthz": []}
        clients = SLOW_CLIENTS + IDLE_CLIENTS
        with Trickle(port_of(process), SLOW_CLIENTS, IDLE_CLIENTS) as trickle:
            # the attack is in place once the server holds a descriptor for each socket
            held = poll(lambda: open_files(pid) - idle_files, until=lambda n: n >= clients)
            deadline = time.monotonic() + ATTACK_S
            while time.monotonic() < deadline:
                for path, taken in timings.items():
                    taken.append(timed_get(process.url + path))
            assert process.process.poll() is None, process.log
            held_after = open_files(pid) - idle_files
            attack_mb = resident_mb(pid)
            bytes_trickled = sum(trickle.sent)
            failures = trickle.failures
    figures = {
        path: f"p50 {statistics.median(taken) * 1000:.1f} ms, max {max(taken) * 1000:.1f} ms, "
        f"{len(taken)} requests"
        for path, taken in timings.items()
    }
    print(
        f"\n{SLOW_CLIENTS} slow and {IDLE_CLIENTS} idle clients for {ATTACK_S:.0f} s "
        f"({bytes_trickled} bytes trickled): {figures}; connections held {held} -> {held_after}; "
        f"RSS {idle_mb:.0f} -> {attack_mb:.0f} MB"
    )
    for path, taken in timings.items():
        assert max(taken) < LATENCY_LIMIT_S, f"{path}: {figures[path]}"
    assert failures == 0, "the server closed slow connections mid-attack"
    assert held_after >= clients, f"the server held only {held_after} connections"


# -- bodies refused before they are read --------------------------------------------------


@dataclass
class Attempt:
    """One large request sent without waiting: how far it got before the answer came."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent_before_answer: int = 0  # body bytes the socket took before the answer arrived
    spooled_max: int = 0  # largest temporary file the server held at any sample

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def spooled_bytes(pid: int, folder: Path) -> int:
    """Bytes in the files the server has open in `folder` (waitress's spool files are
    unlinked at once, so they show only as its open descriptors)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder)):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except FileNotFoundError:
            continue  # closed meanwhile
    return total


def chunks(total: int, chunked: bool) -> Iterator[bytes]:
    piece = b"0" * (256 * 1024)
    for _ in range(total // len(piece)):
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def send_large(
    port: int, pid: int, spool: Path, *, token: str | None, chunked: bool = False
) -> Attempt:
    """POST a PUSH_BYTES body as fast as the socket takes it, stopping once the answer
    arrives, while sampling what the server spools; then read the whole answer."""
    head = [
        "POST /api/v1/push HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {PUSH_BYTES}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    attempt = Attempt()
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        pieces = chunks(PUSH_BYTES, chunked)
        pending = memoryview(next(pieces))
        deadline = time.monotonic() + 60
        next_sample = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_sample:
                attempt.spooled_max = max(attempt.spooled_max, spooled_bytes(pid, spool))
                next_sample = time.monotonic() + 0.02
            readable, writable, _ = select.select([sock], [sock], [], 0.05)
            if readable:
                break  # the answer (or the close) came
            if writable:
                try:
                    sent = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                attempt.sent_before_answer += sent
                pending = pending[sent:]
                if not pending:
                    pending = memoryview(next(pieces, b""))
                    if not pending:
                        break  # all sent: the answer comes after the whole body
        attempt.spooled_max = max(attempt.spooled_max, spooled_bytes(pid, spool))
        sock.setblocking(True)
        sock.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < _length(answer):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    head_text, _, attempt.body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_text.decode("latin-1").split("\r\n")
    attempt.status = int(status_line.split()[1])
    attempt.headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return attempt


def _length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return len(head) + 4 + int(found.group(1)) if found else len(answer) + 1


@pytest.fixture
def guarded(tmp_path: Path):
    """An exporter with a token whose temporary files go to a folder of the test's own."""
    spool = tmp_path / "spool"
    spool.mkdir()
    with exporter(
        tmp_path, "--listen", "127.0.0.1:0", "--api-token", TOKEN, env={"TMPDIR": str(spool)}
    ) as process:
        yield process, spool


def test_a_push_without_its_token_is_refused_before_its_body_is_read(guarded):
    process, spool = guarded
    attempt = send_large(port_of(process), process.process.pid, spool, token=None)
    print(
        f"\n{PUSH_BYTES >> 20} MiB push without a token: {attempt.status} after "
        f"{attempt.sent_before_answer / 2**20:.2f} MiB sent; "
        f"spooled at most {attempt.spooled_max} bytes"
    )
    assert attempt.status == 401
    assert attempt.headers["content-type"] == "application/json"
    assert attempt.headers["www-authenticate"].startswith("Bearer")
    assert attempt.json["errors"][0]["field"] == "Authorization"
    assert attempt.sent_before_answer < KERNEL_SLACK
    assert attempt.spooled_max == 0
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_cap_is_refused_before_more_than_the_cap_is_read(guarded, chunked):
    process, spool = guarded
    attempt = send_large(port_of(process), process.process.pid, spool, token=TOKEN, chunked=chunked)
    print(
        f"\n{PUSH_BYTES >> 20} MiB push with a token ({'chunked' if chunked else 'sized'}): "
        f"{attempt.status} after {attempt.sent_before_answer / 2**20:.2f} MiB sent; "
        f"spooled at most {attempt.spooled_max / 2**20:.2f} MiB"
    )
    assert attempt.status == 413
    assert attempt.headers["content-type"] == "application/json"
    assert attempt.json["error"]
    assert [error["field"] for error in attempt.json["errors"]] == ["body"]
    # A sized body is refused from its Content-Length; a chunked one once the cap is read.
    read_at_most = CAP if chunked else 0
    assert attempt.sent_before_answer < read_at_most + KERNEL_SLACK
    assert attempt.spooled_max <= read_at_most
    assert list(spool.iterdir()) == []
    # the process still serves after refusing
    assert requests.get(process.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(("token", "status"), [(None, 401), (TOKEN, 413)], ids=["401", "413"])
def test_a_refused_request_is_never_told_to_continue(guarded, token, status):
    """A client that waits for `100 Continue` before its body is answered at once, and is
    never invited to send the body that would be refused."""
    process, _ = guarded
    head = [
        "POST /api/v1/push HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {PUSH_BYTES}",
        "Expect: 100-continue",
        *([f"Authorization: Bearer {token}"] if token else []),
    ]
    with socket.create_connection(("127.0.0.1", port_of(process)), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    assert answer.split(b"\r\n", 1)[0] == f"HTTP/1.1 {status} ".encode() + (
        b"Unauthorized" if status == 401 else b"Request Entity Too Large"
    )


def test_a_refused_connection_is_not_read_while_its_answer_waits_for_a_thread():
    """In process, since no process test can hold every thread: once a request is refused,
    its connection is not read (nor its body buffered) until the answer has gone."""
    queued: list[object] = []
    adjustments = Adjustments(
        max_request_body_size=CAP + 1, channel_request_lookahead=server.REQUEST_LOOKAHEAD
    )

    class Server:  # the part of waitress's server a channel uses
        adj = adjustments

        def __init__(self) -> None:
            self.active_channels: dict[int, object] = {}

        def add_task(self, channel: object) -> None:
            queued.append(channel)  # no thread takes it

        def pull_trigger(self) -> None:
            pass

    refusal = edge.Refusal(401, "Unauthorized", "no token")
    channel_class = edge.channel_class(lambda method, path, headers: refusal, CAP)
    ours, theirs = socket.socketpair()
    try:
        channel = channel_class(Server(), ours, ("127.0.0.1", 0), adjustments, map={})
        head = b"POST /api/v1/push HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"
        channel.received(head + b"0" * 65536)
        assert queued == [channel]
        assert [request.error for request in channel.requests] == [refusal]
        assert channel.request is None  # nothing of the body started another request
        assert not channel.readable()
    finally:
        ours.close()
        theirs.close()


# -- the warning for writes open beyond loopback ------------------------------------------


@pytest.mark.parametrize(
    ("listen", "token", "warned"),
    [("0.0.0.0:0", None, True), ("0.0.0.0:0", TOKEN, False), ("127.0.0.1:0", None, False)],
    ids=["anywhere-open", "anywhere-token", "loopback-open"],
)
def test_serve_warns_when_writes_are_open_beyond_loopback(tmp_path, listen, token, warned):
    args = ["--listen", listen, *(["--api-token", token] if token else [])]
    with exporter(tmp_path, *args) as process:
        lines = [line for line in process.lines if OPEN_WARNING.search(line)]
        # the warning, when there is one, comes before the line saying where it listens
        assert any(LISTENING.search(line) for line in process.lines)
        assert requests.get(process.url + "/healthz", timeout=5).status_code == 200
    assert len(lines) == (1 if warned else 0), "\n".join(process.lines)
    if warned:
        assert "WARNING" in lines[0]
