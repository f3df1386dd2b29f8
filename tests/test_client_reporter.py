"""JobReporter: never blocks or breaks the app, bounded, and nothing counted twice."""

from __future__ import annotations

import socket
import threading

import pytest

from exporter.client import JobReporter


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


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
    reporter = JobReporter(f"http://127.0.0.1:{closed_port()}")
    error = KeyError("mine")

    @reporter.track(type="TASK")
    def broken() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        broken()
    assert raised.value is error
    assert broken.__name__ == "broken"
    reporter.close(timeout=0.1)
