"""The headline: capacity under a binding budget, and energy at equal SLO, ours against every baseline.

Per scenario (Azure conversation x10, Azure code x8, the built-in default x4) and per plant (the planner's
profile, then every preset of model/plant.py's registry), with one budget and GPU pool per scenario
(bench/trace_scenarios.py: 0.7 x dynamo-sla's unconstrained peak provisioned power, pool = its peak GPUs,
measured once with plant = profile at the scenario's own rate scale):

- **Capacity**: the largest rate scale (x the scenario's trace) at which a policy keeps >= 90% SLO attainment
  with 0 s over the budget (a run over the budget does not count as serving under it), by bracketing (x2 from
  the scenario's rate) and geometric bisection to ``--tol`` (2%), within [rate/16, rate x 4].
  ``dynamo-power`` runs at TDP caps and at every point of a static-cap grid (``--grid`` levels per role, the
  GPU's minimum to maximum limit); ``dynamo-power@best`` is the grid point with the largest capacity (ties: the
  least energy per token at its capacity).
- **Energy at equal SLO**: at the scenario's rate, a slack budget (the pool at the GPU's maximum limit: it
  cannot bind) and the same pool, each policy's over-provisioning knob at the cheapest value reaching 90% SLO
  attainment: ours' ``planner.target_utilization`` (searched down from 1.0 to 0.3), the baselines'
  ``planner.baseline_replica_headroom`` (up from 1.0 to 4.0; ``dynamo-power@best`` at the best grid caps).
  Energy per output token and cost per million output tokens (sim/cost.py's default prices) at that knob.
- **Capacity at the knobs**: capacity again, each policy at the knob the energy search found (one procedure for
  every policy: no policy is tuned alone), since at its defaults a policy may meet 90% at no rate.

``null`` where a policy reaches 90% nowhere in the range. Ratios are ours / baseline. The oracle (ours told
the true load) is left out: it is no baseline. The full run's wall time on 2 cores is in docs/simulator.md
("Headline"). ``--quick`` cuts: the first 600 s of each trace (full: whole traces, the default's 1,800 s; the
built-in trace's diurnal swing is then compressed into 600 s), bisection to 5% (full: 2%), a 2x2 grid (the
GPU's minimum and maximum limit per role; full: 4x4) and only plant = profile (full: every preset too).

The last line of stdout is one JSON document: ``{"runs": [...], ...}`` (docs/simulator.md, "Headline").

Usage: .venv/bin/python bench/headline.py [--quick] [--plant SPEC] [--scenarios azure-conv,azure-code,default]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from powerplanner.errors import UserError
from powerplanner.model.plant import PROFILE_PLANT, parse_plant, plant_presets
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.sim.cost import Prices, cost_per_mtok_usd
from powerplanner.sim.headline import ThresholdSearch, ratio, run_searches
from powerplanner.sim.metrics import summarize
from powerplanner.sim.runner import PolicyJob, policy_names, run_jobs
from powerplanner.sim.scenarios import Scenario, builtin_scenarios
from powerplanner.sim.types import Trace
from trace_scenarios import SCENARIOS, azure_scenario, dynamo_sla_limits

SLO_GOAL = 0.9
OURS = "ours"
BEST = "dynamo-power@best"
SCENARIO_NAMES = (*SCENARIOS, "default")


@dataclass(frozen=True)
class Mode:
    duration_s: float | None  # None: whole traces (the default scenario's own 1,800 s)
    tol: float
    grid: int
    plants: int | None  # how many plants of the list (profile first); None: all


FULL = Mode(duration_s=None, tol=0.02, grid=4, plants=None)
QUICK = Mode(duration_s=600.0, tol=0.05, grid=2, plants=1)


@dataclass(frozen=True)
class Outcome:
    slo: float
    over_s: float
    j_per_token: float | None
    cost_per_mtok: float | None


@dataclass(frozen=True)
class Arm:
    """One policy as the bench runs it: a registered policy, maybe at static caps, under a label."""

    label: str
    policy: str
    caps: tuple[float, float] | None = None  # (prefill, decode) W per GPU
    planner: tuple[tuple[str, float], ...] = ()  # planner overrides (a knob)


class Runner:
    """Runs probes of one scenario and plant in parallel batches, one trace per rate scale (cached)."""

    def __init__(self, scenario: Scenario, workers: int | None) -> None:
        self.scenario = scenario
        self.workers = workers
        self._traces: dict[float, Trace] = {}
        self.runs = 0
        self.requests = 0  # simulated, over all runs
        self.simulation_s = 0.0  # the runs' own wall times, summed (what 2 idle cores divide by 2)

    def trace(self, rate_scale: float) -> Trace:
        if rate_scale not in self._traces:
            self._traces[rate_scale] = replace(self.scenario, rate_scale=rate_scale).load_trace()
        return self._traces[rate_scale]

    def batch(self, probes: list[tuple[Arm, float, float, dict[str, float]]]) -> list[Outcome]:
        """(arm, rate scale, budget W, planner overrides) -> outcome, in order."""
        wanted = {rate for _, rate, _, _ in probes}  # keep only this batch's traces: a search rarely repeats a rate
        self._traces = {r: t for r, t in self._traces.items() if r in wanted}
        jobs = []
        for i, (arm, rate, budget, overrides) in enumerate(probes):
            planner = {**self.scenario.planner, **dict(arm.planner), **overrides}
            scenario = replace(self.scenario, rate_scale=rate, planner=planner)
            caps = {"prefill": arm.caps[0], "decode": arm.caps[1]} if arm.caps else None
            jobs.append(PolicyJob(arm.policy, self.trace(rate), scenario, budget, caps, label=f"{i}:{arm.label}"))
        results = run_jobs(jobs, workers=self.workers)
        self.runs += len(jobs)
        out = []
        for job in jobs:
            result = results[job.key]
            self.requests += int(result.requests)
            self.simulation_s += float(result.wall_s)
            m = summarize(result, self.scenario.sla)
            cost = cost_per_mtok_usd(m.gpu_hours, m.energy_kwh, int(result.output_tokens), Prices())
            out.append(Outcome(m.slo_attainment, m.seconds_over_budget, m.energy_per_output_token_j, cost))
        return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def capacity(runner: Runner, arms: list[Arm], rate: float, budget: float, tol: float) -> dict[str, Any]:
    """Each arm's largest rate scale at >= 90% SLO and 0 s over the budget; the worst overrun seen per arm."""
    by_label = {a.label: a for a in arms}
    seen: dict[str, dict[float, Outcome]] = {a.label: {} for a in arms}

    def evaluate(batch: list[tuple[str, float]]) -> dict[str, bool]:
        outcomes = runner.batch([(by_label[k], x, budget, {}) for k, x in batch])
        for (k, x), o in zip(batch, outcomes, strict=True):
            seen[k][x] = o
        _log(f"  capacity: {len(batch)} runs, {runner.runs} so far")
        return {k: o.slo >= SLO_GOAL and o.over_s == 0 for (k, x), o in zip(batch, outcomes, strict=True)}

    start = {a.label: ThresholdSearch(rate / 16, rate * 4, start=rate, rel_tol=tol) for a in arms}
    done = run_searches(start, evaluate)
    return {
        "scale": {k: s.result for k, s in done.items()},
        "at_range_end": sorted(k for k, s in done.items() if s.result == s.hi),
        "over_s": {k: max(o.over_s for o in seen[k].values()) for k in seen},
        "outcome": {k: seen[k][s.result] if s.result is not None else None for k, s in done.items()},
    }


