"""Sizing per cap level, correction factors and the optimiser's fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast, RoleState
from powerplanner.planning.optimizer import Bounds, Constraints, evaluate, optimise, optimise_caps
from powerplanner.planning.sizing import (
    Corrections,
    ProfileCache,
    RoleCapacity,
    SizingRules,
    dynamo_corrections,
    observed_corrections,
    size_role,
)
from tests.support.planner_inputs import obs
from tests.support.profiles import FakeProfile

CAPS = tuple(float(c) for c in range(200, 701, 50))
LOAD = LoadForecast(10.0, 2000.0, 300.0)


def _size(profile: FakeProfile, role: Role, load: LoadForecast = LOAD, corrections: Corrections = Corrections(),
          rules: SizingRules = SizingRules()) -> RoleCapacity:
    return size_role(ProfileCache(profile), role, CAPS, load, 0.5, 0.05, corrections, rules)


def test_higher_caps_never_need_more_replicas(profile: FakeProfile) -> None:
    for role in (Role.PREFILL, Role.DECODE):
        cap = _size(profile, role)
        n = cap.replicas_for(1.0)
        assert np.all(np.diff(n) <= 0)


def test_target_utilization_adds_replicas(profile: FakeProfile) -> None:
    full = _size(profile, Role.PREFILL).replicas_for(1.0)
    half = SizingRules(target_utilization=0.5)
    headroom = _size(profile, Role.PREFILL, rules=half).replicas_for(1.0)
    assert np.all(headroom >= full) and np.any(headroom > full)


def test_dynamo_prefill_correction_only_shrinks_and_ours_only_grows(profile: FakeProfile) -> None:
    base = _size(profile, Role.PREFILL).demand_tokens_per_s
    dyn_up = _size(profile, Role.PREFILL, corrections=Corrections(prefill=1.5)).demand_tokens_per_s
    dyn_down = _size(profile, Role.PREFILL, corrections=Corrections(prefill=0.5)).demand_tokens_per_s
    ours = _size(profile, Role.PREFILL, corrections=Corrections(prefill=1.5),
                 rules=SizingRules(dynamo_prefill_correction=False)).demand_tokens_per_s
    assert dyn_up == base and dyn_down == pytest.approx(base / 2) and ours == pytest.approx(base * 1.5)


def test_decode_correction_on_target_vs_on_load(profile: FakeProfile) -> None:
    on_target = _size(profile, Role.DECODE, corrections=Corrections(decode=2.0))
    on_load = _size(profile, Role.DECODE, corrections=Corrections(decode=2.0),
                    rules=SizingRules(decode_correction_on_target=False))
    plain = _size(profile, Role.DECODE)
    assert np.all(on_target.sla_tokens_per_s_per_gpu <= plain.sla_tokens_per_s_per_gpu)
    assert on_load.demand_tokens_per_s == pytest.approx(2 * plain.demand_tokens_per_s)
    assert np.array_equal(on_load.sla_tokens_per_s_per_gpu, plain.sla_tokens_per_s_per_gpu)


def test_profile_cache_matches_the_profile_including_the_natural_draw_shortcut() -> None:
    real = load_profile("llama2-70b-h100-tp4")
    cache = ProfileCache(real)
    caps = [200.0, 380.0, 500.0, 700.0]
    got = cache.decode_tokens_per_s_per_gpu(2150.0, caps, 0.05)
    want = [real.decode_throughput_tokens_per_s_per_gpu(2150.0, c, 0.05) for c in caps]
    assert list(got) == pytest.approx(want, rel=0.02)  # 1% quantisation of the context


def test_dynamo_correction_is_one_when_the_profile_is_right(profile: FakeProfile) -> None:
    o = obs(rate=4.0, isl=2000.0, osl=300.0, ttft_ms=1000 * profile.prefill_time_s(2000.0, 700.0), itl_ms=None)
    c = dynamo_corrections(profile, o, 700.0, Corrections())
    assert c.prefill == pytest.approx(1.0)
    assert c.decode == 1.0  # no ITL: kept


def test_our_corrections_are_guarded(profile: FakeProfile) -> None:
    # light load, observed TTFT twice the model's: factor 2
    light = obs(rate=1.0, prefill=RoleState(4, applied_cap_watts=700.0))
    expected = profile.ttft_s(2000.0, 0.25, 700.0)
    c = observed_corrections(profile, light.__class__(**{**light.__dict__, "ttft_ms": 2000 * expected}), 700.0, 700.0,
                             Corrections())
    assert c.prefill == pytest.approx(2.0)
    # faster than the model: never below 1
    c = observed_corrections(profile, light.__class__(**{**light.__dict__, "ttft_ms": 500 * expected}), 700.0, 700.0,
                             Corrections())
    assert c.prefill == 1.0
    # saturated replica (model unreliable) with a 30.5 s TTFT against a 0.5 s target: drain the backlog
    heavy = obs(rate=30.0, ttft_ms=30_500.0, prefill=RoleState(1, applied_cap_watts=700.0))
    c = observed_corrections(profile, heavy, 700.0, 700.0, Corrections(), ttft_target_s=0.5, drain_interval_s=60.0)
    assert c.prefill == pytest.approx(1.5)
    huge = obs(rate=30.0, ttft_ms=600_000.0, prefill=RoleState(1, applied_cap_watts=700.0))
    assert observed_corrections(profile, huge, 700.0, 700.0, Corrections(), 0.5, 60.0).prefill == 3.0


def _pair(profile: FakeProfile, load: LoadForecast = LOAD) -> tuple[RoleCapacity, RoleCapacity]:
    cache = ProfileCache(profile)
    p = size_role(cache, Role.PREFILL, CAPS, load, 0.5, 0.05, Corrections(), SizingRules())
    d = size_role(cache, Role.DECODE, CAPS, load, 0.5, 0.05, Corrections(), SizingRules())
    return p, d


B = Bounds(1, 50)


def test_optimiser_meets_sla_at_least_energy_on_the_grid(profile: FakeProfile) -> None:
    p, d = _pair(profile)
    best = optimise(p, d, B, B, Constraints(1e6))
    assert best.served_fraction == 1.0 and not best.budget_limited
    for cp in CAPS:
        for cd in CAPS:
            n_p = int(p.replicas_for(1.0)[CAPS.index(cp)])
            n_d = int(d.replicas_for(1.0)[CAPS.index(cd)])
            other = evaluate(p, d, max(1, n_p), cp, max(1, n_d), cd)
            assert best.predicted_draw_watts <= other.predicted_draw_watts + 1e-3


def test_budget_limited_allocation_is_balanced(profile: FakeProfile) -> None:
    p, d = _pair(profile, LoadForecast(60.0, 2000.0, 300.0))
    full = optimise(p, d, B, B, Constraints(1e6))
    limited = optimise(p, d, B, B, Constraints(full.provisioned_watts * 0.4))
    assert limited.budget_limited and limited.provisioned_watts <= full.provisioned_watts * 0.4
    assert 0 < limited.served_fraction < 1
    assert min(limited.attainment_prefill, limited.attainment_decode) == pytest.approx(limited.served_fraction,
                                                                                        abs=0.05)


def test_gpu_pool_is_a_constraint_and_is_named(profile: FakeProfile) -> None:
    p, d = _pair(profile, LoadForecast(60.0, 2000.0, 300.0))
    alloc = optimise(p, d, B, B, Constraints(1e6, gpu_pool=16))
    assert (alloc.prefill_replicas + alloc.decode_replicas) * 4 <= 16
    assert alloc.gpu_pool_limited and alloc.budget_limited


def test_infeasible_minimum_takes_the_largest_balanced_subset(profile: FakeProfile) -> None:
    p, d = _pair(profile)
    two = Bounds(2, 10)
    alloc = optimise(p, d, two, two, Constraints(3 * 4 * 200.0))
    assert alloc.infeasible
    assert sorted((alloc.prefill_replicas, alloc.decode_replicas)) == [1, 2]
    assert alloc.provisioned_watts <= 3 * 4 * 200.0


def test_caps_only_for_fixed_replicas(profile: FakeProfile) -> None:
    p, d = _pair(profile)
    alloc = optimise_caps(p, d, 3, 3, Constraints(3 * 4 * 300.0 + 3 * 4 * 250.0))
    assert alloc is not None and (alloc.prefill_replicas, alloc.decode_replicas) == (3, 3)
    assert optimise_caps(p, d, 3, 3, Constraints(3 * 4 * 200.0 * 2 - 1)) is None


def test_measured_mode_bounds_predicted_draw(profile: FakeProfile) -> None:
    p, d = _pair(profile)
    c = Constraints(6000.0, measured=True, headroom=0.1)
    alloc = optimise(p, d, B, B, c)
    assert alloc.predicted_draw_watts <= 5400.0 + 1e-6
    assert math.isfinite(alloc.provisioned_watts)
