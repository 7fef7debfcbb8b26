"""What a trace may hold: the bounds every reader, generator and operation checks before it allocates.

A trace is user input (a file, a scenario's synthetic spec, a rate scale), so each bound turns a mistake that
would run for hours or exhaust memory into one :class:`~powerplanner.errors.TraceError` line; docs/simulator.md
("Traces", "Span and gaps") states them for users.
"""

from __future__ import annotations

MAX_TRACE_BYTES = 1024**3
"""Largest trace file read (1 GiB, tens of millions of requests: more than the simulator replays in useful
time); it also stops a file that never ends."""

MAX_LINE_CHARS = 1024 * 1024
"""Longest line of a trace file: one request is well under a kilobyte (a Mooncake line with its block hashes a
few); a longer line is not a trace (``/dev/zero``-like data, a binary file)."""

MAX_TOKENS_PER_REQUEST = 10_000_000
"""Largest token count of one request: ten times the longest context window offered today; more is a corrupt
field (and would overflow the simulator's 64-bit counters)."""

MAX_REQUESTS = 10_000_000
"""Most requests a generated or rate-scaled trace may hold (about 3 GB of simulator state)."""

MAX_SPAN_S = 8 * 86400.0
"""Longest trace the simulator replays (8 days: a week-long production trace fits). The simulator ticks the
planner every cap interval through the whole span, idle or not (17,280 ticks per day at 5 s), so a trace whose
timestamps are in the wrong unit or that holds two requests years apart would run for hours or days."""

MAX_GAP_S = 24 * 3600.0
"""Longest silence between two consecutive requests (24 h): a longer one is traces joined together or a bad
timestamp, and replaying it only ticks an idle cluster."""


def span_text(seconds: float) -> str:
    """A duration as a person reads it: ``45 s``, ``3.5 h``, ``12.0 days``, ``3.0 years``."""
    if seconds >= 365.25 * 86400:
        return f"{seconds / (365.25 * 86400):,.1f} years"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:,.0f} s"
