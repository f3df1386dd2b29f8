"""`job-exporter healthcheck`, the image's HEALTHCHECK: it finds the address the exporter's
process listens on the way that process found it, and GETs /healthz there.

The slow cases run a real `serve` on a port other than the default and check it through its
process id, as the image's check does through PID 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import cli
from exporter.config import DEFAULT_LISTEN, DEMO_LISTEN
from exporter.runtime import healthcheck
from tests.helpers.processes import ExporterProcess, free_port
from tests.helpers.served import sqlite_url


@pytest.mark.parametrize(
    ("argv", "args"),
    [
        # The console script, run by the interpreter its first line names (the image's PID 1).
        (["/usr/local/bin/python3.11", "/usr/local/bin/job-exporter", "serve"], ["serve"]),
        # Under an init (docker run --init, tini).
        (["/sbin/docker-init", "--", "job-exporter", "demo"], ["demo"]),
        (["python", "-m", "exporter", "serve", "--listen", "h:2"], ["serve", "--listen", "h:2"]),
        (["python", "-mexporter", "serve"], ["serve"]),
        (["python", "-m", "http.server", "9188"], None),
        (["/bin/sh", "-c", "sleep 1"], None),
        ([], None),
    ],
)
def test_the_program_is_found_in_a_command_line(argv: list[str], args: list[str] | None) -> None:
    assert healthcheck.program_args(argv) == args


@pytest.fixture
def no_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JOB_EXPORTER_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_variables")
def test_the_address_follows_serve_and_its_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's default, then the file, then the variable, then the option: serve's order."""
    config = tmp_path / "exporter.yml"
    config.write_text("listen: 127.0.0.1:7001\n", encoding="utf-8")
    assert healthcheck.listen_of(cli.main, []) == DEFAULT_LISTEN
    assert healthcheck.listen_of(cli.main, ["serve"]) == DEFAULT_LISTEN
    assert healthcheck.listen_of(cli.main, ["demo"]) == DEMO_LISTEN
    assert healthcheck.listen_of(cli.main, ["serve", "--config", str(config)]) == "127.0.0.1:7001"
    monkeypatch.setenv("JOB_EXPORTER_LISTEN", "127.0.0.1:7002")
    assert healthcheck.listen_of(cli.main, ["serve", "--config", str(config)]) == "127.0.0.1:7002"
    assert healthcheck.listen_of(cli.main, ["serve", "--listen", "[::1]:7003"]) == "[::1]:7003"
    # A command without an address (or none at all) is taken as serve with no options.
    assert healthcheck.listen_of(cli.main, ["--version"]) == "127.0.0.1:7002"


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:9188", ("127.0.0.1", 9188)),
        (":9188", ("127.0.0.1", 9188)),
        ("[::]:9200", ("::1", 9200)),
        ("10.1.2.3:80", ("10.1.2.3", 80)),
    ],
)
def test_every_address_is_checked_on_loopback(listen: str, target: tuple[str, int]) -> None:
    assert healthcheck.health_url(listen) == target


def run_healthcheck(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`job-exporter healthcheck ARGS` as a process with none of the exporter's variables,
    as the image runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOB_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "healthcheck", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
def test_it_follows_the_listen_option_of_a_real_serve(tmp_path: Path) -> None:
    port = free_port()
    served = ExporterProcess(
        "serve", "--listen", f"127.0.0.1:{port}", "--store", sqlite_url(tmp_path / "s.db")
    )
    try:
        started = time.monotonic()
        result = run_healthcheck("--pid", str(served.process.pid))
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 3, "slower than the image's 3 s timeout"
    finally:
        served.stop()
    # The process is gone: its address no longer answers.
    result = run_healthcheck("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"127.0.0.1:{port}/healthz" in result.stderr


@pytest.mark.slow
def test_it_follows_the_variable_and_the_config_file_of_a_real_serve(tmp_path: Path) -> None:
    """JOB_EXPORTER_LISTEN in serve's environment only, and a config file named relative to
    serve's working folder: the check reads both from the process."""
    by_variable, by_file = free_port(), free_port()
    (tmp_path / "exporter.yml").write_text(
        f"listen: 127.0.0.1:{by_file}\nstore: {sqlite_url(tmp_path / 'f.db')}\n", encoding="utf-8"
    )
    served = [
        ExporterProcess(
            "serve",
            "--store",
            sqlite_url(tmp_path / "v.db"),
            env={"JOB_EXPORTER_LISTEN": f"127.0.0.1:{by_variable}"},
        ),
        ExporterProcess("serve", "--config", "exporter.yml", cwd=tmp_path),
    ]
    try:
        assert served[0].url.endswith(f":{by_variable}")
        assert served[1].url.endswith(f":{by_file}")
        for process in served:
            result = run_healthcheck("--pid", str(process.process.pid), cwd=Path("/"))
            assert result.returncode == 0, result.stderr
    finally:
        for process in served:
            process.stop()


@pytest.mark.slow
def test_it_fails_when_nothing_listens_where_the_process_says() -> None:
    """A process whose command line is a job-exporter serve on a port nobody listens on."""
    port = free_port()
    command_line = ["job-exporter", "serve", "--listen", f"127.0.0.1:{port}"]
    impostor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *command_line]
    )
    try:
        result = run_healthcheck("--pid", str(impostor.pid), "--timeout", "1")
    finally:
        impostor.kill()
        impostor.wait(10)
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in result.stderr
