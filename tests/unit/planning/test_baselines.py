"""Baselines pinned on worked examples: Dynamo's budget rules and the seed's proportional truncation."""

from __future__ import annotations

from typing import Any

from powerplanner.config import Config
from powerplanner.model.roles import Role
from powerplanner.model.values import Reason, RoleState
from powerplanner.planning.dynamo_budget import (
    apply_power_budget,
    fit_directional,
    gpu_ceiling_clamp,
    minimum_power_footprint_fits,
    shrink_pair,
)
from powerplanner.planning.planner import make_planner
from tests.unit.planning.conftest import make_config, obs
from tests.unit.planning.fake_profile import FakeProfile

# -- Dynamo's rules, on the numbers its own review thread uses (1000 W per replica, 5000 W budget) ----------


def test_dynamo_stages_an_opposing_rebalance_whose_parallel_peak_exceeds_the_budget() -> None:
    # (1, 4) -> (4, 1): both fit (5000 W) but moving in parallel passes through (4, 4) = 8000 W
    new_p, new_d, why = apply_power_budget(4, 1, 1, 4, 1000, 1000, 5000, 1, 1)
    assert (new_p, new_d, why) == (1, 1, "power_rebalance_staged")
    # next tick, once decode has scaled down, the scale-up is admitted
    assert apply_power_budget(4, 1, 1, 1, 1000, 1000, 5000, 1, 1) == (4, 1, None)


def test_dynamo_does_not_stage_when_the_peak_fits() -> None:
    assert apply_power_budget(4, 1, 1, 4, 1000, 1000, 8000, 1, 1) == (4, 1, None)


def test_dynamo_clamps_direction_preserving_when_current_fits() -> None:
    # current (2, 2) fits 5000 W; proposal (4, 3) = 7000 W does not: both legs stay between current and proposal
    new_p, new_d, why = apply_power_budget(4, 3, 2, 2, 1000, 1000, 5000, 1, 1)
    assert why == "power_budget_clamped"
    assert 2 <= new_p <= 4 and 2 <= new_d <= 3
    assert new_p * 1000 + new_d * 1000 <= 5000


def test_dynamo_shrinks_proportionally_when_over_budget_keeping_minimums() -> None:
    # current (6, 6) = 12000 W is over a 5000 W budget; the proposal (6, 6) is shrunk
    new_p, new_d, why = apply_power_budget(6, 6, 6, 6, 1000, 1000, 5000, 1, 1)
    assert why == "power_budget_clamped"
    assert new_p * 1000 + new_d * 1000 <= 5000 and new_p >= 1 and new_d >= 1
    assert shrink_pair(6, 6, 1000, 1000, 5000, 1, 1) == (new_p, new_d)


def test_dynamo_shrink_never_grows_decode() -> None:
    # prefill expensive, decode cheap: the leftover budget must not seat decode replicas never asked for
    assert shrink_pair(10, 1, 8000, 1000, 20000, 1, 1)[1] <= 1


def test_dynamo_fit_moves_both_legs_of_an_opposing_rebalance_or_neither() -> None:
    p, d = fit_directional(1, 4, 4, 1, 1000, 1000, 4000, 1, 1)
    assert (p == 1) == (d == 4)


def test_dynamo_startup_gate() -> None:
    assert minimum_power_footprint_fits(2000, 1, 1, 1000, 1000)
    assert not minimum_power_footprint_fits(1999, 1, 1, 1000, 1000)


def test_dynamo_gpu_ceiling_clamp() -> None:
    assert gpu_ceiling_clamp(10, 10, 4, 4, 40, 1, 1) == (5, 5)
    assert gpu_ceiling_clamp(10, 1, 8, 1, 20, 1, 1)[1] <= 1  # decode-no-upscale
    assert gpu_ceiling_clamp(3, 3, 4, 4, 4, 1, 1) == (0, 0)  # even the minimum does not fit
    assert gpu_ceiling_clamp(3, 3, 4, 4, None, 1, 1) == (3, 3)


