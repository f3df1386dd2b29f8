"""JobReporter across forks, abrupt exits and exporter restarts (docs/contract.md §6).

Each scenario runs in processes of its own, the way Celery's prefork pool and RQ's work
horses do: a reporter made in a parent, a forked child that reports and ends through
`os._exit`, and a real `job-exporter` process that counts what arrives.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
from flask import Flask, request

from exporter.client import JobReporter
from tests.helpers.metrics import Metrics
from tests.helpers.processes import ExporterProcess, free_port
from tests.helpers.scripts import PythonScript
from tests.helpers.served import ServedApp, sqlite_url
from tests.helpers.waiting import poll, wait_until

FAST = (
    "flush_interval=0.05, retry_base=0.05, retry_cap=0.2, pickup_interval=0.1, "
    "heartbeat_interval=None"
)

# A parent makes the reporter, then forks children that each report `jobs` jobs and end
# through os._exit at once; the parent reports jobs of its own between forks. Arguments:
# url, spool folder, children, jobs per child. It prints "forked N" after each child and
# "done" at the end, then stays alive (its reporter keeps adopting) until stdin closes.
FORKING_PARENT = textwrap.dedent(f"""
    import os, sys, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: what Celery does
    from exporter.client import JobReporter

    url, spool_dir = sys.argv[1], sys.argv[2]
    children, per_child = int(sys.argv[3]), int(sys.argv[4])
    reporter = JobReporter(url, source="forked", spool_dir=spool_dir, {FAST})
    for n in range(children):
        pid = os.fork()
        if pid == 0:
            for k in range(per_child):
                with reporter.job("TASK", "child-task", job_id=f"child-{{n}}-{{k}}"):
                    pass
            os._exit(0)  # no atexit, no flush: what a prefork child or a work horse does
        os.waitpid(pid, 0)
        with reporter.job("TASK", "parent-task", job_id=f"parent-{{n}}"):
            pass
        print(f"forked {{n + 1}}", flush=True)
    print("done", flush=True)
    sys.stdin.read()
    reporter.close()
""")


def serve(port: int, store: Path) -> ExporterProcess:
    return ExporterProcess("serve", "--listen", f"127.0.0.1:{port}", "--store", sqlite_url(store))


def counts(exporter: ExporterProcess, name: str) -> tuple[float, float]:
    """(started, completed) of one pushed job name of source `forked`."""
    metrics = exporter.metrics()
    labels = {"source": "forked", "type": "TASK", "name": name}
    started = metrics.value("background_jobs_started_total", **labels) or 0
    done = metrics.value("background_jobs_finished_total", outcome="completed", **labels) or 0
    return started, done


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.spool"))


@pytest.mark.slow
def test_a_forked_child_that_ends_through_os_exit_gets_its_job_counted(tmp_path: Path):
    exporter = serve(free_port(), tmp_path / "store.db")
    script = PythonScript(FORKING_PARENT, exporter.url, str(tmp_path / "spool"), "1", "1")
    try:
        script.wait_for_line("done")
        found = poll(lambda: counts(exporter, "child-task"), until=lambda c: c == (1, 1))
        assert found == (1, 1), script.output()
        assert counts(exporter, "parent-task") == (1, 1)
        assert script.finish() == 0, script.output()
    finally:
        script.finish()
        exporter.stop()
    assert spool_files(tmp_path / "spool") == []


@pytest.mark.slow
def test_events_of_a_child_that_ran_while_the_exporter_was_down_arrive_once(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool_dir = tmp_path / "spool"
    script = PythonScript(FORKING_PARENT, url, str(spool_dir), "3", "2")
    script.wait_for_line("done")
    assert script.finish() == 0, script.output()
    assert spool_files(spool_dir), "the children's events were not left in the spool"

    exporter = serve(port, tmp_path / "store.db")
    try:
        # A later reporter of the same URL and source adopts what the ended processes left.
        later = JobReporter(
            url, source="forked", spool_dir=spool_dir, heartbeat_interval=None, flush_interval=0.05
        )
        found = poll(lambda: counts(exporter, "child-task"), until=lambda c: c == (6, 6))
        assert found == (6, 6)
        assert counts(exporter, "parent-task") == (3, 3)
        wait_until(lambda: spool_files(spool_dir) == [])
        assert later.sent == (6 + 3) * 2  # every job's start and finish, once
        later.close()
        # And once only: a further reporter finds nothing left to send.
        again = JobReporter(url, source="forked", spool_dir=spool_dir, heartbeat_interval=None)
        assert again.flush(5)
        again.close()
        assert again.sent == 0
        assert counts(exporter, "child-task") == (6, 6)
    finally:
        exporter.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_an_exporter_restarted_mid_workload_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, stop_signal: signal.Signals
):
    port = free_port()
    store = tmp_path / "store.db"
    exporter = serve(port, store)
    script = PythonScript(FORKING_PARENT, exporter.url, str(tmp_path / "spool"), "60", "3")
    try:
        script.wait_for_line("forked 15")
        exporter.stop(stop_signal)
        script.wait_for_line("forked 30")
        exporter = serve(port, store)
        script.wait_for_line("done")
        wanted = {"child-task": (180, 180), "parent-task": (60, 60)}
        found = poll(lambda: {name: counts(exporter, name) for name in wanted}, until=wanted.__eq__)
        assert found == wanted, script.output()
        assert script.finish() == 0, script.output()
        assert spool_files(tmp_path / "spool") == []  # everything was settled
        assert {name: counts(exporter, name) for name in wanted} == wanted
    finally:
        script.finish()
        exporter.stop()


class RecordingExporter(ServedApp):
    """Answers pushes as the exporter does (202) and keeps each one's query and items."""

    def __init__(self) -> None:
        self.pushes: list[tuple[dict[str, str], list[dict]]] = []
        app = Flask("recorder")

        @app.post("/api/v1/push")
        def push():
            self.pushes.append((dict(request.args), request.get_json()))
            return {"accepted": len(self.pushes[-1][1])}, 202

        super().__init__(app)

    def items_of(self, job_id: str) -> list[tuple[int, dict]]:
        """(push number, item) of every pushed item of `job_id`."""
        return [
            (number, item)
            for number, (_, items) in enumerate(list(self.pushes))
            for item in items
            if item["id"] == job_id
        ]


