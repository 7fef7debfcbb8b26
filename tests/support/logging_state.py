"""Put the logging set-up back after a test that ran ``configure_logging`` (the root's level, and the HTTP
clients' levels).."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from powerplanner.commands.logs import QUIET_LOGGERS


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)
