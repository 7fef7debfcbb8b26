"""Summary metrics of one policy's run, judged against the SLA.

Attainment is counted per request over ALL requests of the trace: a request that did not finish
by the end of the run counts as a miss for TTFT, ITL and both, so a policy cannot look better by
leaving work undone. Latency percentiles are over completed requests (``None`` when none completed).
A completed request with a single output token has no inter-token gap; the engine reports its ITL as
NaN (or 0) and it counts as meeting the ITL target. A request refused for exceeding the profile's context
window (``refused``) is left out of every attainment and counted apart: its refusal depends only on its length
and the profile, the same under every policy, so counting it as a miss would only lower every policy alike (on
Azure code on llama2-70b it would cap every policy at 0.857 and hide the comparison at 90%).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from powerplanner.sim.cost import Prices, cost_per_mtok_usd
from powerplanner.sim.types import FloatArray, SimResult

METRIC_NAMES: tuple[str, ...] = (
    "slo_attainment",
    "ttft_attainment",
    "itl_attainment",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "energy_kwh",
    "energy_per_output_token_j",
    "gpu_hours",
    "peak_gpus",
    "cost_per_mtok_usd",
    "peak_provisioned_watts",
    "peak_drawn_watts",
    "seconds_over_budget",
    "requests",
    "completed",
    "refused",
    "comparable",
    "not_comparable_reason",
    "decode_queue_max",
)
"""The keys of each policy's entry in results.json, in this order (the public schema)."""

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class SlaTargets:
    """Per-request latency targets (milliseconds)."""

    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class PolicyMetrics:
    """One row of the comparison table and one entry of results.json."""

    slo_attainment: float
    ttft_attainment: float
    itl_attainment: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    energy_kwh: float
    energy_per_output_token_j: float | None
    gpu_hours: float
    peak_gpus: int
    cost_per_mtok_usd: float | None  # GPU-hours and energy at the comparison's prices (sim/cost.py)
    peak_provisioned_watts: float
    peak_drawn_watts: float
    seconds_over_budget: float
    requests: int
    completed: int
    refused: int = 0  # longer than the profile's context window; left out of the attainments
    comparable: bool = True  # False: it went over the budget, so its SLO and energy were bought with more power
    not_comparable_reason: str | None = None
    decode_queue_max: int = 0  # most requests waiting at once for decode KV room (a KV-bound decode shows here)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (no NaN: missing figures are ``null``), keys in ``METRIC_NAMES`` order."""
        raw = asdict(self)
        return {name: _clean(raw[name]) for name in METRIC_NAMES}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _percentile(values: FloatArray, q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else None


def summarize(result: SimResult, sla: SlaTargets, prices: Prices | None = None) -> PolicyMetrics:
    """Turn a :class:`SimResult` into the summary metrics, counting unfinished requests as misses; cost at
    ``prices`` (default: :class:`~powerplanner.sim.cost.Prices`' defaults, with their sources)."""
    requests = max(int(result.requests), 0)
    ttft = np.asarray(result.ttft_ms, dtype=np.float64)
    itl = np.asarray(result.itl_ms, dtype=np.float64)
    n = min(ttft.size, itl.size)  # both cover the completed requests, in the same order
    ttft_ok = np.isfinite(ttft[:n]) & (ttft[:n] <= sla.ttft_ms)
    # No inter-token gap (one output token) means nothing could violate the ITL target.
    itl_ok = ~np.isfinite(itl[:n]) | (itl[:n] <= sla.itl_ms)
    both_ok = ttft_ok & itl_ok
    servable = max(requests - int(result.refused), 0)  # refused requests are counted apart (module docstring)
    denom = servable if servable > 0 else 1
    # Over the budget outside the grace after a budget cut (the time cuts take to apply, granted to every policy).
    over_s = max(0.0, float(result.seconds_over_budget) - float(result.seconds_over_budget_after_cut))
    reason = None if over_s <= 0.0 else f"provisioned power above the budget for {over_s:,.0f} s"
    energy_j = float(result.energy_j)
    gpu_hours = float(result.gpu_seconds) / 3600.0
    return PolicyMetrics(
        slo_attainment=float(np.sum(both_ok)) / denom if servable else 0.0,
        ttft_attainment=float(np.sum(ttft_ok)) / denom if servable else 0.0,
        itl_attainment=float(np.sum(itl_ok)) / denom if servable else 0.0,
        ttft_p50_ms=_percentile(ttft, 50),
        ttft_p99_ms=_percentile(ttft, 99),
        itl_p50_ms=_percentile(itl, 50),
        itl_p99_ms=_percentile(itl, 99),
        energy_kwh=energy_j / J_PER_KWH,
        energy_per_output_token_j=energy_j / result.output_tokens if result.output_tokens > 0 else None,
        gpu_hours=gpu_hours,
        peak_gpus=int(result.peak_gpus),
        cost_per_mtok_usd=cost_per_mtok_usd(gpu_hours, energy_j / J_PER_KWH, int(result.output_tokens),
                                            prices or Prices()),
        peak_provisioned_watts=float(result.peak_provisioned_watts),
        peak_drawn_watts=float(result.peak_drawn_watts),
        seconds_over_budget=float(result.seconds_over_budget),
        requests=requests,
        completed=int(result.completed),
        refused=int(result.refused),
        comparable=reason is None,
        not_comparable_reason=reason,
        decode_queue_max=int(result.decode_queue_max),
    )
