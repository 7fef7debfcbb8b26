"""Token-length distributions of synthetic requests: fitted to published statistics, fixed, or resampled.

Each is a frozen value with ``sample(rng, n)``; the seeded generator (:mod:`powerplanner.sim.traces.synthetic`)
draws a trace's input and output lengths from two of them (docs/simulator.md, "Scenario file format").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.sim.types import IntArray

_Z99 = 2.3263478740408408  # standard normal quantile at 0.99



@dataclass(frozen=True)
class LognormalLengths:
    """Token lengths from a lognormal fitted to a published mean and 99th percentile.

    With ``X = exp(mu + sigma Z)``: ``mean = exp(mu + sigma^2/2)`` and ``p99 = exp(mu + z99 sigma)``, so
    ``sigma^2/2 - z99 sigma + ln(p99/mean) = 0``; the smaller root is taken (the narrower distribution).
    Samples are rounded and clipped to ``[min_tokens, max_tokens]``.
    """

    mean_tokens: float
    p99_tokens: float
    min_tokens: int = 1
    max_tokens: int = 32768

    def __post_init__(self) -> None:
        if not (self.mean_tokens > 0 and self.p99_tokens > 0):
            raise TraceError("lognormal lengths: mean and p99 must be positive")
        ratio = math.log(self.p99_tokens / self.mean_tokens)
        if ratio <= 0:
            raise TraceError(
                f"lognormal lengths: p99 ({self.p99_tokens:g}) must exceed the mean ({self.mean_tokens:g})"
            )
        if 2 * ratio > _Z99**2:
            raise TraceError(
                f"lognormal lengths: p99/mean = {self.p99_tokens / self.mean_tokens:.1f} is too skewed for a "
                f"lognormal (at most {math.exp(_Z99**2 / 2):.1f}); lower p99 or use empirical lengths"
            )
        if not (1 <= self.min_tokens <= self.max_tokens):
            raise TraceError("lognormal lengths: need 1 <= min_tokens <= max_tokens")

    @property
    def sigma(self) -> float:
        return _Z99 - math.sqrt(_Z99**2 - 2 * math.log(self.p99_tokens / self.mean_tokens))

    @property
    def mu(self) -> float:
        return math.log(self.mean_tokens) - self.sigma**2 / 2

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        raw = rng.lognormal(self.mu, self.sigma, size=n)
        return np.clip(np.rint(raw), self.min_tokens, self.max_tokens).astype(np.int64)


@dataclass(frozen=True)
class FixedLengths:
    """Every request has the same length (handy for tests and profile checks)."""

    tokens: int

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise TraceError("fixed lengths: tokens must be >= 1")

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True)
class EmpiricalLengths:
    """Resample lengths observed in a real trace (keeps their exact distribution, loses nothing to a fit)."""

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.values or min(self.values) < 1:
            raise TraceError("empirical lengths: need at least one value, all >= 1")

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, replace=True)


LengthDistribution = LognormalLengths | FixedLengths | EmpiricalLengths
