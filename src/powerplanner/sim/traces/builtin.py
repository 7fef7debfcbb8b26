"""The built-in traces: generated in code from the published statistics of the Azure LLM inference traces.

The project ships no third-party trace; ``default`` is a stand-in built from the Azure conversation trace's
statistics (``AZURE_CONV_STATS``), so `powerplanner simulate` runs with nothing downloaded
(docs/simulator.md, "Traces").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from powerplanner.errors import TraceError
from powerplanner.sim.traces.lengths import LognormalLengths
from powerplanner.sim.traces.shapes import BurstShape, DiurnalShape, ProductShape, RateShape
from powerplanner.sim.traces.synthetic import synthetic_trace
from powerplanner.sim.types import Trace


@dataclass(frozen=True)
class TraceStats:
    """Published statistics of a trace: what a synthetic stand-in is generated from."""

    mean_rate_per_s: float
    isl_mean_tokens: float
    isl_p99_tokens: float
    osl_mean_tokens: float
    osl_p99_tokens: float
    source: str


AZURE_CONV_STATS = TraceStats(
    mean_rate_per_s=5.53,
    isl_mean_tokens=1155.0,
    isl_p99_tokens=4142.0,
    osl_mean_tokens=211.0,
    osl_p99_tokens=601.0,
    source="Azure LLM inference trace 2023, conversation (Azure/AzurePublicDataset; Patel et al., Splitwise, "
    "ISCA 2024): 19,366 requests in ~1 h, mean 5.53 req/s, input mean 1,155 (p99 4,142), output mean 211 "
    "(p99 601); figures as listed in ../shared/data/traces/SOURCES.md",
)
AZURE_CODE_STATS = TraceStats(
    mean_rate_per_s=2.57,
    isl_mean_tokens=2048.0,
    isl_p99_tokens=7436.0,
    osl_mean_tokens=27.9,
    osl_p99_tokens=251.0,
    source="Azure LLM inference trace 2023, code (Azure/AzurePublicDataset): 8,819 requests, mean 2.57 req/s, "
    "input mean 2,048 (p99 7,436), output mean 27.9 (p99 251)",
)

BUILTIN_TRACE_NAMES = ("default", "azure-conv-like", "azure-code-like")


def builtin_trace(
    name: str = "default", duration_s: float = 1800.0, rate_scale: float = 1.0, seed: int = 0
) -> Trace:
    """A trace generated in code from published statistics; deterministic for a given seed.

    - ``default`` / ``azure-conv-like``: Azure conversation statistics (``AZURE_CONV_STATS``), lengths
      lognormal fitted to mean and p99, with a compressed diurnal swing (one period over the trace,
      amplitude 0.35, starting at the trough so load rises then falls) and two 2-minute bursts at 1.5x,
      so the planner must scale up, hit the budget, and scale down within one run. Per-minute peak/mean
      is ~1.7 (the real conv trace: 1.5; the real code trace: 4.2). The shape is
      normalised so the time-averaged rate is ``rate_scale`` x the published mean rate.
    - ``azure-code-like``: the code trace's statistics, steadier base with three 2x bursts.
    """
    if name in ("default", "azure-conv-like"):
        stats = AZURE_CONV_STATS
        shape: RateShape = ProductShape(
            (
                DiurnalShape(period_s=duration_s, amplitude=0.35, phase=-0.25),
                BurstShape(starts_s=(0.35 * duration_s, 0.7 * duration_s), width_s=min(120.0, 0.1 * duration_s),
                           factor=1.5),
            )
        )
    elif name == "azure-code-like":
        stats = AZURE_CODE_STATS
        shape = BurstShape(
            starts_s=(0.2 * duration_s, 0.5 * duration_s, 0.8 * duration_s),
            width_s=min(120.0, 0.08 * duration_s), factor=2.0,
        )
    else:
        raise TraceError(f"unknown built-in trace {name!r}; use one of: {', '.join(BUILTIN_TRACE_NAMES)}")
    if not rate_scale > 0:
        raise TraceError(f"rate scale must be positive (got {rate_scale:g})")
    # Normalise so the time-averaged rate equals the published mean (times rate_scale).
    mean_multiplier = float(np.mean(shape.multiplier(np.linspace(0.0, duration_s, 20001))))
    return synthetic_trace(
        name=name,
        duration_s=duration_s,
        mean_rate_per_s=stats.mean_rate_per_s * rate_scale / mean_multiplier,
        isl=LognormalLengths(stats.isl_mean_tokens, stats.isl_p99_tokens),
        osl=LognormalLengths(stats.osl_mean_tokens, stats.osl_p99_tokens),
        shape=shape,
        seed=seed,
    )