def knob(policy: str, value: float) -> dict[str, float]:
    """The over-provisioning knob of a policy at ``value``: ours' target utilisation, else replica headroom."""
    return {"target_utilization": value} if policy == OURS else {"baseline_replica_headroom": value}


def energy_at_slo(runner: Runner, arms: list[Arm], rate: float, slack: float, tol: float) -> dict[str, Any]:
    """Each arm's knob at the cheapest value reaching 90% SLO (slack budget), and the figures there."""
    by_label = {a.label: a for a in arms}
    seen: dict[str, dict[float, Outcome]] = {a.label: {} for a in arms}

    def evaluate(batch: list[tuple[str, float]]) -> dict[str, bool]:
        outcomes = runner.batch([(by_label[k], rate, slack, knob(by_label[k].policy, x)) for k, x in batch])
        for (k, x), o in zip(batch, outcomes, strict=True):
            seen[k][x] = o
        _log(f"  energy: {len(batch)} runs, {runner.runs} so far")
        return {k: o.slo >= SLO_GOAL for (k, x), o in zip(batch, outcomes, strict=True)}

    start = {a.label: (ThresholdSearch(0.3, 1.0, passes_below=True, rel_tol=tol) if a.policy == OURS
                       else ThresholdSearch(1.0, 4.0, passes_below=False, rel_tol=tol)) for a in arms}
    done = run_searches(start, evaluate)
    at = {k: seen[k][s.result] if s.result is not None else None for k, s in done.items()}
    return {
        "knob": {k: s.result for k, s in done.items()},
        "j_per_token": {k: o.j_per_token if o else None for k, o in at.items()},
        "cost_per_mtok": {k: o.cost_per_mtok if o else None for k, o in at.items()},
        "slo": {k: o.slo if o else None for k, o in at.items()},
    }


