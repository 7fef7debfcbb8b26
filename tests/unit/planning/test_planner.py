"""The Planner's public behaviour: API, two timescales, budget cuts, idle, bad observations."""

from __future__ import annotations

import math
from typing import Any

import pytest

from powerplanner.config import Config
from powerplanner.core_settings import build_planner
from powerplanner.model.roles import Role
from powerplanner.model.values import Decision, LoadForecast, Reason, RoleState, StepKind
from powerplanner.planning.planner import Planner
from powerplanner.planning.registry import policy_names
from tests.support.planner_inputs import make_config, obs
from tests.support.profiles import FakeProfile


def provisioned(d: Decision, profile: FakeProfile) -> float:
    return sum(
        d.target(r).replicas * profile.gpus_per_replica(r) * d.target(r).cap_watts for r in (Role.PREFILL, Role.DECODE)
    )


def test_policy_names_are_the_public_set() -> None:
    assert policy_names() == ("ours", "static", "dynamo-sla", "dynamo-power", "dynamo-1.6", "proportional",
                              "ours-calibrated", "oracle")


@pytest.mark.parametrize("policy", policy_names())
def test_every_policy_builds_and_ticks(policy: str, config: Config, profile: FakeProfile) -> None:
    planner = build_planner(config, profile, policy)
    assert isinstance(planner, Planner)
    assert planner.policy_name == policy
    d = planner.tick(obs(), oracle_load=LoadForecast(5.0, 2000.0, 300.0))
    assert d.policy == policy
    assert set(d.predicted_attainment) == {"prefill", "decode"}
    assert d.reasons


def test_unknown_policy_is_rejected(config: Config, profile: FakeProfile) -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        build_planner(config, profile, "nope")


def test_default_policy_comes_from_config(profile: FakeProfile) -> None:
    assert build_planner(make_config(policy="dynamo-power"), profile).policy_name == "dynamo-power"


def test_ours_meets_sla_within_budget_and_explains(config: Config, profile: FakeProfile) -> None:
    d = build_planner(config, profile).tick(obs())
    assert d.projected_provisioned_watts <= d.budget_watts
    assert math.isclose(d.projected_provisioned_watts, provisioned(d, profile))
    assert d.predicted_attainment == {"prefill": 1.0, "decode": 1.0}
    assert Reason.ENERGY_OPTIMAL in d.reasons
    assert 0 < d.predicted_draw_watts <= d.projected_provisioned_watts
    assert d.forecast is not None and d.forecast.request_rate_per_s == 5.0


def test_replicas_change_only_on_adjustment_ticks(profile: FakeProfile) -> None:
    planner = build_planner(make_config(adjustment_interval_s=60, cap_interval_s=5), profile)
    first = planner.tick(obs(time_s=0, rate=2.0))
    assert first.replicas_may_change
    # load jumps 5x on a cap tick: replicas hold, only caps may move
    cap_tick = planner.tick(obs(time_s=5, rate=10.0))
    assert not cap_tick.replicas_may_change
    assert (cap_tick.prefill.replicas, cap_tick.decode.replicas) == (first.prefill.replicas, first.decode.replicas)
    assert Reason.CAP_TICK_ONLY in cap_tick.reasons
    later = planner.tick(obs(time_s=60, rate=10.0))
    assert later.replicas_may_change


def test_budget_cut_is_honoured_on_the_next_cap_tick_by_caps_first(profile: FakeProfile) -> None:
    planner = build_planner(make_config(), profile)
    d0 = planner.tick(obs(time_s=0, rate=16.0))
    state: dict[str, Any] = dict(
        prefill=RoleState(d0.prefill.replicas, applied_cap_watts=d0.prefill.cap_watts),
        decode=RoleState(d0.decode.replicas, applied_cap_watts=d0.decode.cap_watts),
    )
    before = d0.projected_provisioned_watts
    floor = (d0.prefill.replicas + d0.decode.replicas) * 4 * 200.0  # everything at the lowest cap
    assert before > floor + 100
    cut = (before + floor) / 2
    d1 = planner.tick(obs(time_s=5, rate=16.0, budget=cut, **state))
    assert d1.projected_provisioned_watts <= cut
    assert (d1.prefill.replicas, d1.decode.replicas) == (d0.prefill.replicas, d0.decode.replicas)
    assert d1.steps and d1.steps[0].kind is StepKind.SET_CAP
    assert d1.steps[-1].provisioned_after_watts <= cut


