"""Safe exploration (planning/probing.py): a probe is one level next to the cap in force, planned through the same
optimiser and transition rules, so no step goes over the budget or outside the GPU's range; it needs SLA margin
and can be turned off."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import build_planner
from powerplanner.model.roles import ROLES, Role
from powerplanner.model.values import Decision, Observation, RoleState
from powerplanner.planning.calibration import neighbour_levels
from powerplanner.planning.planner import Planner
from tests.support.profiles import builtin_profile
from tests.unit.planning.test_properties import check_budget

PROFILE = "llama2-70b-h100-tp4"
EAGER = {"enabled": True, "probing": True, "probe_interval_s": 0.0, "probe_min_std": 1e-6, "probe_margin": 0.0,
         "probe_hold_s": 10.0}


def _planner(budget: float, **calibration: Any) -> Planner:
    config = config_from_mapping({"budget": {"watts": budget}, "sla": {"ttft_ms": 2000.0, "itl_ms": 200.0},
                                  "planner": {"calibration": {**EAGER, **calibration}}})
    return build_planner(config, builtin_profile(PROFILE))


def _obs(t: float, budget: float, decision: Decision | None, rate: float, ttft_ms: float, itl_ms: float
         ) -> Observation:
    """What the cluster reports when the previous decision is in force (ready at its targets)."""
    def state(role: Role) -> RoleState:
        if decision is None:
            return RoleState(2, applied_cap_watts=700.0)
        target = decision.target(role)
        return RoleState(target.replicas, applied_cap_watts=target.cap_watts)

    return Observation(time_s=t, window_s=60.0, request_rate_per_s=rate, isl_tokens=1500.0, osl_tokens=250.0,
                       ttft_ms=ttft_ms, itl_ms=itl_ms, prefill=state(Role.PREFILL), decode=state(Role.DECODE),
                       budget_watts=budget)


def _run(planner: Planner, budgets: list[float], rate: float, ttft_ms: float = 100.0, itl_ms: float = 20.0
         ) -> list[tuple[Observation, Decision]]:
    out: list[tuple[Observation, Decision]] = []
    decision = None
    for i, budget in enumerate(budgets):
        o = _obs(5.0 * i, budget, decision, rate, ttft_ms, itl_ms)
        decision = planner.tick(o)
        out.append((o, decision))
    return out


def _probes(run: list[tuple[Observation, Decision]]) -> list[tuple[Observation, Decision]]:
    return [(o, d) for o, d in run if any(n.startswith("calibration probe") for n in d.notes)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budgets=st.lists(st.floats(3_000, 60_000), min_size=4, max_size=30), rate=st.floats(0.5, 30.0),
       ttft_ms=st.floats(20, 3000), itl_ms=st.floats(5, 300))
def test_probing_never_plans_a_step_over_the_budget_or_outside_the_range(budgets: list[float], rate: float,
                                                                          ttft_ms: float, itl_ms: float) -> None:
    profile = builtin_profile(PROFILE)
    planner = _planner(budgets[0])
    for o, d in _run(planner, budgets, rate, ttft_ms, itl_ms):
        check_budget(d, o, profile)
        if not d.infeasible:
            assert d.projected_provisioned_watts <= d.budget_watts + 1e-6
        for role in ROLES:
            assert profile.gpu.min_limit_watts <= d.target(role).cap_watts <= profile.gpu.max_limit_watts
        for step in d.steps:
            if step.kind.value == "set_cap":
                assert profile.gpu.min_limit_watts <= step.value <= profile.gpu.max_limit_watts


def test_a_probe_is_one_level_next_to_the_cap_in_force() -> None:
    planner = _planner(40_000.0)
    run = _run(planner, [40_000.0] * 40, rate=4.0)
    probes = _probes(run)
    assert probes, "eager probing with margin and budget should probe"
    levels = planner._kit.cap_levels  # the candidate levels the probe must come from
    seen: set[str] = set()
    for o, d in probes:
        role = _probe_role(d)
        held = o.role(role).applied_cap_watts
        note = next(n for n in d.notes if n.startswith("calibration probe"))
        assert held is not None
        if note in seen:  # the probe holds: its cap is the one in force
            assert d.target(role).cap_watts == held
        else:  # a new probe: one level from the cap in force
            assert d.target(role).cap_watts in neighbour_levels(levels[role], held)
        seen.add(note)
        assert not d.replicas_may_change  # a cap tick: replicas held


def _probe_role(d: Decision) -> Role:
    note = next(n for n in d.notes if n.startswith("calibration probe"))
    return Role.PREFILL if note.startswith("calibration probe: prefill") else Role.DECODE


def test_probing_off_never_probes() -> None:
    assert not _probes(_run(_planner(40_000.0, probing=False), [40_000.0] * 40, rate=4.0))


def test_no_probe_without_sla_margin() -> None:
    planner = _planner(40_000.0, probe_margin=0.5)
    assert not _probes(_run(planner, [40_000.0] * 40, rate=4.0, ttft_ms=1500.0, itl_ms=150.0))


def test_calibration_off_by_default_keeps_the_given_profile() -> None:
    config = config_from_mapping({"budget": {"watts": 40_000.0}})
    planner = build_planner(config, builtin_profile(PROFILE))
    assert planner.calibration is None
    assert build_planner(config, builtin_profile(PROFILE), "ours-calibrated").calibration is not None


def test_baselines_never_learn_even_when_calibration_is_enabled() -> None:
    config = config_from_mapping({"budget": {"watts": 40_000.0}, "planner": {"calibration": {"enabled": True}}})
    assert build_planner(config, builtin_profile(PROFILE), "ours").calibration is not None
    for policy in ("dynamo-power", "dynamo-sla", "oracle", "static"):
        assert build_planner(config, builtin_profile(PROFILE), policy).calibration is None