def _arms(scenario: Scenario, grid: int) -> tuple[list[Arm], list[Arm]]:
    """The policies (ours and every baseline but the oracle) and dynamo-power's static-cap grid (TDP excluded:
    that point is ``dynamo-power`` itself)."""
    policies = [Arm(p, p) for p in policy_names() if p != "oracle"]
    profile = load_profile(name=scenario.profile)
    tdp = profile.gpu.max_limit_watts
    points = [(pc, dc) for pc in profile.cap_levels(Role.PREFILL, grid) for dc in profile.cap_levels(Role.DECODE, grid)]
    cells = [Arm(f"dynamo-power@{pc:.0f}/{dc:.0f}", "dynamo-power", (pc, dc)) for pc, dc in points
             if (pc, dc) != (tdp, tdp)]
    return policies, cells


def _best_cell(cap: dict[str, Any], cells: list[Arm], tdp: float) -> Arm:
    """The grid point (TDP included) with the largest capacity; ties: least energy per token at capacity."""
    candidates = [Arm("dynamo-power", "dynamo-power", (tdp, tdp)), *cells]

    def key(arm: Arm) -> tuple[float, float]:
        scale = cap["scale"][arm.label]
        o = cap["outcome"][arm.label]
        energy = o.j_per_token if o is not None and o.j_per_token is not None else float("inf")
        return (-(scale if scale is not None else -1.0), energy)

    return min(candidates, key=key)


