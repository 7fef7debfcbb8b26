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

from powerplanner.model.roles import Role
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.runner import UNLIMITED_BUDGET_WATTS, PolicyJob, run_jobs
from powerplanner.sim.scenarios import Scenario, TraceSpec
from powerplanner.sim.traces import read_azure_csv, scale_rate, truncate
from powerplanner.sim.types import SimResult, Trace

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces"
BUDGET_FRACTION = 0.7  # of dynamo-sla's unconstrained peak provisioned power: a budget that binds at the peaks

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
        profile=PROFILE,
        planner=dict(PLANNER),
    )


def azure_trace(scenario: Scenario, seed: int = 0) -> Trace:
    """The scenario's requests: the CSV, cut to its duration, rate-scaled (seeded thinning or replication)."""
    assert scenario.trace.path is not None
    trace = read_azure_csv(Path(scenario.trace.path))
    if scenario.duration_s:
        trace = truncate(trace, scenario.duration_s)
    return scale_rate(trace, scenario.rate_scale, seed=seed)


@dataclass(frozen=True)
class Limits:
    """A scenario's budget and GPU pool, and how they were obtained."""

    budget_watts: float
    gpu_pool: int
    note: str


def peak_gpus(result: SimResult, scenario: Scenario) -> int:
    """The most GPUs the run held at once (ready, starting and draining replicas)."""
    from powerplanner.model.profiles import load_profile

    profile = load_profile(name=scenario.profile)
    series = result.series
    held = (series.prefill_replicas * profile.gpus_per_replica(Role.PREFILL)
            + series.decode_replicas * profile.gpus_per_replica(Role.DECODE))
    return int(held.max()) if held.size else 0


def dynamo_sla_limits(scenario: Scenario, trace: Trace, fraction: float = BUDGET_FRACTION) -> Limits:
    """Budget = ``fraction`` x dynamo-sla's unconstrained peak provisioned power; pool = its peak GPUs."""
    unbounded = replace(scenario, budget_watts=None, budget_fraction=None)
    probe = PolicyJob("dynamo-sla", trace, unbounded, UNLIMITED_BUDGET_WATTS, label="dynamo-sla (unconstrained)")
    result = run_jobs([probe], workers=1)[probe.key]
    peak = result.peak_provisioned_watts
    if not peak > 0:
        raise SystemExit(f"scenario {scenario.name}: dynamo-sla provisioned no power on this trace")
    gpus = max(1, peak_gpus(result, scenario))
    note = (f"{fraction:g} x dynamo-sla peak provisioned ({peak:,.0f} W); pool = its peak GPUs ({gpus})")
    return Limits(budget_watts=fraction * peak, gpu_pool=gpus, note=note)
