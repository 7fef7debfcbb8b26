"""Rate shapes: multipliers of a synthetic trace's mean rate over time (constant, diurnal, steps, bursts and
their products).

Each is a frozen value with ``multiplier(t_s)`` over an array of times; the generator
(:mod:`powerplanner.sim.traces.synthetic`) thins a Poisson process with it (docs/simulator.md, "Scenario file
format").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.sim.types import FloatArray


@dataclass(frozen=True)
class ConstantShape:
    """A homogeneous Poisson process."""

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        return np.ones_like(t_s)


@dataclass(frozen=True)
class DiurnalShape:
    """``1 + amplitude * sin(2 pi (t / period + phase))``: the day/night swing, compressed to ``period_s``
    so a short simulation still sees the planner follow a rise and a fall."""

    period_s: float = 3600.0
    amplitude: float = 0.5
    phase: float = 0.0

    def __post_init__(self) -> None:
        if self.period_s <= 0 or not (0 <= self.amplitude < 1):
            raise TraceError("diurnal shape: period_s must be > 0 and amplitude in [0, 1)")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        return 1.0 + self.amplitude * np.sin(2 * np.pi * (t_s / self.period_s + self.phase))


@dataclass(frozen=True)
class StepShape:
    """Piecewise-constant multipliers: ``levels[i]`` from ``starts_s[i]`` (the first start should be 0)."""

    starts_s: tuple[float, ...] = (0.0,)
    levels: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if len(self.starts_s) != len(self.levels) or not self.levels:
            raise TraceError("step shape: starts_s and levels must have the same, non-zero length")
        if list(self.starts_s) != sorted(self.starts_s) or min(self.levels) < 0:
            raise TraceError("step shape: starts_s must be ascending and levels >= 0")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        idx = np.searchsorted(np.asarray(self.starts_s), t_s, side="right") - 1
        levels = np.asarray(self.levels, dtype=np.float64)
        return np.where(idx >= 0, levels[np.clip(idx, 0, None)], levels[0])


@dataclass(frozen=True)
class BurstShape:
    """A base multiplier with rectangular bursts: ``factor`` times the base during
    ``[start, start + width)`` for each start. Flash crowds are what stress a planner's budget logic."""

    starts_s: tuple[float, ...] = ()
    width_s: float = 60.0
    factor: float = 3.0
    base: float = 1.0

    def __post_init__(self) -> None:
        if self.width_s <= 0 or self.factor < 0 or self.base < 0:
            raise TraceError("burst shape: width_s must be > 0, factor and base >= 0")

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        out = np.full_like(t_s, self.base)
        for start in self.starts_s:
            inside = (t_s >= start) & (t_s < start + self.width_s)
            out = np.where(inside, self.base * self.factor, out)
        return out


@dataclass(frozen=True)
class ProductShape:
    """Several shapes multiplied together (e.g. diurnal x bursts)."""

    parts: tuple[RateShape, ...]

    def multiplier(self, t_s: FloatArray) -> FloatArray:
        out = np.ones_like(t_s)
        for part in self.parts:
            out = out * part.multiplier(t_s)
        return out


RateShape = ConstantShape | DiurnalShape | StepShape | BurstShape | ProductShape
