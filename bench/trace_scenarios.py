"""What the trace benchmarks share: the Azure scenarios, how their traces are loaded, and the budget and pool rule.

bench/planner_quality.py and bench/headline.py both import this (a script's own folder is on ``sys.path``). The
budget rule: run ``dynamo-sla`` unconstrained on the scenario's trace; the budget is ``BUDGET_FRACTION`` of its
peak provisioned power, and the GPU pool is the GPUs it held at its peak (the pool a Dynamo user would have
bought for this trace: sized by a baseline, never by ours). docs/simulator.md, "Headline", states the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from powerplanner.sim.limits import resolve_limits
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.scenarios import POOL_FRACTION_OF_DYNAMO_PEAK, TRACE_BUDGET_FRACTION, Scenario, TraceSpec
from powerplanner.sim.types import Trace

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces"
BUDGET_FRACTION = TRACE_BUDGET_FRACTION  # of dynamo-sla's unconstrained peak provisioned power (sim/scenarios.py)

# Rate scales chosen so dynamo-sla needs tens of GPUs at the peaks with llama2-70b on H100 TP4
# (conv x10: ~55 req/s, ~20 TP4 replicas; code x8: ~21 req/s with 2k-token prompts).
# SLA targets: 500 ms / 50 ms (the config default) for conversation. The code trace's prompts are long
# (mean 2,048, p99 7,436 tokens): on llama2-70b-h100-tp4 a lone 7,436-token prefill takes 0.73 s at TDP
# (~0.95 s at a 350 W cap), so a 500 ms TTFT would be missed by the longest prompts on an idle cluster;
# its TTFT target is 1,000 ms, ITL 50 ms.
SCENARIOS: dict[str, dict[str, Any]] = {
    "azure-conv": {"file": "AzureLLMInferenceTrace_conv.csv", "rate_scale": 10.0,
                   "sla": SlaTargets(ttft_ms=500.0, itl_ms=50.0)},
    "azure-code": {"file": "AzureLLMInferenceTrace_code.csv", "rate_scale": 8.0,
                   "sla": SlaTargets(ttft_ms=1000.0, itl_ms=50.0)},
}
PLANNER = {"adjustment_interval_s": 60.0, "cap_interval_s": 5.0}
PROFILE = "llama2-70b-h100-tp4"


def azure_scenario(name: str, rate_scale: float | None = None, duration_s: float | None = None,
                   fraction: float = BUDGET_FRACTION) -> Scenario:
    """The Azure scenario ``name`` (a key of SCENARIOS), read in place from ../shared/data/traces."""
    spec = SCENARIOS[name]
    return Scenario(
        name=name,
        trace=TraceSpec(path=str(TRACES / spec["file"])),
        sla=spec["sla"],
        rate_scale=rate_scale or spec["rate_scale"],
        duration_s=duration_s,
        budget_fraction=fraction,
        gpu_pool_fraction=POOL_FRACTION_OF_DYNAMO_PEAK,
        profile=PROFILE,
        planner=dict(PLANNER),
    )


def azure_trace(scenario: Scenario, seed: int = 0) -> Trace:
    """The scenario's requests, read in place, cut to its duration and rate-scaled (seeded): the scenario's own
    loader (sim/scenarios.py, ``Scenario.load_trace``), never a second reading of the CSV."""
    return replace(scenario, seed=seed).load_trace()


@dataclass(frozen=True)
class Limits:
    """A scenario's budget and GPU pool, and how they were obtained."""

    budget_watts: float
    gpu_pool: int | None
    note: str


def dynamo_sla_limits(scenario: Scenario, trace: Trace, fraction: float = BUDGET_FRACTION) -> Limits:
    """Budget = ``fraction`` x dynamo-sla's unconstrained peak provisioned power; pool = its peak GPUs. The rule is
    sim/limits.py's (the one `simulate --trace` uses), never a second copy."""
    probe = replace(scenario, budget_watts=None, budget_fraction=fraction, gpu_pool=None,
                    gpu_pool_fraction=POOL_FRACTION_OF_DYNAMO_PEAK)
    limits = resolve_limits(probe, trace)
    return Limits(budget_watts=limits.budget_watts, gpu_pool=limits.gpu_pool,
                  note=f"{limits.budget_note}; pool = {limits.pool_note}")