# -- through the Planner ----------------------------------------------------------------------------------


def _required(config: Config, profile: FakeProfile, **kw: object) -> tuple[int, int]:
    d = make_planner(config, profile, "dynamo-sla").tick(obs(**kw))  # type: ignore[arg-type]
    return d.prefill.replicas, d.decode.replicas


def test_proportional_truncates_a_role_to_zero(profile: FakeProfile) -> None:
    load: dict[str, Any] = dict(rate=20.0, isl=2000.0, osl=300.0)
    big = make_config(budget_watts=1e6)
    p, d = _required(big, profile, budget=1e6, **load)
    assert p >= 1 and d >= 1
    per_replica = 4 * 700.0
    required_power = (p + d) * per_replica
    # choose a budget whose scale factor leaves less than one replica of the smaller role
    small = min(p, d)
    budget = required_power * 0.9 / small
    decision = make_planner(make_config(budget_watts=budget), profile, "proportional").tick(obs(budget=budget, **load))
    scale = budget / required_power
    assert (decision.prefill.replicas, decision.decode.replicas) == (int(p * scale), int(d * scale))
    assert min(decision.prefill.replicas, decision.decode.replicas) == 0
    assert decision.budget_limited
    assert any("truncation" in n for n in decision.notes)
    assert decision.prefill.cap_watts == decision.decode.cap_watts == 700.0


def test_proportional_keeps_sla_replicas_when_they_fit(profile: FakeProfile) -> None:
    load: dict[str, Any] = dict(rate=20.0, isl=2000.0, osl=300.0)
    p, d = _required(make_config(budget_watts=1e6), profile, budget=1e6, **load)
    decision = make_planner(make_config(budget_watts=1e6), profile, "proportional").tick(obs(budget=1e6, **load))
    assert (decision.prefill.replicas, decision.decode.replicas) == (p, d)


def test_dynamo_power_stages_through_the_planner(profile: FakeProfile) -> None:
    # prefill-heavy load from a decode-heavy state (1 prefill, 4 decode): Dynamo proposes more prefill, less decode
    load: dict[str, Any] = dict(rate=12.0, isl=6000.0, osl=20.0)
    big = make_config(budget_watts=1e6)
    p, d = _required(big, profile, budget=1e6, **load)
    assert p > 1 and d < 4
    per_replica = 4 * 700.0
    budget = max(p + d, 1 + 4) * per_replica  # target and current fit, the parallel peak does not
    assert max(p, 1) + max(d, 4) > budget / per_replica
    current = dict(prefill=RoleState(1, applied_cap_watts=700.0), decode=RoleState(4, applied_cap_watts=700.0))
    planner = make_planner(make_config(budget_watts=budget), profile, "dynamo-power")
    first = planner.tick(obs(budget=budget, **current, **load))  # type: ignore[arg-type]
    assert Reason.STAGED in first.reasons
    assert (first.prefill.replicas, first.decode.replicas) == (1, d)
    assert all(s.provisioned_after_watts <= budget for s in first.steps)
    # an adjustment interval later decode has drained: the prefill scale-up goes through
    drained = dict(prefill=RoleState(1, applied_cap_watts=700.0), decode=RoleState(d, applied_cap_watts=700.0))
    second = planner.tick(obs(time_s=60.0, budget=budget, **drained, **load))  # type: ignore[arg-type]
    assert (second.prefill.replicas, second.decode.replicas) == (p, d)
    assert Reason.STAGED not in second.reasons


def test_dynamo_power_fails_closed_when_the_minimum_does_not_fit(profile: FakeProfile) -> None:
    budget = 2 * 4 * 700.0 - 1  # one replica per role at 700 W caps does not fit
    d = make_planner(make_config(budget_watts=budget), profile, "dynamo-power").tick(obs(budget=budget))
    assert d.infeasible
    assert Reason.STARTUP_GATE in d.reasons and Reason.INFEASIBLE_MIN_REPLICAS in d.reasons