def run_case(base: Scenario, plant: str, rate: float, limits: Any, mode: Mode, workers: int | None) -> dict[str, Any]:
    """One (scenario, plant): capacity at every policy's defaults, energy at equal SLO, then capacity again with
    every policy at its knob from the energy search (the same procedure for all); the JSON entry of ``runs``."""
    started = time.perf_counter()
    scenario = replace(base, plant="" if plant == PROFILE_PLANT else plant,
                       planner={**base.planner, "gpu_pool": limits.gpu_pool})
    runner = Runner(scenario, workers)
    policies, cells = _arms(scenario, mode.grid)
    tdp = load_profile(name=scenario.profile).gpu.max_limit_watts
    _log(f"{scenario.name} plant={plant}: capacity ({len(policies) + len(cells)} searches)")
    cap = capacity(runner, policies + cells, rate, limits.budget_watts, mode.tol)
    best = _best_cell(cap, cells, tdp)
    for field in ("scale", "over_s", "outcome"):
        cap[field][BEST] = cap[field][best.label]
    if best.label in cap["at_range_end"]:
        cap["at_range_end"].append(BEST)
    slack = limits.gpu_pool * tdp
    arms = [*policies, Arm(BEST, "dynamo-power", best.caps)]
    _log(f"{scenario.name} plant={plant}: energy at {SLO_GOAL:.0%} SLO")
    eng = energy_at_slo(runner, arms, rate, slack, mode.tol)
    tuned = [replace(a, planner=tuple(knob(a.policy, eng["knob"][a.label]).items())) for a in arms
             if eng["knob"][a.label] is not None]
    _log(f"{scenario.name} plant={plant}: capacity at the knobs ({len(tuned)} searches)")
    at_knob = capacity(runner, tuned, rate, limits.budget_watts, mode.tol) if tuned else None
    run = {"scenario": scenario.name, "plant": plant, "budget_watts": limits.budget_watts,
           "gpu_pool": limits.gpu_pool, "limits_rule": limits.note, "rate_scale": rate, "slack_budget_watts": slack,
           "dynamo_power_best_caps_watts": {"prefill": best.caps[0], "decode": best.caps[1]} if best.caps else None}
    run.update(_figures([a.label for a in arms], cap, eng, at_knob))
    run.update({"simulations": runner.runs, "simulated_requests": runner.requests,
                "simulation_s": runner.simulation_s, "wall_s": time.perf_counter() - started})
    return run