def test_deep_budget_cut_removes_replicas_on_a_cap_tick(profile: FakeProfile) -> None:
    planner = build_planner(make_config(), profile)
    d0 = planner.tick(obs(time_s=0, rate=12.0))
    n = d0.prefill.replicas + d0.decode.replicas
    assert n > 2
    cut = 2 * 4 * 200.0 + 1.0  # room for two replicas at the lowest cap
    d1 = planner.tick(obs(time_s=5, rate=12.0, budget=cut,
                          prefill=RoleState(d0.prefill.replicas, applied_cap_watts=d0.prefill.cap_watts),
                          decode=RoleState(d0.decode.replicas, applied_cap_watts=d0.decode.cap_watts)))
    assert d1.replicas_may_change
    assert Reason.BUDGET_CUT in d1.reasons
    assert d1.projected_provisioned_watts <= cut
    assert d1.prefill.replicas >= 1 and d1.decode.replicas >= 1


def test_minimum_that_does_not_fit_is_reported_infeasible(profile: FakeProfile) -> None:
    config = make_config(budget_watts=1000.0, prefill={"min_replicas": 1}, decode={"min_replicas": 1})
    d = build_planner(config, profile).tick(obs(budget=1000.0))
    assert d.infeasible
    assert Reason.INFEASIBLE_MIN_REPLICAS in d.reasons
    assert d.projected_provisioned_watts <= 1000.0


def test_idle_scales_to_minimum_after_configured_ticks(profile: FakeProfile) -> None:
    config = make_config(idle_ticks_to_min=2, prefill={"min_replicas": 1}, decode={"min_replicas": 1})
    planner = build_planner(config, profile)
    busy = planner.tick(obs(time_s=0, rate=12.0))
    assert busy.prefill.replicas + busy.decode.replicas > 2
    first_idle = planner.tick(obs(time_s=60, rate=0.0, isl=None, osl=None))
    assert Reason.HOLD_NO_DATA in first_idle.reasons
    assert first_idle.prefill.replicas == busy.prefill.replicas
    second_idle = planner.tick(obs(time_s=120, rate=0.0, isl=None, osl=None))
    assert Reason.IDLE_SCALE_TO_MIN in second_idle.reasons
    assert (second_idle.prefill.replicas, second_idle.decode.replicas) == (1, 1)


def test_missing_rate_is_not_idle_and_restarts_the_idle_count(profile: FakeProfile) -> None:
    """``None`` (absent or NaN series) is no evidence of zero traffic: it holds, and zero-traffic windows must
    follow one another for ``idle_ticks_to_min`` adjustment ticks."""
    config = make_config(idle_ticks_to_min=2, prefill={"min_replicas": 1}, decode={"min_replicas": 1})
    planner = build_planner(config, profile)
    busy = planner.tick(obs(time_s=0, rate=12.0))
    held = (busy.prefill.replicas, busy.decode.replicas)
    for i, rate in enumerate((None, None, 0.0, None, 0.0, None, None)):
        d = planner.tick(obs(time_s=60.0 * (i + 1), rate=rate, isl=None, osl=None))
        assert (d.prefill.replicas, d.decode.replicas) == held, (i, rate, d.reasons)
        assert Reason.IDLE_SCALE_TO_MIN not in d.reasons
        if rate is None:
            assert Reason.METRICS_MISSING in d.reasons and Reason.HOLD_NO_DATA in d.reasons
    d = planner.tick(obs(time_s=480, rate=0.0, isl=None, osl=None))
    assert Reason.IDLE_SCALE_TO_MIN not in d.reasons  # one zero window so far
    d = planner.tick(obs(time_s=540, rate=0.0, isl=None, osl=None))
    assert Reason.IDLE_SCALE_TO_MIN in d.reasons and (d.prefill.replicas, d.decode.replicas) == (1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(rate=math.nan),
        dict(rate=-3.0),
        dict(rate=math.inf),
        dict(isl=None),
        dict(osl=math.nan),
        dict(ttft_ms=math.nan, itl_ms=-1.0),
        dict(prefill=RoleState(0), decode=RoleState(0)),
        dict(prefill=RoleState(-2, applied_cap_watts=math.nan)),
        dict(budget=math.nan),
        dict(time_s=math.nan),
        dict(source_ok=False, source_error="connection refused"),
    ],
)
@pytest.mark.parametrize("policy", policy_names())
def test_bad_observations_never_crash_and_hold(policy: str, bad: dict[str, object], profile: FakeProfile) -> None:
    planner = build_planner(make_config(), profile, policy)
    d0 = planner.tick(obs(time_s=0))
    kwargs: dict[str, object] = dict(time_s=60.0)
    kwargs.update(bad)
    d1 = planner.tick(obs(**kwargs))  # type: ignore[arg-type]
    assert isinstance(d1, Decision)
    assert all(math.isfinite(s.provisioned_after_watts) for s in d1.steps)
    if "prefill" in bad or "ttft_ms" in bad:
        return  # usable load data: the planner may act normally
    assert (d1.prefill.replicas, d1.decode.replicas) == (d0.prefill.replicas, d0.decode.replicas)
    if "source_ok" in bad:
        assert Reason.SOURCE_ERROR_HOLD in d1.reasons
    elif policy != "static":
        assert Reason.BAD_OBSERVATION in d1.reasons
    assert d1.notes


