"""No data is not idle: observations without load data never reduce replicas and never raise caps.

Issue 11, path 5: with 40 req/s of real traffic, empty or NaN frontend metrics read as "idle" scaled 9+5
replicas to 1+1 after three adjustment ticks. Only a request rate of exactly 0 (the requests counter present,
no increase) is evidence of no traffic; an absent or NaN rate, requests without ISL/OSL, or a failed source
hold the replica target, and caps stay at or below the held ones. The budget only rises here (a budget raise
while the load is unknown is no reason to add power either), so nothing else may move replicas down.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.config import config_from_mapping
from powerplanner.model.profile import PowerProfile
from powerplanner.model.roles import ROLES
from powerplanner.model.values import Observation, Reason, RoleState, StepKind
from powerplanner.planning.planner import make_planner
from powerplanner.planning.registry import policy_names
from tests.unit.planning.test_properties import profiles

# (request rate, ISL, OSL, source_ok): each says nothing about how much traffic there is
MISSING = st.sampled_from([
    (None, None, None, True),  # the requests counter is absent (empty vector)
    (math.nan, None, None, True),  # NaN from Prometheus, passed through by a careless source
    (None, 2000.0, 300.0, True),  # lengths present, rate absent
    (12.0, None, None, True),  # requests arrive without ISL/OSL
    (40.0, math.nan, 300.0, True),
    (None, None, None, False),  # the query failed
    (40.0, 2000.0, 300.0, False),  # a partial answer from a failing source is not trusted
])


def _obs(time_s: float, load: tuple[Any, ...], prefill: RoleState, decode: RoleState,
         ttft_ms: float | None, itl_ms: float | None, budget_watts: float) -> Observation:
    rate, isl, osl, ok = load
    return Observation(time_s=time_s, window_s=60.0, request_rate_per_s=rate, isl_tokens=isl, osl_tokens=osl,
                       ttft_ms=ttft_ms, itl_ms=itl_ms, prefill=prefill, decode=decode, budget_watts=budget_watts,
                       source_ok=ok, source_error=None if ok else "prometheus timeout: injected")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=profiles,
    policy=st.sampled_from(policy_names()),
    idle_ticks=st.integers(1, 3),
    warm_rate=st.floats(0.5, 60.0),
    budget=st.floats(10_000.0, 300_000.0),
    gaps=st.lists(st.tuples(MISSING, st.sampled_from([5.0, 30.0, 60.0, 120.0]),
                            st.one_of(st.none(), st.floats(10.0, 5000.0)),
                            st.one_of(st.none(), st.floats(2.0, 500.0)),
                            st.floats(1.0, 3.0)),
                  min_size=1, max_size=10),
    zero_first=st.booleans(),
)
def test_missing_load_data_never_reduces_replicas_nor_raises_caps(
    profile: PowerProfile, policy: str, idle_ticks: int, warm_rate: float, budget: float,
    gaps: list[tuple[tuple[Any, ...], float, float | None, float | None, float]], zero_first: bool,
) -> None:
    config = config_from_mapping({
        "budget": {"watts": budget},
        "planner": {"idle_ticks_to_min": idle_ticks, "adjustment_interval_s": 60, "cap_interval_s": 5,
                    "prefill": {"min_replicas": 1, "max_replicas": 40},
                    "decode": {"min_replicas": 1, "max_replicas": 40}},
    })
    planner = make_planner(config, profile, policy)
    start = {r: RoleState(2, applied_cap_watts=profile.gpu.max_limit_watts) for r in ROLES}
    d = planner.tick(_obs(0.0, (warm_rate, 2000.0, 300.0, True), start[ROLES[0]], start[ROLES[1]], None, None,
                          budget))
    time_s = 0.0
    if zero_first:  # zero-traffic windows just before the gap must not be completed by missing ones
        for _ in range(idle_ticks - 1):
            time_s += 60.0
            state = {r: RoleState(d.target(r).replicas, applied_cap_watts=d.target(r).cap_watts) for r in ROLES}
            d = planner.tick(_obs(time_s, (0.0, None, None, True), state[ROLES[0]], state[ROLES[1]], None, None,
                                  budget))
    for load, step_s, ttft_ms, itl_ms, raise_budget in gaps:
        time_s += step_s
        # the cluster did what the planner asked
        state = {r: RoleState(d.target(r).replicas, applied_cap_watts=d.target(r).cap_watts) for r in ROLES}
        before = d
        d = planner.tick(_obs(time_s, load, state[ROLES[0]], state[ROLES[1]], ttft_ms, itl_ms, budget * raise_budget))
        assert Reason.IDLE_SCALE_TO_MIN not in d.reasons, (load, d.reasons)
        assert Reason.METRICS_MISSING in d.reasons or Reason.SOURCE_ERROR_HOLD in d.reasons, (load, d.reasons)
        for r in ROLES:
            assert d.target(r).replicas >= before.target(r).replicas, (r, load, before.target(r), d.target(r))
            assert d.target(r).cap_watts <= before.target(r).cap_watts, (r, load, before.target(r), d.target(r))
        for s in d.steps:
            if s.kind is StepKind.SCALE:
                assert s.value >= state[s.role].desired_replicas, (load, s)
            else:
                assert s.value <= (state[s.role].applied_cap_watts or math.inf), (load, s)
