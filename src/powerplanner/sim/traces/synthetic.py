"""Seeded synthetic traces: a non-homogeneous Poisson process by thinning, shaped by a rate shape.

A synthetic trace stands in for a real one where only published statistics exist (the built-in traces,
:mod:`powerplanner.sim.traces.builtin`) or where a test or a scenario needs a controlled load (a step, a
burst). Its rate over time comes from :mod:`powerplanner.sim.traces.shapes`, its token lengths from
:mod:`powerplanner.sim.traces.lengths`; the same seed always gives the same trace (docs/simulator.md,
"Scenario file format").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.sim.traces.lengths import LengthDistribution
from powerplanner.sim.traces.limits import MAX_REQUESTS, span_text
from powerplanner.sim.traces.shapes import BurstShape, ConstantShape, ProductShape, RateShape, StepShape
from powerplanner.sim.types import FloatArray, Trace


def poisson_arrivals(
    rate_per_s: Callable[[FloatArray], FloatArray], duration_s: float, peak_rate_per_s: float,
    rng: np.random.Generator,
) -> FloatArray:
    """Arrivals of a non-homogeneous Poisson process on ``[0, duration_s)`` by thinning (Lewis-Shedler):
    draw a homogeneous process at the peak rate, keep each point with probability rate(t)/peak."""
    if duration_s <= 0 or peak_rate_per_s <= 0:
        return np.zeros(0, dtype=np.float64)
    expected = peak_rate_per_s * duration_s
    n = int(rng.poisson(expected))
    candidates = np.sort(rng.uniform(0.0, duration_s, size=n))
    keep = rng.uniform(0.0, 1.0, size=n) * peak_rate_per_s < rate_per_s(candidates)
    return candidates[keep]


def synthetic_trace(
    name: str,
    duration_s: float,
    mean_rate_per_s: float,
    isl: LengthDistribution,
    osl: LengthDistribution,
    shape: RateShape | None = None,
    seed: int = 0,
) -> Trace:
    """A seeded Poisson trace whose rate is ``mean_rate_per_s x shape(t)``; same seed, same trace.

    ``mean_rate_per_s`` is the base rate the shape multiplies (for a diurnal shape over whole periods it
    is also the time-average).
    """
    if duration_s <= 0 or not math.isfinite(duration_s):
        raise TraceError(f"{name}: synthetic duration_s must be a positive number (got {duration_s!r})")
    if mean_rate_per_s <= 0 or not math.isfinite(mean_rate_per_s):
        raise TraceError(f"{name}: synthetic mean rate must be a positive number of requests/s")
    if mean_rate_per_s * duration_s > MAX_REQUESTS:
        raise TraceError(f"{name}: {mean_rate_per_s:g} requests/s for {span_text(duration_s)} is about "
                         f"{mean_rate_per_s * duration_s:,.0f} requests, more than the {MAX_REQUESTS:,} a trace may "
                         "hold; lower the rate (or rate scale) or the duration")
    shape = shape or ConstantShape()
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, duration_s, 4097)
    peak_mult = float(np.max(shape.multiplier(grid)))
    # Burst edges fall between grid points; evaluate the shape at its step starts too.
    peak_mult = max(peak_mult, 1e-12)
    for extra in _shape_breakpoints(shape):
        if 0 <= extra < duration_s:
            peak_mult = max(peak_mult, float(shape.multiplier(np.asarray([extra]))[0]))
    peak = mean_rate_per_s * peak_mult
    if peak * duration_s > 4 * MAX_REQUESTS:  # thinning draws at the peak rate: a spiky shape could still explode
        raise TraceError(f"{name}: the rate shape's peak ({peak:g} requests/s) over {span_text(duration_s)} draws "
                         f"more than {4 * MAX_REQUESTS:,} candidate requests; lower the peak or the duration")

    def rate(t: FloatArray) -> FloatArray:
        return mean_rate_per_s * shape.multiplier(t)

    arrival = poisson_arrivals(rate, duration_s, peak, rng)
    if arrival.size == 0:
        arrival = np.zeros(1, dtype=np.float64)
    n = arrival.size
    return Trace(
        name=name,
        arrival_s=arrival - arrival[0],
        isl_tokens=isl.sample(rng, n),
        osl_tokens=osl.sample(rng, n),
    )


def _shape_breakpoints(shape: RateShape) -> list[float]:
    if isinstance(shape, StepShape):
        return list(shape.starts_s)
    if isinstance(shape, BurstShape):
        return list(shape.starts_s)
    if isinstance(shape, ProductShape):
        return [t for part in shape.parts for t in _shape_breakpoints(part)]
    return []