def test_bad_first_observation_holds_current_replicas(profile: FakeProfile) -> None:
    planner = build_planner(make_config(), profile)
    d = planner.tick(obs(rate=math.nan, prefill=RoleState(3, applied_cap_watts=None),
                         decode=RoleState(2, applied_cap_watts=None)))
    assert (d.prefill.replicas, d.decode.replicas) == (3, 2)
    assert Reason.BAD_OBSERVATION in d.reasons
    assert d.projected_provisioned_watts <= d.budget_watts


def test_oracle_uses_the_true_load(config: Config, profile: FakeProfile) -> None:
    planner = build_planner(config, profile, "oracle")
    d = planner.tick(obs(rate=1.0), oracle_load=LoadForecast(12.0, 2000.0, 300.0))
    ours = build_planner(config, profile).tick(obs(rate=12.0))
    assert (d.prefill, d.decode) == (ours.prefill, ours.decode)
    assert d.forecast == LoadForecast(12.0, 2000.0, 300.0)


def test_a_surge_between_adjustments_raises_caps_on_the_replicas_already_there(profile: FakeProfile) -> None:
    planner = build_planner(make_config(adjustment_interval_s=60, cap_interval_s=5), profile)
    d0 = planner.tick(obs(time_s=0, rate=4.0))
    state: dict[str, Any] = dict(prefill=RoleState(d0.prefill.replicas, applied_cap_watts=d0.prefill.cap_watts),
                 decode=RoleState(d0.decode.replicas, applied_cap_watts=d0.decode.cap_watts))
    calm = planner.tick(obs(time_s=5, rate=4.0, **state))
    surge = planner.tick(obs(time_s=10, rate=7.0, **state))
    assert not surge.replicas_may_change
    assert (surge.prefill.replicas, surge.decode.replicas) == (d0.prefill.replicas, d0.decode.replicas)
    assert surge.prefill.cap_watts + surge.decode.cap_watts > calm.prefill.cap_watts + calm.decode.cap_watts
    assert surge.forecast is not None and surge.forecast.request_rate_per_s == 7.0


def test_time_going_backwards_restarts_the_adjustment_clock(profile: FakeProfile) -> None:
    planner = build_planner(make_config(), profile)
    planner.tick(obs(time_s=1000.0))
    d = planner.tick(obs(time_s=10.0, rate=12.0))
    assert d.replicas_may_change
    assert any("backwards" in n for n in d.notes)


class _PickyProfile(FakeProfile):
    """A profile that refuses long prompts, as a measured table ending at some ISL might."""

    def prefill_throughput_tokens_per_s_per_gpu(self, isl_tokens: float, cap_watts: float,
                                                ttft_target_s: float | None = None) -> float:
        from powerplanner.errors import ProfileError

        if isl_tokens > 10_000:
            raise ProfileError("ISL beyond the profiled range; profile longer prompts")
        return super().prefill_throughput_tokens_per_s_per_gpu(isl_tokens, cap_watts, ttft_target_s)


@pytest.mark.parametrize("policy", ["ours", "dynamo-power"])
def test_a_profile_error_holds_instead_of_crashing(policy: str) -> None:
    planner = build_planner(make_config(), _PickyProfile(), policy)
    d0 = planner.tick(obs(time_s=0))
    d1 = planner.tick(obs(time_s=60, isl=50_000.0))
    assert (d1.prefill.replicas, d1.decode.replicas) == (d0.prefill.replicas, d0.decode.replicas)
    assert any("profiled range" in n for n in d1.notes)
    assert d1.projected_provisioned_watts <= d1.budget_watts
