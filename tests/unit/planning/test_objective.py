"""planner.objective: ours minimises predicted energy (default) or cost (GPU-hours and energy at stated prices)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import planner_settings
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast
from powerplanner.planning.optimizer import Allocation, Bounds, Constraints, Objective, optimise
from powerplanner.planning.sizing import Corrections, ProfileCache, RoleCapacity, SizingRules, size_role

PROFILE = load_profile("llama2-70b-h100-tp4")
CACHE = ProfileCache(PROFILE)
CAPS = tuple(float(c) for c in range(200, 701, 50))
BOUNDS = Bounds(1, 64)


def _sizes(rate: float) -> tuple[RoleCapacity, RoleCapacity]:
    load = LoadForecast(rate, 2000.0, 300.0)
    p, d = (size_role(CACHE, role, CAPS, load, 0.5, 0.05, Corrections(), SizingRules())
            for role in (Role.PREFILL, Role.DECODE))
    return p, d


def _gpus(p: RoleCapacity, d: RoleCapacity, a: Allocation) -> int:
    return a.prefill_replicas * p.gpus_per_replica + a.decode_replicas * d.gpus_per_replica


def test_energy_is_the_default_and_cost_comes_from_the_config() -> None:
    default = planner_settings(config_from_mapping({"budget": {"watts": 30000}}))
    assert default.objective.kind == "energy"
    cost = planner_settings(config_from_mapping({"budget": {"watts": 30000}, "planner": {"objective": "cost"},
                                                 "cost": {"gpu_hour_usd": 4.0, "energy_usd_per_kwh": 0.2}}))
    assert cost.objective == Objective("cost", 4.0, 0.2)


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(2.0, 40.0), budget=st.floats(20_000.0, 200_000.0))
def test_each_objective_wins_on_its_own_measure(rate: float, budget: float) -> None:
    """Both pick among the same feasible plans: energy's pick draws no more than cost's, and cost's pick costs no
    more than energy's, at the same prices."""
    p, d = _sizes(rate)
    prices = Objective("cost", 2.99, 0.128)
    by_energy = optimise(p, d, BOUNDS, BOUNDS, Constraints(budget))
    by_cost = optimise(p, d, BOUNDS, BOUNDS, Constraints(budget, objective=prices))
    if by_energy.served_fraction < 1.0 or by_cost.served_fraction < 1.0:
        return  # budget-limited: the served fraction, not the objective, decides
    assert by_energy.predicted_draw_watts <= by_cost.predicted_draw_watts + 1e-6

    def cost(a: Allocation) -> float:
        return _gpus(p, d, a) * prices.gpu_hour_usd + a.predicted_draw_watts / 1000 * prices.energy_usd_per_kwh

    assert cost(by_cost) <= cost(by_energy) + 1e-9


def test_a_dear_gpu_hour_buys_fewer_gpus() -> None:
    p, d = _sizes(20.0)
    by_energy = optimise(p, d, BOUNDS, BOUNDS, Constraints(200_000.0))
    dear = optimise(p, d, BOUNDS, BOUNDS, Constraints(200_000.0, objective=Objective("cost", 100.0, 0.0)))
    assert by_energy.served_fraction == dear.served_fraction == 1.0
    assert _gpus(p, d, dear) < _gpus(p, d, by_energy)
