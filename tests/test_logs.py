"""`--log-format json`: one JSON object per line (time, level, logger, message, and the
exception's text when there is one) for every logger, waitress's included."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter import cli
from exporter.runtime.logs import handler
from tests.helpers.processes import ExporterProcess, first_match
from tests.helpers.waiting import wait_until


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_is_one_line_of_json_with_its_exception():
    stream = io.StringIO()
    logger = logging.getLogger("tests.json")
    logger.propagate = False
    logger.addHandler(handler("json", stream))
    try:
        logger.warning("two\nlines, «unicode» and %s", "args")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.exception("it failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    first, second = records(stream.getvalue())  # two lines, each one whole object
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["message"] == "two\nlines, «unicode» and args"
    assert first["level"] == "warning" and first["logger"] == "tests.json"
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert second["level"] == "error" and second["message"] == "it failed"
    assert second["exception"].startswith("Traceback")
    assert "ZeroDivisionError: division by zero" in second["exception"]


def test_text_stays_the_default_and_other_formats_are_refused(monkeypatch):
    seen: dict = {}
    monkeypatch.setattr(cli, "_run", lambda initial, *_: seen.update(s=initial))
    configured: list = []
    monkeypatch.setattr(cli.logs, "configure", lambda *args: configured.append(args))
    assert CliRunner().invoke(cli.main, ["serve"]).exit_code == 0
    result = CliRunner().invoke(cli.main, ["serve"], env={"JOB_EXPORTER_LOG_FORMAT": "json"})
    assert result.exit_code == 0
    assert configured == [("info", "text"), ("info", "json")]
    refused = CliRunner().invoke(cli.main, ["serve", "--log-format", "xml"])
    assert refused.exit_code == 2 and "'--log-format'" in refused.output


WAITRESS_LIMIT = re.compile(r'"logger": "waitress".*connection limit')


@pytest.mark.slow
def test_every_logger_of_a_real_process_writes_json(tmp_path: Path):
    exporter = ExporterProcess(
        "serve",
        "--log-format",
        "json",
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{tmp_path / 'store.db'}",
        "--source",
        "down=http://127.0.0.1:1/jobs",  # refused: the scraper warns
        "--max-connections",
        "1",  # one idle connection reaches the limit: waitress warns
    )
    host, port = exporter.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        exporter.wait_for_log(WAITRESS_LIMIT)
    wait_until(lambda: any('"exporter.sources.scrape"' in line for line in exporter.lines))
    assert exporter.stop() == 0
    lines = records(exporter.log)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    loggers = {line["logger"] for line in lines}
    assert {"exporter.server", "exporter.sources.scrape", "waitress"} <= loggers
    assert first_match(re.compile("job-exporter stopped"))(exporter.lines)
