"""Reading a user's input file (config, scenario, observation, profile) into one error line per failure.

Every file the user names fails the same few ways (missing, unreadable, bad syntax); the wording of the
fix is the caller's, and so is the :class:`~powerplanner.errors.UserError` subclass raised, so each
command keeps its own messages while the parsing and the line/column reporting live here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from powerplanner.errors import UserError


def read_text(path: Path, error: type[UserError], *, not_found: str, what: str) -> str:
    """The file's text (UTF-8). Raises ``error``: ``<path>: <not_found>`` when it does not exist, or
    ``<path>: cannot read <what> (<reason>); check the path and permissions``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {not_found}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} ({exc}); check the path and permissions") from None


def read_yaml(path: Path, error: type[UserError], *, not_found: str, what: str, empty_is_mapping: bool = True) -> Any:
    """Parse a YAML file (an empty file is ``{}``, or ``None`` with ``empty_is_mapping=False`` for a caller
    that says "empty file" itself); a syntax error names its line and column."""
    text = read_text(path, error, not_found=not_found, what=what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: {where}invalid YAML ({problem}); fix the syntax") from None
    return {} if data is None and empty_is_mapping else data
