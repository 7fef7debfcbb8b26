"""Idle and backlog handling: caps stay put while idle; no arrivals with high latency is not idle."""

from __future__ import annotations

import pytest

from powerplanner.model.roles import Role
from powerplanner.model.values import Reason, RoleState
from powerplanner.planning.planner import make_planner
from powerplanner.planning.registry import policy_names
from tests.unit.planning.conftest import make_config, obs
from tests.unit.planning.fake_profile import FakeProfile


def _state(replicas: int, cap: float) -> RoleState:
    return RoleState(replicas, applied_cap_watts=cap)


def test_ours_holds_caps_on_idle_cap_ticks_after_scaling_to_minimum(profile: FakeProfile) -> None:
    """Long idle: adjustment ticks scale to the minimum and choose idle caps; the cap ticks between them must
    keep those caps (they used to jump to the highest caps that fit, i.e. 200 <-> 700 W every few seconds)."""
    config = make_config(idle_ticks_to_min=1, adjustment_interval_s=60, cap_interval_s=5,
                         prefill={"min_replicas": 1}, decode={"min_replicas": 1})
    planner = make_planner(config, profile, "ours")
    planner.tick(obs(time_s=0, rate=5.0))
    caps: list[tuple[float, float]] = []
    for t in range(60, 301, 5):  # adjustment ticks see zero traffic; every other cap tick sees no data at all
        d = planner.tick(obs(time_s=t, rate=None if t % 10 == 5 else 0.0, isl=None, osl=None,
                             prefill=_state(1, 200.0), decode=_state(1, 200.0)))
        caps.append((d.prefill.cap_watts, d.decode.cap_watts))
        if t == 60:
            assert Reason.IDLE_SCALE_TO_MIN in d.reasons
    assert len(set(caps)) == 1, f"caps moved while idle: {sorted(set(caps))}"


def test_ours_sizes_caps_for_observed_load_when_traffic_resumes_before_a_forecast(profile: FakeProfile) -> None:
    config = make_config(idle_ticks_to_min=1, adjustment_interval_s=60, cap_interval_s=5)
    planner = make_planner(config, profile, "ours")
    planner.tick(obs(time_s=0, rate=5.0))
    idle = planner.tick(obs(time_s=60, rate=0.0, isl=None, osl=None))
    assert Reason.IDLE_SCALE_TO_MIN in idle.reasons
    busy = planner.tick(obs(time_s=65, rate=8.0))  # a cap tick: no interval forecast after the idle reset
    assert busy.forecast is not None and busy.forecast.request_rate_per_s == 8.0
    assert Reason.CAP_TICK_ONLY in busy.reasons


@pytest.mark.parametrize("policy", policy_names())
@pytest.mark.parametrize(("ttft_ms", "itl_ms"), [(40_000.0, None), (None, 400.0), (9_000.0, 120.0)])
def test_no_arrivals_with_latency_above_target_is_a_backlog_not_idle(
    profile: FakeProfile, policy: str, ttft_ms: float | None, itl_ms: float | None
) -> None:
    config = make_config(idle_ticks_to_min=1, adjustment_interval_s=60, cap_interval_s=5,
                         prefill={"min_replicas": 1}, decode={"min_replicas": 1})
    planner = make_planner(config, profile, policy)
    busy = planner.tick(obs(time_s=0, rate=20.0, prefill=_state(4, 700.0), decode=_state(4, 700.0)),
                        oracle_load=None)
    backlog = planner.tick(obs(time_s=60, rate=0.0, isl=None, osl=300.0, ttft_ms=ttft_ms, itl_ms=itl_ms,
                               prefill=_state(busy.prefill.replicas, 700.0),
                               decode=_state(busy.decode.replicas, 700.0)))
    assert Reason.IDLE_SCALE_TO_MIN not in backlog.reasons
    assert (backlog.prefill.replicas, backlog.decode.replicas) == (busy.prefill.replicas, busy.decode.replicas)
    assert any("backlog" in note for note in backlog.notes)
    # once the backlog has drained (no arrivals, no late requests), idle handling resumes
    drained = planner.tick(obs(time_s=120, rate=0.0, isl=None, osl=None,
                               prefill=_state(busy.prefill.replicas, 700.0),
                               decode=_state(busy.decode.replicas, 700.0)))
    assert Reason.IDLE_SCALE_TO_MIN in drained.reasons
    if policy != "static":
        assert drained.target(Role.PREFILL).replicas == 1


def test_no_arrivals_with_latency_within_target_is_still_idle(profile: FakeProfile) -> None:
    config = make_config(idle_ticks_to_min=1, adjustment_interval_s=60, cap_interval_s=5)
    planner = make_planner(config, profile, "ours")
    planner.tick(obs(time_s=0, rate=5.0))
    d = planner.tick(obs(time_s=60, rate=0.0, isl=None, osl=300.0, ttft_ms=200.0, itl_ms=20.0))
    assert Reason.IDLE_SCALE_TO_MIN in d.reasons
