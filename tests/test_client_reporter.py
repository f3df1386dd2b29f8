"""JobReporter: never blocks or breaks the app, bounded, and nothing counted twice."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from exporter.app import create_app
from exporter.client import JobReporter
from exporter.clock import ManualClock
from exporter.config import Settings
from tests.helpers.data import START_MS
from tests.helpers.metrics import Metrics
from tests.helpers.processes import free_port
from tests.helpers.served import LiveServer, live_server, sqlite_url


@pytest.fixture(autouse=True)
def private_spool(tmp_path, monkeypatch):
    """Each test's reporters spool in its own folder, never the user's default one."""
    monkeypatch.setenv("JOB_EXPORTER_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def hung_exporter():
    """A socket that accepts connections and never answers: the worst exporter there is."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_calls_return_while_the_exporter_hangs_and_the_queue_stays_bounded(hung_exporter):
    reporter = JobReporter(hung_exporter, max_queue=50, batch_size=10, timeout=30)
    done = threading.Event()

    @reporter.track(type="TASK", name="work")
    def work(n: int) -> int:
        return n

    def app() -> None:
        assert sum(work(n) for n in range(100)) == sum(range(100))
        done.set()

    threading.Thread(target=app, daemon=True).start()
    # 100 calls, 200 events, while the exporter never answers a single request.
    assert done.wait(10), "the app's calls blocked on the exporter"
    assert reporter.queued <= 50
    assert reporter.dropped >= 150
    reporter.close(timeout=0.1)


def test_the_app_exception_passes_unchanged():
    reporter = JobReporter(f"http://127.0.0.1:{free_port()}")
    error = KeyError("mine")

    @reporter.track(type="TASK")
    def broken() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        broken()
    assert raised.value is error
    assert broken.__name__ == "broken"
    reporter.close(timeout=0.1)


class FakeTime:
    """The reporter's clock, kept in step with the exporter's manual clock."""

    def __init__(self, start_ms: float) -> None:
        self.now = start_ms / 1000

    def __call__(self) -> float:
        return self.now


def finished(metrics, outcome: str, type: str, name: str, source: str = "billing"):
    return metrics.value(
        "background_jobs_finished_total", source=source, type=type, name=name, outcome=outcome
    )


def test_decorated_and_block_jobs_reach_metrics_with_outcome_and_duration(tmp_path):
    clock = FakeTime(START_MS)
    with live_server(tmp_path) as server:
        reporter = JobReporter(server.base_url, source="billing", clock=clock, flush_interval=0.02)

        @reporter.track(type="TASK", name="invoice")
        def invoice(amount: int) -> int:
            clock.now += 1.5
            return amount

        assert invoice(7) == 7
        with pytest.raises(ValueError), reporter.job("HTTP", "POST /hook"):
            clock.now += 0.25
            raise ValueError("the app's own")
        assert reporter.flush(timeout=10)
        metrics = server.metrics()
        reporter.close()
    assert finished(metrics, "completed", "TASK", "invoice") == 1
    assert finished(metrics, "failed", "HTTP", "POST /hook") == 1
    duration = "background_jobs_duration_seconds_sum"
    assert metrics.value(duration, source="billing", type="TASK", name="invoice") == 1.5
    assert metrics.value(duration, source="billing", type="HTTP", name="POST /hook") == 0.25
    assert reporter.sent == 4 and reporter.dropped == 0


def test_events_queued_while_the_exporter_is_down_arrive_once_it_is_up(tmp_path):
    clock = FakeTime(START_MS)
    port = free_port()
    reporter = JobReporter(
        f"http://127.0.0.1:{port}",
        source="billing",
        clock=clock,
        flush_interval=0.02,
        retry_base=0.02,
        retry_cap=0.1,
    )
    for n in range(10):
        with reporter.job("TASK", "nightly", job_id=f"night-{n}"):
            clock.now += 1
    assert not reporter.flush(timeout=0.3)  # nothing can arrive yet
    assert reporter.queued == 20

    app = create_app(Settings(store=sqlite_url(tmp_path / "api.db")), clock=ManualClock(START_MS))
    server = LiveServer(app, port)
    try:
        assert reporter.flush(timeout=15)
        counts = Metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        started = "background_jobs_started_total"
        assert counts.value(started, source="billing", type="TASK", name="nightly") == 10
        assert finished(counts, "completed", "TASK", "nightly") == 10
        # A batch resent after a lost answer (simulated: the same events again) counts nothing.
        for n in range(10):
            reporter.emit(
                {
                    "id": f"night-{n}",
                    "name": "nightly",
                    "backgroundJobType": "TASK",
                    "startTimestamp": START_MS,
                    "isFinished": True,
                    "finishTimestamp": START_MS + 1000,
                    "status": "completed",
                }
            )
        assert reporter.flush(timeout=10)
        again = Metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        assert again.value(started, source="billing", type="TASK", name="nightly") == 10
        assert finished(again, "completed", "TASK", "nightly") == 10
    finally:
        reporter.close()
        server.close()


