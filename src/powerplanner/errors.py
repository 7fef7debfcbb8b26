"""Errors a user can cause, and how they are shown.

Every problem with user input (config, profile, trace, observation, annotation, an unreachable
endpoint) is raised as a :class:`UserError`. The CLI prints its lines, one per problem, and exits
non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: the agent must not pay for pydantic through this module
    from pydantic import ValidationError


class UserError(Exception):
    """A problem the user can fix. ``lines`` holds one message per problem, each naming the fix."""

    exit_code: int = 2
    reported_as_json: bool = False  # the command already printed its JSON (with the failure) on stdout

    def __init__(self, *lines: str) -> None:
        if not lines:
            raise ValueError("UserError needs at least one message")
        # One problem, one line, whatever a user's file held: a key or a value quoted in a message may carry a
        # line break or a terminal escape (shown escaped, never interpreted).
        self.lines: tuple[str, ...] = tuple(_one_line(line) for line in lines)
        super().__init__("\n".join(lines))


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(UserError):
    """The configuration file is missing, unreadable or invalid."""


class ProfileError(UserError):
    """A power-performance profile is missing or invalid."""


class TraceError(UserError):
    """A request trace is missing or invalid."""


class ObservationError(UserError):
    """An observation given to ``powerplanner plan`` is invalid."""


class EndpointError(UserError):
    """A peer (Prometheus, the Kubernetes API, the kubelet) cannot be reached at start-up."""

    exit_code = 3


class MeasureError(UserError):
    """``powerplanner profile measure`` cannot run or finish: no NVML, no permission, a GPU error mid-sweep."""

    exit_code = 3


def field_path(loc: tuple[int | str, ...], top: str = "(top level)") -> str:
    """A pydantic error location as the user writes it in the file: ``planner.prefill``, ``schedule[1].watts``."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == "[key]":
            continue  # pydantic's marker for "the key of this mapping", named by the part before it
        elif not item or not item.isprintable() or any(c in item for c in ".[] "):
            parts.append(f"[{item!r:.60}]")  # a key the path syntax cannot show as it is (empty, a line break)
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or top


def _strict_type_message(kind: str, got: object) -> str | None:
    """Say why a strict number field refused a value (input models are strict: powerplanner.input_schema)."""
    if kind not in ("float_type", "int_type"):
        return None
    wanted = "an integer" if kind == "int_type" else "a number"
    if isinstance(got, bool):
        return f"must be {wanted}, not true/false"
    if isinstance(got, str):
        try:
            numeric = math.isfinite(float(got))
        except ValueError:
            numeric = False
        return f"must be {wanted}, not text (write it without quotes)" if numeric else f"must be {wanted}"
    if kind == "int_type" and isinstance(got, float):
        return "must be an integer (a whole number, without a decimal point)"
    return None


def validation_lines(
    error: ValidationError,
    source: str,
    *,
    docs: str = "docs/configuration.md",
    missing_hint: str = "",
    messages: Mapping[tuple[str, tuple[int | str, ...]], str] | None = None,
) -> list[str]:
    """One line per problem: ``source: field.path: what is wrong (what is allowed)``.

    Shared by every pydantic-validated input (config, scenario, observation, profile) so that a user sees
    the same shape of message whichever file is wrong. ``docs`` is the page that lists the fields (named
    for an unknown field); ``missing_hint`` is appended to "required field is missing". A line pydantic
    reports twice (a field checked by two validators) is shown once. ``messages`` replaces pydantic's text for
    an error ``(type, field location)`` the caller can say better (e.g. which format version is expected).
    """
    lines: list[str] = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = f"unknown field (check the spelling; see {docs})"
        elif item["type"] == "missing":
            msg = f"required field is missing{missing_hint}"
        elif messages and (item["type"], loc) in messages:
            msg = messages[(item["type"], loc)]
        else:
            msg = _strict_type_message(item["type"], item.get("input")) or msg
        got = item.get("input")
        shown = "" if item["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r:.60})"
        line = f"{source}: {field_path(loc)}: {msg}{shown}"
        if line not in lines:
            lines.append(line)
    return lines
