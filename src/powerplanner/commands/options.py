"""Names shared by several commands' options: the environment variables that stand in for them (a container
sets ``POWERPLANNER_CONFIG`` once instead of templating arguments; README, "Command line")."""

from __future__ import annotations

from typing import TypeVar

from powerplanner.errors import UserError

T = TypeVar("T")

CONFIG_ENV = "POWERPLANNER_CONFIG"
LOG_LEVEL_ENV = "POWERPLANNER_LOG_LEVEL"
LOG_FORMAT_ENV = "POWERPLANNER_LOG_FORMAT"
LOG_LEVEL_HELP = "debug, info, warning or error (httpx's request lines show only at debug)."
LOG_FORMAT_HELP = "text, or json: one JSON object per line (time, level, logger, message)."


def renamed(new_flag: str, new: T | None, old_flag: str, old: T | None) -> T | None:
    """The value of an option given under its name or under its old, hidden spelling (never both: which would win
    is not obvious). One name per flag across commands: README, "Command line"."""
    if new is not None and old is not None:
        raise UserError(f"{old_flag} is the old spelling of {new_flag}; give only {new_flag}")
    return new if new is not None else old