class FailingOnce(requests.Session):
    """A session whose first push raises what requests never raises: a bug in the sender's
    path, which ends the sending thread."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def post(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug on the sending path")
        return super().post(*args, **kwargs)


def test_events_waiting_with_no_live_sender_are_warned_of_once_and_so_is_the_recovery(
    tmp_path, caplog
):
    with live_server(tmp_path) as server:
        reporter = JobReporter(
            server.base_url,
            source="billing",
            session=FailingOnce(),
            flush_interval=0.02,
            heartbeat_interval=None,
        )
        with caplog.at_level("WARNING", logger="exporter.client.reporter"):
            reporter.emit(_item("a"))
            thread = reporter._thread
            assert thread is not None
            thread.join(10)  # the bug ends it
            assert not thread.is_alive()
            for name in ("b", "c"):
                reporter.emit(_item(name))
            assert reporter.flush(10)
        messages = [record.getMessage() for record in caplog.records]
        assert sum("sending thread had stopped" in m for m in messages) == 1, messages
        assert sum("sending thread runs again" in m for m in messages) == 1, messages
        assert reporter.sent == 3  # the event in hand when it failed was sent again
        reporter.close()


def _item(job_id: str) -> dict:
    return {
        "id": job_id,
        "name": "nightly",
        "backgroundJobType": "TASK",
        "startTimestamp": START_MS,
        "isFinished": True,
        "finishTimestamp": START_MS + 1000,
        "status": "completed",
    }


def test_by_default_pushes_ask_for_lost_after_three_heartbeats_within_the_contracts_minute():
    """15 s heartbeats and lostAfter=45: with the exporter's 5 s sweep, a run whose process
    died is counted lost within the minute docs/contract.md §6 promises."""
    import http.server

    asked: list[str] = []

    class Capture(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            asked.append(self.path)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    reporter = JobReporter(f"http://127.0.0.1:{server.server_port}", spool_dir=False)
    try:
        with reporter.job("TASK", "beat"):
            pass
        assert reporter.flush(10)
    finally:
        reporter.close()
        server.shutdown()
        server.server_close()
    assert asked and all("lostAfter=45" in path for path in asked)
    assert reporter.heartbeat_interval == 15.0


def test_a_runs_end_queued_behind_its_start_is_sent_alone_and_counted_the_same(tmp_path):
    """A short task's start and end queued together go as one event (the end says all the
    start did); a start whose end lacks one of its fields is still sent."""
    with live_server(tmp_path) as server:
        reporter = JobReporter(
            server.base_url, source="short", flush_interval=3600, spool_dir=False
        )
        start = {"name": "add", "startTimestamp": START_MS, "backgroundJobType": "TASK"}
        for n in range(50):
            queued = {"enqueueTimestamp": START_MS - 1_000}
            reporter.emit({**start, **queued, "id": f"j{n}", "isFinished": False})
            reporter.emit(
                {
                    **start,
                    **queued,
                    "id": f"j{n}",
                    "isFinished": True,
                    "finishTimestamp": START_MS + 5,
                }
            )
        reporter.emit(
            {**start, "id": "kept", "isFinished": False, "enqueueTimestamp": START_MS - 1}
        )
        reporter.emit({**start, "id": "kept", "isFinished": True, "finishTimestamp": START_MS + 5})
        assert reporter.flush(timeout=10)
        metrics = server.metrics()
        reporter.close()
    # The sender, started by the first event, may take that one before its end is queued.
    assert reporter.coalesced in (49, 50) and reporter.sent == 102
    labels = {"source": "short", "type": "TASK", "name": "add"}
    assert metrics.value("background_jobs_started_total", **labels) == 51
    assert finished(metrics, "completed", "TASK", "add", source="short") == 51
    assert metrics.value("background_jobs_duration_seconds_count", **labels) == 51
    # The 50 ends carry their queue wait; "kept"'s end does not, and a push that names a job
    # twice applies its last item (docs/contract.md §2), so only its start could have said it.
    assert metrics.value("background_jobs_queue_wait_seconds_count", **labels) == 50
