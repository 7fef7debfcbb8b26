"""The budget and GPU pool of one comparison, the same for every policy, and how each was obtained.

A scenario gives each as a number or as a fraction of what ``dynamo-sla`` holds at its unconstrained peak on the
same trace (power provisioned, GPUs held), so "a budget that binds" and "a cluster sized for the peak" stay
meaningful when the trace, its rate or the profile change. One probe run serves both fractions. The rules are in
docs/simulator.md ("GPU pool and cost"); ``simulate --trace`` and bench/planner_quality.py both use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from powerplanner.errors import ConfigError
from powerplanner.sim.runner import UNLIMITED_BUDGET_WATTS, PolicyJob, RunOne, run_job, run_jobs
from powerplanner.sim.scenarios import Scenario
from powerplanner.sim.types import SimResult, Trace


@dataclass(frozen=True)
class Limits:
    """What every policy of a comparison runs under."""

    budget_watts: float
    budget_note: str  # "absolute", "unlimited" or the fraction rule with dynamo-sla's peak
    gpu_pool: int | None  # None: unlimited
    pool_note: str


def resolve_budget(
    scenario: Scenario, trace: Trace, run_one: RunOne = run_job, show_progress: bool = False
) -> tuple[float, str]:
    """The scenario's budget in watts and how it was obtained (a fraction needs a ``dynamo-sla`` run first)."""
    limits = resolve_limits(scenario, trace, run_one, show_progress)
    return limits.budget_watts, limits.budget_note


def resolve_limits(
    scenario: Scenario, trace: Trace, run_one: RunOne = run_job, show_progress: bool = False
) -> Limits:
    """Budget and GPU pool. A pool in the planner overrides (``planner.gpu_pool``) holds when the scenario gives
    neither a pool nor a pool fraction; with none of them the pool is unlimited."""
    probe: SimResult | None = None
    if scenario.budget_fraction is not None or scenario.gpu_pool_fraction is not None:
        job = PolicyJob("dynamo-sla", trace, scenario, UNLIMITED_BUDGET_WATTS, label="dynamo-sla (unconstrained)")
        probe = run_jobs([job], workers=1, show_progress=show_progress, run_one=run_one)[job.key]
    budget, budget_note = _budget_from(scenario, probe)
    if scenario.gpu_pool is not None:
        return Limits(budget, budget_note, scenario.gpu_pool, "absolute")
    if probe is None or scenario.gpu_pool_fraction is None:
        pool = scenario.config(budget).planner.gpu_pool
        return Limits(budget, budget_note, pool, "planner.gpu_pool" if pool is not None else "unlimited")
    if probe.peak_gpus < 1:
        raise ConfigError(f"scenario {scenario.name}: dynamo-sla held no GPU on this trace; give the GPU pool as a "
                          "number (--gpu-pool) instead of a fraction")
    pool = max(1, math.ceil(scenario.gpu_pool_fraction * probe.peak_gpus - 1e-9))
    note = f"{scenario.gpu_pool_fraction:g} x dynamo-sla's unconstrained peak of {probe.peak_gpus}"
    return Limits(budget, budget_note, pool, note)


def _budget_from(scenario: Scenario, probe: SimResult | None) -> tuple[float, str]:
    if scenario.budget_watts is not None:
        return float(scenario.budget_watts), "absolute"
    if scenario.budget_fraction is None or probe is None:
        return UNLIMITED_BUDGET_WATTS, "unlimited"
    peak = probe.peak_provisioned_watts
    if not peak > 0:
        raise ConfigError(f"scenario {scenario.name}: dynamo-sla provisioned no power on this trace; "
                          "give the budget in watts instead of a fraction")
    budget = scenario.budget_fraction * peak
    return budget, f"{scenario.budget_fraction:g} x dynamo-sla peak provisioned ({peak:,.0f} W)"
