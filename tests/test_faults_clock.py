"""The wall clock stepped under a running `serve`, for real: libfaketime (Debian's `faketime`)
moves the process's wall clock while its monotonic clocks go on, as an NTP step or `date -s`
does. Nothing stops, nothing expires early, no duration goes negative, and the step is said.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.data import job
from tests.helpers.processes import ExporterProcess
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow

STEPPED = re.compile(r"the wall clock stepped (back|forward) by ([\d.]+) s")


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (Debian package faketime); scripts/setup does")
    return found[0]


class SteppedServe:
    """`serve` whose wall clock is the real one plus an offset this test writes."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.offset_file = folder / "offset"
        self.offset_file.write_text("+0\n")
        self.process = ExporterProcess(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            f"sqlite:///{folder / 'store.db'}",
            *args,
            env={
                "LD_PRELOAD": libfaketime(),
                "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
                "FAKETIME_CACHE_DURATION": "1",  # the offset file is read again every second
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a real step leaves those alone
            },
        )
        self.url = self.process.url

    def step(self, seconds: int) -> None:
        self.offset_file.write_text(f"{seconds:+d}\n")

    def wait_for_step(self, direction: str, seconds: float) -> None:
        self.process._log.wait(
            lambda lines: next(
                (
                    line
                    for line in lines
                    if (m := STEPPED.search(line))
                    and m.group(1) == direction
                    and abs(float(m.group(2)) - seconds) < 5
                ),
                None,
            ),
            10,
            f"a log line saying the clock stepped {direction} by {seconds} s",
        )

    def post(self, path: str, body: object, **params: object) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, params=params, timeout=10)

    def lease(self, seconds: float) -> dict:
        answer = self.post("/api/v1/jobs/lease", {"worker": "w", "leaseSeconds": seconds})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.url}/api/v1/jobs/{job_id}", timeout=10).json()

    def create(self, name: str) -> dict:
        answer = self.post("/api/v1/jobs", {"type": "TASK", "name": name})
        assert answer.status_code == 201, answer.text
        return answer.json()


@pytest.fixture
def scraped_source() -> Iterator[JobSource]:
    source = JobSource()
    source.serve_jobs([job("scraped-1")])
    yield source
    source.close()


def test_a_clock_stepped_back_an_hour_stops_nothing(tmp_path: Path, scraped_source: JobSource):
    served = SteppedServe(
        tmp_path, "--source", f"app={scraped_source.url}", "--scrape-interval", "0.2"
    )
    try:
        wait_until(lambda: scraped_source.requests >= 2)
        served.create("short")
        short = served.lease(2)  # ends 2 s from now on any clock that does not step
        served.create("across")
        across = served.lease(600)
        served.step(-3600)
        served.wait_for_step("back", 3600)
        stepped_at = time.monotonic()
        metrics = served.process.metrics()
        assert metrics.value("job_exporter_clock_step_seconds") == pytest.approx(-3600, abs=5)
        # Scrapes go on at their interval (before: none for the size of the step).
        seen = scraped_source.requests
        wait_until(lambda: scraped_source.requests >= seen + 10, timeout=5)
        # The 2 s lease expires on time (before: an hour late), counted lost and requeued.
        wait_until(lambda: served.job(short["id"])["status"] == "pending", timeout=5)
        assert time.monotonic() - stepped_at < 5
        # A run that started before the step and ended after it has a true duration.
        done = served.post(f"/api/v1/jobs/{across['id']}/complete", {"worker": "w"})
        assert done.status_code == 200, done.text
        finished = served.job(across["id"])
        assert finished["finishedAt"] >= finished["startedAt"]
        # Pushes after the step count, and the exporter says it is ready.
        pushed = served.post("/api/v1/push", [job("pushed", finished=True)], source="p")
        assert pushed.status_code == 202
        metrics = served.process.metrics()
        assert metrics.job("background_jobs_started_total", source="p") == 1
        assert requests.get(f"{served.url}/readyz", timeout=5).status_code == 200
        assert served.process._log.count(STEPPED) == 1  # said once, not once a check
    finally:
        served.process.stop()


def test_a_clock_stepped_forward_a_day_expires_nothing_early(tmp_path: Path):
    served = SteppedServe(tmp_path, "--push-lost-after", "86400")
    try:
        served.create("long")
        long_lease = served.lease(600)
        now_ms = time.time() * 1000
        # Open pushed jobs: one whose source asks for 10 s and is never reported again (the
        # control: it must be counted lost, 10 s on), one under the default day.
        assert (
            served.post(
                "/api/v1/push", [job("quiet", start_ms=now_ms)], source="control", lostAfter=10
            ).status_code
            == 202
        )
        assert (
            served.post("/api/v1/push", [job("fresh", start_ms=now_ms)], source="day").status_code
            == 202
        )
        served.step(86400)
        served.wait_for_step("forward", 86400)
        assert served.process.metrics().value("job_exporter_clock_step_seconds") == pytest.approx(
            86400, abs=5
        )
        # The control goes lost once its 10 s have passed on the exporter's own time line...
        wait_until(
            lambda: (
                served.process.metrics().job(
                    "background_jobs_finished_total", source="control", outcome="lost"
                )
                == 1
            ),
            timeout=25,
        )
        # ... and by then the sweeps have run after the step: nothing else ended.
        metrics = served.process.metrics()
        assert metrics.job("background_jobs_finished_total", source="day", outcome="lost") == 0
        assert metrics.job("background_jobs_running", source="day") == 1
        assert served.job(long_lease["id"])["status"] == "running"
        finished = served.post(
            "/api/v1/push",
            [job("fresh", start_ms=now_ms, finished=True, finishTimestamp=time.time() * 1000)],
            source="day",
        )
        assert finished.status_code == 202
        metrics = served.process.metrics()
        assert metrics.job("background_jobs_finished_total", source="day", outcome="completed") == 1
    finally:
        served.process.stop()
