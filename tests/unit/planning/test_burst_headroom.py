"""Ours on bursty load: replicas keep headroom for recent under-forecasts; caps let ready replicas carry the load.

Both planners in each comparison see the same observations (open loop, applied caps always given), so
their predictors and correction factors are identical and only the policy's choice differs.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.config import Config
from powerplanner.core_settings import build_planner
from powerplanner.model.roles import ROLES
from powerplanner.model.values import Decision, Reason, RoleState
from powerplanner.planning.planner import Planner
from tests.support.planner_inputs import make_config, obs
from tests.support.profiles import FakeProfile

_NO_HEADROOM = {"burst_window_intervals": 0}


def _planner(profile: FakeProfile, budget_watts: float = 20_000.0, **planner: Any) -> Planner:
    config = make_config(budget_watts, adjustment_interval_s=60, cap_interval_s=5, **planner)
    return build_planner(config, profile, "ours")


def _state(replicas: int, cap_watts: float = 400.0, starting: int = 0) -> RoleState:
    return RoleState(replicas, starting_replicas=starting, applied_cap_watts=cap_watts)


def _adjust(planner: Planner, time_s: float, rate: float, budget_watts: float = 20_000.0) -> Decision:
    return planner.tick(obs(time_s=time_s, rate=rate, budget=budget_watts, prefill=_state(4), decode=_state(4)))


def _replicas(d: Decision) -> tuple[int, int]:
    return d.prefill.replicas, d.decode.replicas


def _peak_note(d: Decision) -> float | None:
    for note in d.notes:
        m = re.search(r"recent peak of ([0-9.e+]+) req/s", note)
        if m:
            return float(m.group(1))
    return None


def test_the_headroom_fields_have_documented_defaults() -> None:
    planner = make_config().planner
    assert planner.burst_window_intervals == 10
    assert planner.burst_error_multiple == 3.0


def test_steady_load_gets_no_headroom(profile: FakeProfile) -> None:
    """A predictor that is never caught out (steady load) leaves the mean sizing, and its energy, alone."""
    with_headroom, without = _planner(profile), _planner(profile, **_NO_HEADROOM)
    for k in range(8):
        a, b = _adjust(with_headroom, 60.0 * k, 8.0), _adjust(without, 60.0 * k, 8.0)
        assert (a.prefill, a.decode) == (b.prefill, b.decode)
        assert _peak_note(a) is None


def test_replicas_are_kept_through_a_lull_after_an_under_forecast_burst(profile: FakeProfile) -> None:
    rates = [5.0, 5.0, 5.0, 30.0, 2.0]
    with_headroom, without = _planner(profile), _planner(profile, **_NO_HEADROOM)
    decisions = [(_adjust(with_headroom, 60.0 * k, r), _adjust(without, 60.0 * k, r)) for k, r in enumerate(rates)]
    lull, lull_without = decisions[-1]
    assert lull.prefill.replicas > lull_without.prefill.replicas  # no shedding of prefill replicas in the lull
    assert lull.decode.replicas >= lull_without.decode.replicas
    peak = _peak_note(lull)
    assert peak is not None and lull.forecast is not None
    assert lull.forecast.request_rate_per_s < peak <= max(rates)  # never sized above what was observed
    # caps still follow the (low) forecast: the extra replicas run at caps no higher than the lean plan's
    assert lull.prefill.cap_watts <= lull_without.prefill.cap_watts
    assert lull.projected_provisioned_watts <= lull.budget_watts + 1e-6


def test_headroom_is_off_with_a_zero_window_or_multiple(profile: FakeProfile) -> None:
    rates = [5.0, 5.0, 30.0, 2.0, 2.0]
    planners = [_planner(profile, **_NO_HEADROOM), _planner(profile, burst_error_multiple=0.0)]
    runs = [[_adjust(p, 60.0 * k, r) for k, r in enumerate(rates)] for p in planners]
    assert [_replicas(d) for d in runs[0]] == [_replicas(d) for d in runs[1]]
    assert all(_peak_note(d) is None for run in runs for d in run)


def test_idle_reset_forgets_the_burst(profile: FakeProfile) -> None:
    planner = _planner(profile, idle_ticks_to_min=1)
    for k, rate in enumerate([5.0, 5.0, 30.0]):
        _adjust(planner, 60.0 * k, rate)
    idle = planner.tick(obs(time_s=180.0, rate=0.0, isl=None, osl=None, prefill=_state(4), decode=_state(4)))
    assert Reason.IDLE_SCALE_TO_MIN in idle.reasons
    resumed = _adjust(planner, 240.0, 2.0)
    fresh = _adjust(_planner(profile), 0.0, 2.0)
    assert _replicas(resumed) == _replicas(fresh)
    assert _peak_note(resumed) is None


def test_headroom_never_serves_less_of_the_forecast_than_the_lean_plan(profile: FakeProfile) -> None:
    """Under a binding budget more replicas mean lower caps; where holding the peak's replicas would serve less
    of the forecast than the forecast's own plan, the forecast's plan is kept."""
    rates = [2.0, 2.0, 2.0, 40.0, 2.0, 2.0, 2.0]
    activated = 0
    for budget in (4_000.0, 8_000.0, 12_000.0):
        with_headroom, without = _planner(profile, budget), _planner(profile, budget, **_NO_HEADROOM)
        for k, rate in enumerate(rates):
            a, b = _adjust(with_headroom, 60.0 * k, rate, budget), _adjust(without, 60.0 * k, rate, budget)
            assert a.projected_provisioned_watts <= budget + 1e-6
            assert min(a.predicted_attainment.values()) >= min(b.predicted_attainment.values()) - 1e-9
            activated += _peak_note(a) is not None
    assert activated > 0


def test_cap_tick_caps_let_the_ready_replicas_carry_the_load_during_a_scale_up(profile: FakeProfile) -> None:
    """A starting replica serves nothing: caps are chosen so the ready ones serve the forecast."""
    planner = _planner(profile, 60_000.0)
    d0 = planner.tick(obs(time_s=0, rate=20.0, budget=60_000.0, prefill=_state(4), decode=_state(4)))
    n_p, n_d = _replicas(d0)
    assert n_p >= 2
    all_ready = planner.tick(obs(time_s=5, rate=20.0, budget=60_000.0, prefill=_state(n_p, d0.prefill.cap_watts),
                                 decode=_state(n_d, d0.decode.cap_watts)))
    starting = planner.tick(obs(time_s=10, rate=20.0, budget=60_000.0,
                                prefill=_state(1, d0.prefill.cap_watts, starting=n_p - 1),
                                decode=_state(n_d, d0.decode.cap_watts)))
    assert _replicas(starting) == _replicas(all_ready) == (n_p, n_d)
    assert starting.prefill.cap_watts > all_ready.prefill.cap_watts
    assert starting.decode.cap_watts == all_ready.decode.cap_watts
    assert starting.projected_provisioned_watts <= 60_000.0 + 1e-6


def test_cap_tick_caps_during_a_scale_up_still_fit_the_budget(profile: FakeProfile) -> None:
    budget = 9_000.0
    planner = _planner(profile, budget)
    d0 = planner.tick(obs(time_s=0, rate=20.0, budget=budget, prefill=_state(4), decode=_state(4)))
    d = planner.tick(obs(time_s=5, rate=20.0, budget=budget,
                         prefill=_state(1, d0.prefill.cap_watts, starting=max(0, d0.prefill.replicas - 1)),
                         decode=_state(1, d0.decode.cap_watts, starting=max(0, d0.decode.replicas - 1))))
    assert d.projected_provisioned_watts <= budget + 1e-6


_rates = st.lists(st.one_of(st.just(0.0), st.floats(0.1, 60.0)), min_size=3, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rates=_rates, budget=st.floats(3_000.0, 80_000.0), window=st.integers(1, 12),
       multiple=st.floats(0.0, 6.0), ready=st.integers(0, 6), starting=st.integers(0, 4))
def test_headroom_only_adds_replicas_and_never_breaks_the_budget(
    rates: list[float], budget: float, window: int, multiple: float, ready: int, starting: int
) -> None:
    """Same observations, with and without headroom: on every sized adjustment tick the headroom plan has at
    least the lean plan's replicas per role (never fewer), and every decision fits the budget."""
    profile = FakeProfile()
    with_headroom = _planner(profile, budget, burst_window_intervals=window, burst_error_multiple=multiple)
    without = _planner(profile, budget, **_NO_HEADROOM)
    state: dict[str, Any] = dict(prefill=_state(ready, 400.0, starting), decode=_state(ready, 300.0, starting))
    for k, rate in enumerate(rates):
        for offset in (0.0, 5.0, 30.0):  # an adjustment tick, then two cap ticks
            o = obs(time_s=60.0 * k + offset, rate=rate, budget=budget, **state)
            a, b = with_headroom.tick(o), without.tick(o)
            for d in (a, b):
                if not d.infeasible:
                    assert d.projected_provisioned_watts <= budget + 1e-6
            if offset == 0.0 and Reason.SLA_SIZED in a.reasons and Reason.SLA_SIZED in b.reasons:
                for role in ROLES:
                    assert a.target(role).replicas >= b.target(role).replicas, (k, role)


def test_baselines_ignore_the_headroom(profile: FakeProfile) -> None:
    rates = [5.0, 5.0, 30.0, 2.0]
    for policy in ("dynamo-power", "dynamo-sla", "proportional", "static"):
        runs = []
        for planner_cfg in ({}, _NO_HEADROOM):
            config: Config = make_config(adjustment_interval_s=60, cap_interval_s=5, **planner_cfg)
            planner = build_planner(config, profile, policy)
            runs.append([(_adjust(planner, 60.0 * k, r).prefill, _adjust(planner, 60.0 * k + 5, r).decode)
                         for k, r in enumerate(rates)])
        assert runs[0] == runs[1], policy