def _figures(shown: list[str], cap: dict[str, Any], eng: dict[str, Any],
             at_knob: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON figures of one run: per policy, and ours / each baseline."""
    baselines = [k for k in shown if k != OURS]
    knob_scale = {k: (at_knob["scale"].get(k) if at_knob else None) for k in shown}
    over = {k: max(cap["over_s"][k], at_knob["over_s"].get(k, 0.0) if at_knob else 0.0) for k in shown}
    return {
        "capacity_rate_scale": {k: cap["scale"][k] for k in shown},
        "capacity_at_range_end": [k for k in cap["at_range_end"] if k in shown],
        "capacity_ratio": {k: ratio(cap["scale"][OURS], cap["scale"][k]) for k in baselines},
        "capacity_rate_scale_at_knob": knob_scale,
        "capacity_ratio_at_knob": {k: ratio(knob_scale[OURS], knob_scale[k]) for k in baselines},
        "energy_at_slo_j_per_token": {k: eng["j_per_token"][k] for k in shown},
        "energy_ratio": {k: ratio(eng["j_per_token"][OURS], eng["j_per_token"][k]) for k in baselines},
        "cost_per_mtok": {k: eng["cost_per_mtok"][k] for k in shown},
        "cost_ratio": {k: ratio(eng["cost_per_mtok"][OURS], eng["cost_per_mtok"][k]) for k in baselines},
        "knob_at_slo": {k: eng["knob"][k] for k in shown},
        "slo_at_knob": {k: eng["slo"][k] for k in shown},
        "seconds_over_budget": over,
    }


def base_scenario(name: str, mode: Mode) -> Scenario:
    """The scenario at its own rate scale, cut to the mode's window; its budget comes from the limits rule."""
    if name == "default":
        default = builtin_scenarios()["default"]
        duration = min(mode.duration_s, default.duration_s or mode.duration_s) if mode.duration_s else None
        return replace(default, budget_watts=None, budget_fraction=None, duration_s=duration or default.duration_s)
    return replace(azure_scenario(name, duration_s=mode.duration_s), budget_fraction=None)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(run: dict[str, Any]) -> str:
    """The run as text: one row per policy (capacity, energy and cost at 90% SLO, ours / it)."""
    lines = [f"{run['scenario']} x{run['rate_scale']:g}, plant {run['plant']}: budget {run['budget_watts']:,.0f} W, "
             f"pool {run['gpu_pool']} GPUs (energy: slack {run['slack_budget_watts']:,.0f} W)",
             f"  {'policy':<18} {'capacity x':>10} {'ours/it':>7} {'@knob x':>8} {'ours/it':>7} {'over s':>7} "
             f"{'knob':>6} {'J/tok':>6} "
             f"{'ours/it':>7} {'$/Mtok':>7} {'ours/it':>7}"]
    for k, scale in run["capacity_rate_scale"].items():
        end = "+" if k in run["capacity_at_range_end"] else " "
        lines.append(
            f"  {k:<18} {_fmt(scale, '.3g'):>9}{end} {_fmt(run['capacity_ratio'].get(k), '.2f'):>7} "
            f"{_fmt(run['capacity_rate_scale_at_knob'][k], '.3g'):>8} "
            f"{_fmt(run['capacity_ratio_at_knob'].get(k), '.2f'):>7} "
            f"{run['seconds_over_budget'][k]:>7.0f} {_fmt(run['knob_at_slo'][k], '.2f'):>6} "
            f"{_fmt(run['energy_at_slo_j_per_token'][k], '.2f'):>6} {_fmt(run['energy_ratio'].get(k), '.2f'):>7} "
            f"{_fmt(run['cost_per_mtok'][k], '.2f'):>7} {_fmt(run['cost_ratio'].get(k), '.2f'):>7}")
    caps = run["dynamo_power_best_caps_watts"]
    lines.append(f"  {BEST} caps: prefill {caps['prefill']:.0f} W, decode {caps['decode']:.0f} W; '+': at the range "
                 "end (capacity at least this); knob: ours target utilisation, others replica headroom")
    return "\n".join(lines)


def robustness(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Ours' capacity under each plant as a fraction of plant = profile, per scenario."""
    out: dict[str, dict[str, float | None]] = {}
    for run in runs:
        ref = next((r for r in runs if r["scenario"] == run["scenario"] and r["plant"] == PROFILE_PLANT), None)
        if ref is not None and run["plant"] != PROFILE_PLANT:
            out.setdefault(run["scenario"], {})[run["plant"]] = ratio(run["capacity_rate_scale"][OURS],
                                                                      ref["capacity_rate_scale"][OURS])
    return out


def _plants(args: argparse.Namespace, mode: Mode) -> list[str]:
    if args.plant is not None:
        parse_plant(args.plant)  # one line per bad item (UserError), before any simulation
        return [args.plant or PROFILE_PLANT]
    names = [PROFILE_PLANT, *plant_presets()]
    return names if mode.plants is None else names[: mode.plants]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="600 s windows, 5%% bisection, 2x2 grid, plant = profile only")
    parser.add_argument("--plant", default=None, help="run only this plant: 'profile', a preset or overrides")
    parser.add_argument("--scenarios", default=",".join(SCENARIO_NAMES), help="comma-separated scenario names")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: cores)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown or not names:
        print(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIO_NAMES)}", file=sys.stderr)
        return 2
    try:
        plants = _plants(args, mode)
    except UserError as exc:
        print("; ".join(exc.lines), file=sys.stderr)
        return 2
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for name in names:
        base = base_scenario(name, mode)
        limits = dynamo_sla_limits(base, base.load_trace())
        for plant in plants:
            run = run_case(base, plant, base.rate_scale, limits, mode, args.workers)
            runs.append(run)
            print(table(run), flush=True)
    out = {"runs": runs, "robustness_ours_capacity_vs_profile": robustness(runs), "slo_goal": SLO_GOAL,
           "mode": "quick" if args.quick else "full", "bisection_tol": mode.tol, "grid_levels_per_role": mode.grid,
           "prices": Prices().source, "wall_s": time.perf_counter() - started}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
