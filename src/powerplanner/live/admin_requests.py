"""What the admin endpoint accepts: the pure checks of one request's ``Content-Length``, body and bearer token.

No socket here: :mod:`powerplanner.live.admin` reads the request and calls these, so each rule is tested
without a server. Every refusal is a :class:`RequestError` with the HTTP status and one line saying what is
wrong and what to send instead (docs/operations.md, "The admin endpoint"): ``Content-Length`` must be ASCII
digits, at most 4 KiB; the body exactly ``{"watts": <positive finite JSON number>}`` (a JSON boolean, a
string, NaN, duplicate keys, anything else: 400).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAX_BODY_BYTES = 4096
BODY_HINT = 'send {"watts": <positive number>}'


class RequestError(Exception):
    """A request refused with ``status`` and one line saying what is wrong and what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message



def parse_content_length(values: Sequence[str], limit_bytes: int = MAX_BODY_BYTES) -> int | None:
    """The body length from the ``Content-Length`` header values (None when there is none).

    Only ASCII digits count (no sign, space inside, ``_`` or other scripts' digits); repeated headers must
    agree. Malformed: 400; over ``limit_bytes``: 413."""
    if not values:
        return None
    texts = {v.strip() for v in values}
    if len(texts) > 1:
        raise RequestError(400, f"Content-Length given {len(values)} times with different values; send one")
    (text,) = texts
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise RequestError(400, f"Content-Length {text[:20]!r} is not a non-negative integer; send the body's "
                                "length in bytes")
    length = int(text)
    if length > limit_bytes:
        raise RequestError(413, f"body of {length} bytes is over the {limit_bytes}-byte limit; {BODY_HINT}")
    return length


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number of watts")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key[:40]!r} appears twice")
        seen[key] = value
    return seen


def parse_budget_body(raw: bytes) -> float:
    """Watts from a ``PUT /budget`` body: exactly one key ``watts`` holding a positive, finite JSON number.

    A JSON boolean is not watts (Python counts ``true`` as 1), nor is a string, null, NaN or Infinity; a
    duplicate key is refused rather than letting the last one win. Any problem: :class:`RequestError` 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, f"body is not UTF-8 JSON; {BODY_HINT}") from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except RecursionError:
        raise RequestError(400, f"body is nested too deeply; {BODY_HINT}") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN/Infinity, over-long integers
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RequestError(400, f"body is not valid JSON ({detail}); {BODY_HINT}") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"body is a JSON {_json_type(data)}, not an object; {BODY_HINT}")
    extra = sorted(k for k in data if k != "watts")
    if extra:
        raise RequestError(400, f"body.{extra[0][:40]}: unknown field; {BODY_HINT}")
    if "watts" not in data:
        raise RequestError(400, f"body.watts: required field is missing; {BODY_HINT}")
    value = data["watts"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, f"body.watts: a JSON {_json_type(value)} is not watts; {BODY_HINT}")
    try:
        watts = float(value)
    except OverflowError:
        watts = math.inf
    if not math.isfinite(watts) or watts <= 0:
        raise RequestError(400, f"body.watts: {value if math.isfinite(watts) else 'too large'} is not a positive "
                                f"finite number of watts; {BODY_HINT}")
    return watts


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def bearer_token(header: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None

