"""Fixtures shared by the test modules; the helpers behind them are in tests/helpers/.

In-process fixtures (a manual clock, a job source, exporters on a SQLite file) start no
process. The PostgreSQL cluster, the browser and the demo do: tests that use them are marked
`slow`, and so is the PostgreSQL case of `store_url`. Under CI a skipped test is a failure:
every part CI needs must really run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser

from exporter.clock import ManualClock
from tests.helpers.browser import Screens, chromium
from tests.helpers.data import START_MS
from tests.helpers.postgres import PostgresCluster
from tests.helpers.processes import ExporterProcess
from tests.helpers.redis import RedisServer
from tests.helpers.served import Exporter, sqlite_url
from tests.helpers.settled import settle_after_every_write
from tests.helpers.sources import JobSource
from tests.helpers.waiting import wait_until


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def job_source() -> Iterator[JobSource]:
    source = JobSource()
    yield source
    source.close()


@pytest.fixture
def make_exporter(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., Exporter]]:
    """Build exporters on one store file; several in turn model restarts of one process."""
    made: list[Exporter] = []

    def make(sources: dict[str, str], **settings: Any) -> Exporter:
        exporter = Exporter(tmp_path / "store.db", sources, clock, **settings)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()


@pytest.fixture
def exporter(make_exporter: Callable[..., Exporter], job_source: JobSource) -> Exporter:
    return make_exporter({"app": job_source.url})


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session; tests that need it empty call `flush()` or use their
    own database number."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session; each test takes a new database."""
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(
    params=["sqlite", "sqlite-settled", pytest.param("postgresql", marks=pytest.mark.slow)]
)
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A fresh store of each kind: a SQLite file (as new rows are, and with every row
    settled after each write), and a database on a real PostgreSQL."""
    if request.param == "sqlite-settled":
        settle_after_every_write(monkeypatch)
    if request.param.startswith("sqlite"):
        return sqlite_url(tmp_path / "store.db")
    return request.getfixturevalue("postgres_cluster").new_database()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def screens(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Screens]:
    made = Screens(browser, request.node.name)
    yield made
    made.close()
    assert not made.errors, f"uncaught errors in the page: {made.errors}"


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    """`job-exporter demo` on 127.0.0.1, once it has a first rate to chart."""
    process = ExporterProcess(
        "demo", "--listen", "127.0.0.1:0", cwd=tmp_path_factory.mktemp("demo")
    )

    def has_rates() -> bool:
        summary = requests.get(f"{process.url}/api/v1/stats/summary", timeout=5).json()
        return any(summary["series"]["started"])

    try:
        wait_until(has_rates, timeout=30, step=0.5)
        yield process
    finally:
        process.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when CI is set and anything was skipped (a missing tool must not pass)."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
