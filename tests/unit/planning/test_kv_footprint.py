"""Decode's KV footprint (docs/planner.md, "Decode KV footprint") and which role a TTFT miss belongs to
("Which role is short"): sizing, corrections and the forecast's prompt-length p90."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from powerplanner.core_settings import planner_settings
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast, RoleState
from powerplanner.planning.data_state import DataState
from powerplanner.planning.forecaster import Forecaster
from powerplanner.planning.kv_footprint import kv_sequences_per_replica
from powerplanner.planning.optimizer import Bounds, Constraints, optimise
from powerplanner.planning.sanitise import sanitise
from powerplanner.planning.sizing import (
    Corrections,
    ProfileCache,
    observed_corrections,
    ours_sizing_rules,
    size_role,
    under_binding_budget,
)
from tests.support.planner_inputs import make_config, obs

PROFILE = load_profile("llama3.1-8b-h200-tp1")
MAX_KV = PROFILE.max_batch(1.0)
CAPS = PROFILE.cap_levels(Role.DECODE, 16)


@settings(max_examples=300, deadline=None)
@example(rate=13.0, isl=11377.0, tail=2.0, osl=692.0, target=1.0)  # fails without the margin (mean-only sizing)
@given(rate=st.floats(1.0, 200.0), isl=st.floats(1000.0, 30000.0), tail=st.floats(1.05, 2.3),
       osl=st.floats(50.0, 1500.0), target=st.sampled_from([1.0, 0.9, 0.8]))
def test_planned_decode_replicas_hold_the_littles_law_kv_footprint(rate: float, isl: float, tail: float,
                                                                   osl: float, target: float) -> None:
    """With a budget that allows it, the decode replicas hold every sequence Little's law puts in flight
    (``rate x osl x ITL`` of them, at the ITL of the batch each replica then runs), each at its mean context,
    with room left on every replica for a p90 request at its end. Mostly at target utilisation 1 (no headroom):
    the margin alone must hold it."""
    load = LoadForecast(rate, isl, osl, isl_p90_tokens=isl * tail)
    cache = ProfileCache(PROFILE)
    rules = ours_sizing_rules(target)
    p = size_role(cache, Role.PREFILL, PROFILE.cap_levels(Role.PREFILL, 16), load, 2.0, 0.05, Corrections(), rules)
    d = size_role(cache, Role.DECODE, CAPS, load, 2.0, 0.05, Corrections(), rules)
    alloc = optimise(p, d, Bounds(1, 100_000), Bounds(1, 100_000), Constraints(1e12))
    assert alloc.served_fraction == 1.0 and not alloc.budget_limited
    n = alloc.decode_replicas
    context = isl + osl / 2
    room = MAX_KV - (isl * tail + osl)
    batch = 1.0
    for _ in range(50):  # the batch per replica Little's law gives, at the ITL that batch runs at
        batch = rate * osl * PROFILE.decode_itl_s(batch, context, alloc.decode_cap_watts) / n
    assert batch * context <= room + 1e-6


def test_without_a_p90_the_sequences_are_the_plain_kv_division() -> None:
    load = LoadForecast(10.0, 12000.0, 340.0)
    assert kv_sequences_per_replica(MAX_KV, load) == PROFILE.max_batch(12000.0 + 170.0)


@given(isl=st.floats(500.0, 40000.0), osl=st.floats(10.0, 2000.0), tails=st.lists(st.floats(1.0, 3.0), min_size=2,
                                                                                 max_size=2))
def test_a_heavier_tail_never_packs_more_sequences(isl: float, osl: float, tails: list[float]) -> None:
    light, heavy = sorted(tails)
    at = [kv_sequences_per_replica(MAX_KV, LoadForecast(1.0, isl, osl, isl * t)) for t in (light, heavy)]
    assert at[1] <= at[0] <= PROFILE.max_batch(isl + osl / 2)
    assert at[1] >= 1


def test_the_tail_margin_costs_decode_replicas_on_long_prompts() -> None:
    """12k mean, p90 27k (the long-context scenario's): about a fifth fewer sequences per replica than the mean
    says, so about a quarter more decode replicas."""
    mean_only = kv_sequences_per_replica(MAX_KV, LoadForecast(80.0, 12035.0, 343.0))
    tailed = kv_sequences_per_replica(MAX_KV, LoadForecast(80.0, 12035.0, 343.0, 26600.0))
    assert 0.7 < tailed / mean_only < 0.9


def _long(decode_waiting: float | None, prefill_waiting: float | None, ttft_ms: float) -> object:
    return obs(time_s=600.0, rate=100.0, isl=12000.0, osl=340.0, ttft_ms=ttft_ms, itl_ms=30.0,
               prefill=RoleState(60, applied_cap_watts=400.0, waiting_requests=prefill_waiting),
               decode=RoleState(14, applied_cap_watts=200.0, waiting_requests=decode_waiting, kv_usage=0.97))


def test_a_wait_in_decode_admission_holds_prefill_and_raises_decode() -> None:
    """TTFT 12 s against a 2 s target, 1,000 requests waiting for decode KV room (10 s by Little's law): the
    excess is decode's. The prefill factor is held (not raised), decode's load grows to drain its queue."""
    before = Corrections(prefill=1.1, decode=1.0)
    c = observed_corrections(PROFILE, _long(1000.0, 0.0, 12_000.0), 400.0, 200.0, before, 2.0, 60.0)  # type: ignore[arg-type]
    assert c.prefill <= before.prefill
    assert c.decode == pytest.approx(1.0 + 10.0 / 60.0, rel=0.02)
    assert c.decode_short_at_s == 600.0
    # The same TTFT without the decode gauge is read as before: a prefill backlog.
    blind = observed_corrections(PROFILE, _long(None, None, 12_000.0), 400.0, 200.0, before, 2.0, 60.0)  # type: ignore[arg-type]
    assert blind.prefill > before.prefill and blind.decode_short_at_s is None and blind.prefill_queued is None


def test_under_a_binding_budget_the_prefill_factor_is_what_its_queue_explains() -> None:
    c = observed_corrections(PROFILE, _long(0.0, 0.0, 6_000.0), 400.0, 200.0, Corrections(), 2.0, 60.0)  # type: ignore[arg-type]
    assert c.prefill > 1.0 and c.prefill_queued == 1.0  # the window's TTFT is over target, no queue now
    assert under_binding_budget(c).prefill == 1.0 and under_binding_budget(c).decode == c.decode
    queued = observed_corrections(PROFILE, _long(0.0, 1200.0, 14_000.0), 400.0, 200.0, Corrections(), 2.0,  # type: ignore[arg-type]
                                  60.0)
    assert queued.prefill_queued == pytest.approx(1.0 + (12.0 - 2.0) / 60.0)
    no_gauge = Corrections(prefill=1.8)
    assert under_binding_budget(no_gauge) is no_gauge


def test_the_forecast_carries_the_observed_tail_and_the_oracles_own() -> None:
    f = Forecaster(planner_settings(make_config()))
    o = dataclasses.replace(obs(rate=10.0, isl=2000.0, osl=300.0), isl_p90_tokens=5000.0)  # type: ignore[arg-type]
    out = f.adjust(o, DataState.OK, None)
    assert out is not None and out.isl_p90_tokens is not None
    assert out.isl_p90_tokens / out.isl_tokens == pytest.approx(2.5)
    oracle = LoadForecast(10.0, 2000.0, 300.0, 7000.0)
    assert f.adjust(o, DataState.OK, oracle) == oracle


@pytest.mark.parametrize("field,value", [("waiting_requests", -1.0), ("waiting_requests", math.nan),
                                         ("kv_usage", 3.0), ("kv_usage", -0.1)])
def test_bad_signals_are_unknown_with_a_note(field: str, value: float) -> None:
    o = obs(decode=RoleState(2, **{field: value}))
    clean = sanitise(o, 20_000.0, 0.0)
    assert getattr(clean.obs.decode, field) is None
    assert any(f"decode.{field}" in p for p in clean.problems)
    bad_p90 = sanitise(dataclasses.replace(obs(), isl_p90_tokens=-5.0), 20_000.0, 0.0)
    assert bad_p90.obs.isl_p90_tokens is None
