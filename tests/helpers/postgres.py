"""A throwaway PostgreSQL cluster on 127.0.0.1, started by the tests themselves.

Made with the machine's own `initdb` and `pg_ctl` in a temporary folder. PostgreSQL refuses
to run as root, so under root the cluster runs as the unprivileged `nobody` user. A cluster
that cannot start fails the tests: it never makes them skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers.processes import free_port

UNPRIVILEGED_USER = "nobody"


def postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed; scripts/setup installs it")
    return found


class PostgresCluster:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="job-exporter-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", UNPRIVILEGED_USER, "--"]
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, UNPRIVILEGED_USER)
        self._run(
            postgres_binary("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        self._run(
            postgres_binary("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self._databases = 0

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as_user, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.folder,
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}\n{tail}")

    def new_database(self) -> str:
        """A fresh, empty database; returns its store URL."""
        import psycopg

        self._databases += 1
        name = f"store_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_user,
                postgres_binary("pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            cwd=self.folder,
        )
        shutil.rmtree(self.folder, ignore_errors=True)
