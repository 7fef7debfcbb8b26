"""Logging for the long-running commands (``run``, ``agent``): text or one JSON object per line, and the HTTP
client libraries kept quiet.

``httpx`` and ``httpcore`` log every request at INFO: at a 5 s tick that is ten lines a tick, ~170k a day, and
they drown the planner's own lines. They stay at WARNING unless ``--log-level debug`` (README.md,
"Command line"). JSON lines carry ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and, on an exception,
``exception``: the fields log collectors (Loki, Elasticsearch, Cloud Logging) pick up without a parser.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from powerplanner.errors import UserError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3")  # a line per HTTP request at INFO/DEBUG
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, log_format: str, root: logging.Logger | None = None) -> None:
    """Set the root logger's level and format; refuse an unknown level or format in one line. ``root``: the
    process's root logger unless a test gives its own."""
    name = level.lower()
    if name not in LEVELS:
        raise UserError(f"--log-level: unknown level {level!r}; use {', '.join(LEVELS)}")
    if log_format.lower() not in FORMATS:
        raise UserError(f"--log-format: unknown format {log_format!r}; use {' or '.join(FORMATS)}")
    root = root if root is not None else logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host that set up logging already (a test runner) keeps it
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if log_format.lower() == "json" else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
    root.setLevel(getattr(logging, name.upper()))
    quiet = logging.DEBUG if name == "debug" else logging.WARNING
    for logger in QUIET_LOGGERS:
        logging.getLogger(logger).setLevel(quiet)