@pytest.fixture
def recorder():
    server = RecordingExporter()
    yield server
    server.close()


def test_a_running_job_is_resent_as_a_heartbeat_until_it_ends(recorder, tmp_path: Path):
    reporter = JobReporter(
        recorder.base_url,
        source="beats",
        heartbeat_interval=0.1,
        flush_interval=0.02,
        spool_dir=tmp_path,
    )
    try:
        first = reporter.job("TASK", "long", job_id="long-1")
        first.__enter__()
        wait_until(lambda: len(recorder.items_of("long-1")) >= 3)  # the start and two beats
        assert {item["status"] for _, item in recorder.items_of("long-1")} == {"running"}
        first.__exit__(None, None, None)
        second = reporter.job("TASK", "long", job_id="long-2")
        second.__enter__()
        wait_until(lambda: len(recorder.items_of("long-2")) >= 3)
        finished_at = next(n for n, item in recorder.items_of("long-1") if item["isFinished"])
        # Two heartbeat rounds went by since long-1 ended, and none carried it again.
        assert all(n <= finished_at for n, _ in recorder.items_of("long-1"))
        second.__exit__(None, None, None)
        assert reporter.flush(5)
        assert reporter.heartbeats >= 4
        # lostAfter is three intervals in whole seconds, here raised to the exporter's 5 s floor.
        assert all(query == {"source": "beats", "lostAfter": "5"} for query, _ in recorder.pushes)
    finally:
        reporter.close()


def test_without_heartbeats_a_push_carries_no_lost_after(recorder, tmp_path: Path):
    reporter = JobReporter(
        recorder.base_url, source="quiet", heartbeat_interval=None, spool_dir=tmp_path
    )
    slow = JobReporter(recorder.base_url, source="slow", heartbeat_interval=20, spool_dir=False)
    try:
        reporter.job("TASK", "long", job_id="quiet-1").__enter__()
        slow.job("TASK", "long", job_id="slow-1").__enter__()
        assert reporter.flush(5) and slow.flush(5)
        queries = {query["source"]: query for query, _ in recorder.pushes}
        assert queries == {
            "quiet": {"source": "quiet"},
            "slow": {"source": "slow", "lostAfter": "60"},
        }
        assert reporter.heartbeats == 0
    finally:
        reporter.close()
        slow.close()


# A child starts a job and is killed in the middle of it; its parent goes on with a long
# job of its own. Arguments: url, spool folder. Prints "started" once both jobs run.
KILLED_MID_JOB = textwrap.dedent("""
    import os, signal, sys, warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    from exporter.client import JobReporter

    reporter = JobReporter(sys.argv[1], source="forked", spool_dir=sys.argv[2],
                           heartbeat_interval=0.5, flush_interval=0.05, pickup_interval=0.1)
    reporter.job("TASK", "parent-long", job_id="parent-long").__enter__()
    pid = os.fork()
    if pid == 0:
        reporter.job("TASK", "child-long", job_id="child-long").__enter__()
        reporter.flush(5)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    print("started", flush=True)
    sys.stdin.read()
""")


@pytest.mark.slow
def test_the_exporter_counts_lost_the_running_job_of_a_killed_process_only(tmp_path: Path):
    """Waits for the exporter's side of lostAfter (docs/contract.md §2, lost pushed jobs)."""
    exporter = serve(free_port(), tmp_path / "store.db")
    script = PythonScript(KILLED_MID_JOB, exporter.url, str(tmp_path / "spool"))
    try:
        script.wait_for_line("started")

        def lost(name: str) -> float:
            labels = {"source": "forked", "type": "TASK", "name": name}
            metrics: Metrics = exporter.metrics()
            return metrics.value("background_jobs_finished_total", outcome="lost", **labels) or 0

        # lostAfter is 5 s here (the floor), and the exporter looks every few seconds.
        wait_until(lambda: lost("child-long") == 1, timeout=30, step=0.2)
        running = exporter.metrics().value(
            "background_jobs_running", source="forked", type="TASK", name="parent-long"
        )
        assert running == 1 and lost("parent-long") == 0
    finally:
        script.finish()
        exporter.stop()


def test_a_push_source_name_is_sent_as_given(recorder, tmp_path: Path):
    """The spool folder is per URL and source: two sources never send each other's files."""
    one = JobReporter(recorder.base_url, source="one", spool_dir=tmp_path, heartbeat_interval=None)
    two = JobReporter(recorder.base_url, source="two", spool_dir=tmp_path, heartbeat_interval=None)
    try:
        one.job("TASK", "a", job_id="a").__enter__()
        two.job("TASK", "b", job_id="b").__enter__()
        assert one.flush(5) and two.flush(5)
        sources = {
            query["source"]: [item["id"] for item in items] for query, items in recorder.pushes
        }
        assert sources == {"one": ["a"], "two": ["b"]}
        assert len({path.parent for path in tmp_path.rglob("*.spool")}) == 2
    finally:
        one.close()
        two.close()