def test_dynamo_power_is_infeasible_when_the_minimum_needs_more_gpus_than_the_pool(profile: FakeProfile) -> None:
    """Dynamo's GPU ceiling returns (0, 0) when the minimums overshoot the pool (hypothesis found a TP8 prefill
    with min_replicas 2 and gpu_pool 8): the decision must say infeasible, not quietly go below the minimum."""
    config = make_config(gpu_pool=8, prefill={"min_replicas": 2})
    d = make_planner(config, profile, "dynamo-power").tick(obs())
    assert d.infeasible and Reason.INFEASIBLE_MIN_REPLICAS in d.reasons
    assert "gpu_pool" in " ".join(d.notes)


def test_dynamo_power_uses_the_static_caps(profile: FakeProfile) -> None:
    planner = make_planner(make_config(), profile, "dynamo-power", static_caps_watts={Role.PREFILL: 450.0,
                                                                                       Role.DECODE: 300.0})
    d = planner.tick(obs())
    assert (d.prefill.cap_watts, d.decode.cap_watts) == (450.0, 300.0)


def test_static_caps_come_from_config_too(profile: FakeProfile) -> None:
    config = make_config(static_caps_watts={"prefill": 500.0, "decode": 333.3})
    d = make_planner(config, profile, "proportional").tick(obs())
    assert (d.prefill.cap_watts, d.decode.cap_watts) == (500.0, 333.0)


def test_static_holds_initial_replicas_at_tdp(profile: FakeProfile) -> None:
    planner = make_planner(make_config(), profile, "static")
    start = dict(prefill=RoleState(3, applied_cap_watts=400.0), decode=RoleState(5, applied_cap_watts=400.0))
    for t, rate in ((0.0, 1.0), (60.0, 30.0), (120.0, 0.5)):
        d = planner.tick(obs(time_s=t, rate=rate, **start))  # type: ignore[arg-type]
        assert (d.prefill.replicas, d.decode.replicas) == (3, 5)
        assert d.prefill.cap_watts == d.decode.cap_watts == 700.0
        assert Reason.STATIC in d.reasons


def test_dynamo_sla_ignores_the_budget(profile: FakeProfile) -> None:
    load: dict[str, Any] = dict(rate=20.0)
    want = _required(make_config(budget_watts=1e6), profile, budget=1e6, **load)
    d = make_planner(make_config(budget_watts=3000.0), profile, "dynamo-sla").tick(obs(budget=3000.0, **load))
    assert (d.prefill.replicas, d.decode.replicas) == want
    assert d.projected_provisioned_watts > 3000.0


def test_dynamo_sizing_formula(profile: FakeProfile) -> None:
    """prefill = ceil(rate*isl / (thpt_per_gpu at ISL under TTFT target * TP)); decode likewise on OSL at
    context ISL + OSL/2 under the ITL target (no corrections, no headroom)."""
    import math

    rate, isl, osl = 20.0, 2000.0, 300.0
    config = make_config(budget_watts=1e6)
    p, d = _required(config, profile, budget=1e6, rate=rate, isl=isl, osl=osl)
    thpt_p = profile.prefill_throughput_tokens_per_s_per_gpu(isl, 700.0, config.sla.ttft_ms / 1000)
    thpt_d = profile.decode_throughput_tokens_per_s_per_gpu(isl + osl / 2, 700.0, config.sla.itl_ms / 1000)
    x_p, x_d = rate * isl / thpt_p / 4, rate * osl / thpt_d / 4
    assert x_p > 1 and x_d > 1
    # profile lookups are memoised on 1% buckets of ISL/context, so allow that much
    assert math.ceil(x_p / 1.02) <= p <= math.ceil(x_p * 1.02)
    assert math.ceil(x_d / 1.02) <= d <= math.ceil(x_d * 1.02)
