"""Planner quality on the real Azure traces: ours against every baseline, under a budget that binds.

For each scenario (Azure conversation and Azure code, read in place from ../shared/data/traces and
rate-scaled so the cluster needs tens of GPUs):
1. run ``dynamo-sla`` with no budget and set the budget to ``--fraction`` (default 0.7, the rule ``simulate --trace``
   uses: sim/scenarios.py ``TRACE_BUDGET_FRACTION``) of its peak provisioned power, and the GPU pool of every run
   to the GPUs it holds at that peak (``POOL_FRACTION_OF_DYNAMO_PEAK``);
2. grid-search ``dynamo-power``'s static per-role caps (``--grid`` levels per role, from the GPU's minimum
   to its maximum limit) at that budget, as a fair, informed user would: the grid point with the best SLO
   attainment wins, ties (within ``--tie`` of the best attainment) broken by the lowest energy per output token;
3. run every policy, plus ``dynamo-power`` at TDP caps and at the best grid caps, on the same trace and budget.

Prints one JSON document: per scenario the budget, SLA, grid, each policy's metrics, and the ratios
ours / dynamo-power(TDP), ours / dynamo-power(best static), ours / oracle of energy per output token, plus
the SLO attainment comparison. Runtime on 2 cores with the defaults is stated in docs/simulator.md;
``--duration 900 --grid 3`` is a quick smoke run.

Usage: .venv/bin/python bench/planner_quality.py [--duration S] [--grid N] [--workers N] [--scenarios conv,code]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from powerplanner.sim.metrics import PolicyMetrics, summarize
from powerplanner.sim.runner import PolicyJob, compare, policy_names, run_jobs
from powerplanner.sim.scenarios import TRACE_BUDGET_FRACTION, Scenario
from trace_scenarios import PROFILE, SCENARIOS, azure_scenario, azure_trace, dynamo_sla_limits


def _energy(m: PolicyMetrics) -> float:
    return m.energy_per_output_token_j if m.energy_per_output_token_j is not None else float("inf")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def grid_search(scenario: Scenario, trace: Any, budget_watts: float, levels: int, workers: int | None,
                tie: float) -> dict[str, Any]:
    """dynamo-power at every (prefill cap, decode cap) grid point; the best by SLO attainment, then energy."""
    from powerplanner.model.profiles import load_profile
    from powerplanner.model.roles import Role

    profile = load_profile(name=scenario.profile)
    prefill_caps = profile.cap_levels(Role.PREFILL, levels)
    decode_caps = profile.cap_levels(Role.DECODE, levels)
    jobs = [
        PolicyJob("dynamo-power", trace, scenario, budget_watts, {"prefill": pc, "decode": dc},
                  label=f"dynamo-power@{pc:.0f}/{dc:.0f}", gpu_pool=scenario.gpu_pool)
        for pc in prefill_caps for dc in decode_caps
    ]
    results = run_jobs(jobs, workers=workers)
    points: list[dict[str, Any]] = []
    for job in jobs:
        m = summarize(results[job.key], scenario.sla)
        assert job.static_caps_watts is not None
        points.append({
            "prefill_cap_watts": job.static_caps_watts["prefill"],
            "decode_cap_watts": job.static_caps_watts["decode"],
            "slo_attainment": m.slo_attainment,
            "energy_per_output_token_j": m.energy_per_output_token_j,
            "seconds_over_budget": m.seconds_over_budget,
        })
    best_slo = max(p["slo_attainment"] for p in points)
    contenders = [p for p in points if p["slo_attainment"] >= best_slo - tie]
    best = min(contenders, key=lambda p: (p["energy_per_output_token_j"] or float("inf")))
    return {"levels_per_role": levels, "points": points, "best": best}


def run_scenario(name: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    rate_scale = args.rate_scale or spec["rate_scale"]
    scenario = azure_scenario(name, rate_scale, args.duration, args.fraction)
    assert scenario.trace.path is not None
    path = scenario.trace.path
    trace = azure_trace(scenario, seed=args.seed)

    # Budget and GPU pool from dynamo-sla's unconstrained peak (bench/trace_scenarios.py over sim/limits.py: the
    # rule `simulate --trace` and the headline bench use too).
    limits = dynamo_sla_limits(scenario, trace, args.fraction)
    budget_watts, note = limits.budget_watts, limits.note
    fixed = replace(scenario, budget_watts=budget_watts, budget_fraction=None, gpu_pool=limits.gpu_pool,
                    gpu_pool_fraction=None)
    grid = grid_search(fixed, trace, budget_watts, args.grid, args.workers, args.tie)
    best = grid["best"]
    best_job = PolicyJob("dynamo-power", trace, fixed, budget_watts,
                         {"prefill": best["prefill_cap_watts"], "decode": best["decode_cap_watts"]},
                         label="dynamo-power@best")
    comparison = compare(fixed, policy_names(), trace=trace, workers=args.workers, extra_jobs=[best_job])
    metrics = comparison.metrics
    ours = metrics["ours"]
    tdp = metrics["dynamo-power"]
    best_m = metrics["dynamo-power@best"]
    oracle = metrics["oracle"]
    return {
        "scenario": name,
        "trace": path,
        "rate_scale": rate_scale,
        "requests": len(trace),
        "duration_s": trace.duration_s,
        "sla": {"ttft_ms": scenario.sla.ttft_ms, "itl_ms": scenario.sla.itl_ms},
        "profile": PROFILE,
        "budget_watts": budget_watts,
        "budget_rule": note,
        "gpu_pool": limits.gpu_pool,
        "gpu_pool_rule": limits.pool_note,
        "initial_replicas": {"prefill": int(comparison.results["ours"].series.prefill_replicas[0]),
                             "decode": int(comparison.results["ours"].series.decode_replicas[0])},
        "dynamo_power_best_static_caps_watts": {"prefill": best["prefill_cap_watts"],
                                                 "decode": best["decode_cap_watts"]},
        "policies": {k: m.to_json() for k, m in metrics.items()},
        "decision_reasons": {k: dict(r.reasons) for k, r in comparison.results.items()},
        "ratios": {
            "energy_per_output_token_ours_over_dynamo_power_tdp": _ratio(_energy(ours), _energy(tdp)),
            "energy_per_output_token_ours_over_dynamo_power_best": _ratio(_energy(ours), _energy(best_m)),
            "energy_per_output_token_ours_over_oracle": _ratio(_energy(ours), _energy(oracle)),
            "slo_attainment_ours": ours.slo_attainment,
            "slo_attainment_dynamo_power_tdp": tdp.slo_attainment,
            "slo_attainment_dynamo_power_best": best_m.slo_attainment,
            "slo_attainment_oracle": oracle.slo_attainment,
            "slo_ours_at_least_dynamo_power_tdp": ours.slo_attainment >= tdp.slo_attainment,
            "slo_ours_at_least_dynamo_power_best": ours.slo_attainment >= best_m.slo_attainment,
            "ours_seconds_over_budget": ours.seconds_over_budget,
        },
        "grid": grid,
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="azure-conv,azure-code", help="comma-separated: azure-conv,azure-code")
    parser.add_argument("--duration", type=float, default=None, help="use only the first S seconds of each trace")
    parser.add_argument("--rate-scale", type=float, default=None, help="override the per-scenario rate scale")
    parser.add_argument("--grid", type=int, default=4, help="dynamo-power cap levels per role in the grid search")
    parser.add_argument("--tie", type=float, default=0.001, help="SLO attainment difference counted as a tie")
    parser.add_argument("--fraction", type=float, default=TRACE_BUDGET_FRACTION,
                        help="budget as a fraction of dynamo-sla's peak (default: the rule simulate --trace uses)")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rate scaling's thinning")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"scenarios": [run_scenario(n, SCENARIOS[n], args) for n in names]}
    out["wall_s"] = time.perf_counter() - started
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
