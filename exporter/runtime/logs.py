"""The process's log: text lines, or one JSON object per line (`--log-format json`) for
every logger, waitress's included, so a log collector reads each record whole.

A JSON record has `time` (UTC, ISO 8601 with milliseconds), `level`, `logger` and
`message`, and `exception` (the traceback's text) when the record carries one. Python's
warnings and exceptions no handler caught (in any thread) go through the log too.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

from exporter.config import DEFAULT_LOG_FORMAT, LOG_FORMATS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loud libraries, quieted: APScheduler's every run, waitress's queue depth warnings.
QUIETER = {"apscheduler": logging.WARNING, "waitress.queue": logging.ERROR}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `log_format` lines."""
    made = logging.StreamHandler(stream or sys.stderr)
    made.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return made


def configure(level: str, log_format: str = DEFAULT_LOG_FORMAT) -> None:
    """The root logger's one handler, unless one is there already (an embedding app's)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    logging.basicConfig(level=level.upper(), handlers=[handler(log_format)])
    for name, quieter in QUIETER.items():
        logging.getLogger(name).setLevel(quieter)
    if log_format == "json":
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_uncaught


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    logging.getLogger("exporter").critical("uncaught exception", exc_info=(kind, error, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "a thread"
    logging.getLogger("exporter").error(
        "uncaught exception in %s",
        name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
