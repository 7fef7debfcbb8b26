"""What is done to a trace once it is read or generated: building it from plain sequences, rate scaling, gap
compression, cutting to a duration, and the extent check that keeps a replay bounded.

Every operation returns a new :class:`~powerplanner.sim.types.Trace` and refuses, with one
:class:`~powerplanner.errors.TraceError` line naming the option that fixes it, a result the simulator could not
replay in useful time (docs/simulator.md, "Span and gaps", "Rate scaling").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.sim.traces.limits import MAX_GAP_S, MAX_REQUESTS, MAX_SPAN_S, span_text
from powerplanner.sim.types import FloatArray, IntArray, Trace


def make_trace(name: str, arrival_s: Iterable[float], isl_tokens: Iterable[int], osl_tokens: Iterable[int]) -> Trace:
    """Build a trace from plain sequences, checking the invariants the simulator relies on.

    Arrivals are shifted so the first request arrives at 0. Raises :class:`TraceError` when the trace is
    empty, unsorted, or has non-positive lengths (a programming error in a generator, or bad user arrays).
    """
    arrival = np.asarray(list(arrival_s) if not isinstance(arrival_s, np.ndarray) else arrival_s, dtype=np.float64)
    isl = np.asarray(list(isl_tokens) if not isinstance(isl_tokens, np.ndarray) else isl_tokens, dtype=np.int64)
    osl = np.asarray(list(osl_tokens) if not isinstance(osl_tokens, np.ndarray) else osl_tokens, dtype=np.int64)
    if not (arrival.shape == isl.shape == osl.shape) or arrival.ndim != 1:
        raise TraceError(f"{name}: arrival, input-length and output-length arrays must have the same length")
    if arrival.size == 0:
        raise TraceError(f"{name}: the trace holds no requests; give a trace with at least one request")
    if not np.all(np.isfinite(arrival)):
        raise TraceError(f"{name}: arrival times must be finite numbers")
    if arrival.size > 1 and np.any(np.diff(arrival) < 0):
        i = int(np.argmax(np.diff(arrival) < 0)) + 1
        raise TraceError(f"{name}: request {i} arrives before request {i - 1}; sort the trace by arrival time")
    if np.any(isl <= 0) or np.any(osl <= 0):
        i = int(np.argmax((isl <= 0) | (osl <= 0)))
        raise TraceError(f"{name}: request {i} has a non-positive token length; lengths must be >= 1")
    arrival = arrival - arrival[0]
    return Trace(name=name, arrival_s=arrival, isl_tokens=isl, osl_tokens=osl)


def scale_rate(trace: Trace, k: float, seed: int = 0, spread_s: float = 60.0) -> Trace:
    """Multiply the request rate by ``k`` while keeping the trace's shape and duration.

    The trace is superposed with time-shifted copies of itself: copy ``i`` is shifted by
    ``i x spread_s / ceil(k)`` seconds and wrapped around the trace's span, so each copy keeps the
    original's minute-scale shape (diurnal swings, bursts, idle gaps) while the copies' individual
    arrivals interleave instead of landing on the same instants. A non-integer ``k`` thins the last copy
    (each of its requests kept with probability ``k - floor(k)``, seeded), so the count is about
    ``k x len(trace)``. ``k < 1`` just thins. Token lengths travel with their requests.
    """
    if not (k > 0 and math.isfinite(k)):
        raise TraceError(f"rate scale must be a positive number (got {k!r}); e.g. --rate-scale 2.5")
    if k == 1:
        return trace
    n = len(trace)
    if k * n > MAX_REQUESTS:
        raise TraceError(f"{trace.name}: rate scale {k:g} makes about {k * n:,.0f} requests, more than the "
                         f"{MAX_REQUESTS:,} a trace may hold; lower --rate-scale or replay less with --duration-s")
    whole = math.floor(k)
    frac = k - whole
    copies = whole + (1 if frac > 1e-12 else 0)
    span = trace.duration_s + (trace.duration_s / n if n > 1 else 1.0)  # wrap period: one mean gap past the end
    shift_step = min(spread_s, span) / copies
    rng = np.random.default_rng(seed)
    parts_t: list[FloatArray] = []
    parts_i: list[IntArray] = []
    parts_o: list[IntArray] = []
    for i in range(copies):
        t = trace.arrival_s
        isl = trace.isl_tokens
        osl = trace.osl_tokens
        if i == whole:  # the fractional copy
            keep = rng.uniform(size=n) < frac
            t, isl, osl = t[keep], isl[keep], osl[keep]
        if i:
            t = np.mod(t + i * shift_step, span)
        parts_t.append(t)
        parts_i.append(isl)
        parts_o.append(osl)
    arrival = np.concatenate(parts_t)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    if arrival.size == 0:
        raise TraceError(f"{trace.name}: rate scale {k:g} leaves no requests; use a larger --rate-scale")
    return Trace(
        name=f"{trace.name}x{k:g}",
        arrival_s=arrival - arrival[0],
        isl_tokens=np.concatenate(parts_i)[order],
        osl_tokens=np.concatenate(parts_o)[order],
    )


def compress_gaps(trace: Trace, max_gap_s: float) -> Trace:
    """The trace with every silence between consecutive requests longer than ``max_gap_s`` shortened to it
    (``--compress-gaps-s``): idle nights or traces joined together replay without ticking an idle cluster for
    hours. Requests keep their order and lengths; only the arrivals after a long gap move earlier."""
    if not (max_gap_s > 0 and math.isfinite(max_gap_s)):
        raise TraceError(f"gap compression must be a positive number of seconds (got {max_gap_s!r}); "
                         "e.g. --compress-gaps-s 60")
    gaps = np.diff(trace.arrival_s)
    if gaps.size == 0 or float(np.max(gaps)) <= max_gap_s:
        return trace
    arrival = np.concatenate(([0.0], np.cumsum(np.minimum(gaps, max_gap_s))))
    return Trace(trace.name, arrival, trace.isl_tokens, trace.osl_tokens)


def check_extent(trace: Trace, source: str, *, max_span_s: float = MAX_SPAN_S, max_gap_s: float = MAX_GAP_S) -> None:
    """Refuse a trace the simulator would replay for hours on end (it ticks through every second of the span):
    a silence between two requests over ``max_gap_s``, or a span over ``max_span_s``. The line names the
    figure and the options that fix it (``--compress-gaps-s``, ``--duration-s``)."""
    if len(trace) > 1:
        gaps = np.diff(trace.arrival_s)
        i = int(np.argmax(gaps))
        if float(gaps[i]) > max_gap_s:
            raise TraceError(
                f"{source}: requests {i + 1} and {i + 2} (in arrival order) are {span_text(float(gaps[i]))} apart, "
                f"more than the {span_text(max_gap_s)} of silence a trace may hold (traces joined together, or "
                "timestamps in the wrong unit?); pass --compress-gaps-s 60 to shorten every gap to 60 s, or "
                "--duration-s to replay only the start")
    if trace.duration_s > max_span_s:
        raise TraceError(
            f"{source}: spans {span_text(trace.duration_s)} from its first request to its last, more than the "
            f"{span_text(max_span_s)} the simulator replays (it ticks through every second); pass --duration-s "
            "to replay only the start, or check the timestamps' unit (Mooncake: milliseconds)")


def truncate(trace: Trace, duration_s: float) -> Trace:
    """The requests arriving before ``duration_s`` (a scenario's duration limit)."""
    if duration_s <= 0:
        raise TraceError(f"duration limit must be positive (got {duration_s:g} s)")
    n = int(np.searchsorted(trace.arrival_s, duration_s, side="left"))
    if n == 0:
        raise TraceError(f"{trace.name}: no request arrives within the first {duration_s:g} s; raise the duration")
    return Trace(trace.name, trace.arrival_s[:n], trace.isl_tokens[:n], trace.osl_tokens[:n])

