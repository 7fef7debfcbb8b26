"""Conservation and fidelity tests of the discrete-event engine, with a fake profile and scripted planners."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.model.roles import Role
from powerplanner.model.values import Decision, LoadForecast, Observation, Step, StepKind
from powerplanner.sim.engine import simulate
from powerplanner.sim.settings import EngineSettings, SimSettings
from powerplanner.sim.types import Trace
from tests.support.profiles import ClosedFormProfile
from tests.support.scripted_planner import ScriptedPlanner


def _engine(**planner: object) -> EngineSettings:
    return engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": planner}))


def _poisson_trace(n: int, rate_per_s: float, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    arrival -= arrival[0]
    return Trace("poisson", arrival, rng.integers(100, 2000, n), rng.integers(1, 300, n))


def _sparse_trace(isl: list[int], osl: list[int], gap_s: float = 100.0) -> Trace:
    n = len(isl)
    return Trace("sparse", np.arange(n, dtype=np.float64) * gap_s, np.asarray(isl, dtype=np.int64),
                 np.asarray(osl, dtype=np.int64))


def _settings(**kw: object) -> SimSettings:
    base: dict[str, object] = {"initial_prefill_replicas": 2, "initial_decode_replicas": 2}
    base.update(kw)
    return SimSettings(**base)  # type: ignore[arg-type]


def test_every_request_completes_under_enough_capacity() -> None:
    trace = _poisson_trace(3000, 20.0)
    result = simulate(trace, ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 1e6)
    assert result.requests == 3000
    assert result.completed == 3000
    assert np.array_equal(result.request_index, np.arange(3000))
    assert result.output_tokens == int(trace.osl_tokens.sum())
    assert result.simulated_s >= trace.duration_s
    assert np.all(result.ttft_ms > 0)
    assert np.all(np.isfinite(result.itl_ms))
    assert set(result.unfinished_by_stage.values()) == {0}
    s = result.series
    assert len(s.waiting_requests) == len(s.decoding_requests) == len(s.time_s)
    assert s.waiting_requests[-1] == 0 and s.decoding_requests[-1] == 0
    assert int(s.decoding_requests.max()) > 0


def test_requests_without_capacity_are_reported_unfinished_not_dropped() -> None:
    trace = _poisson_trace(500, 10.0)
    planner = ScriptedPlanner(script={10.0: (0, 2, 700.0, 700.0)})  # prefill scaled to zero at t=10
    settings = _settings(drain_limit_s=60.0)
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), settings, 1e6)
    assert 0 < result.completed < result.requests
    assert result.simulated_s == pytest.approx(trace.duration_s + 60.0)
    assert len(result.ttft_ms) == len(result.itl_ms) == len(result.request_index) == result.completed
    assert np.all(np.diff(result.request_index) > 0)
    stages = result.unfinished_by_stage
    assert sum(stages.values()) == result.requests - result.completed
    assert stages["prefill_queue"] > 0 and stages["not_arrived"] == 0
    assert result.series.waiting_requests[-1] == result.requests - result.completed
    # every request that arrived before the prefill replicas were gone (minus the ones in flight) finished
    assert result.completed >= int(np.searchsorted(trace.arrival_s, 9.0))


def test_energy_equals_integral_of_drawn_power_series() -> None:
    trace = _poisson_trace(2000, 15.0)
    planner = ScriptedPlanner(script={30.0: (3, 3, 450.0, 300.0), 90.0: (1, 2, 700.0, 700.0)})
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), _settings(), 1e6)
    s = result.series
    integral = float(np.sum(s.drawn_watts[1:] * np.diff(s.time_s)))
    assert integral == pytest.approx(result.energy_j, rel=1e-9)
    assert s.time_s[-1] == pytest.approx(result.simulated_s)
    # bounds: at least every held GPU idling, at most every held GPU at its cap
    idle = ClosedFormProfile().idle_watts()
    assert result.energy_j >= idle * result.gpu_seconds * (1 - 1e-9)
    provisioned_integral = float(np.sum(s.provisioned_watts[:-1] * np.diff(s.time_s)))
    assert result.energy_j <= provisioned_integral * (1 + 1e-9)
    assert result.peak_drawn_watts <= result.peak_provisioned_watts


def test_gpu_seconds_count_every_held_gpu() -> None:
    trace = _sparse_trace([500] * 3, [10] * 3, gap_s=50.0)
    result = simulate(trace, ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 1e6)
    assert result.gpu_seconds == pytest.approx(4 * 4 * result.simulated_s)


@pytest.mark.parametrize("cap_watts", [700.0, 500.0, 350.0, 200.0])
def test_low_load_latencies_match_the_profile(cap_watts: float) -> None:
    profile = ClosedFormProfile()
    isl = [200, 1000, 3000, 50]
    osl = [100, 20, 400, 2]
    settings = _settings(initial_prefill_cap_watts=cap_watts, initial_decode_cap_watts=cap_watts)
    result = simulate(_sparse_trace(isl, osl), profile, ScriptedPlanner(), _engine(), settings, 1e6)
    assert result.completed == 4
    for k in range(4):
        expected_ttft = (profile.prefill_time_s(isl[k], cap_watts) + settings.kv_transfer_base_s
                         + settings.kv_transfer_s_per_token * isl[k])
        assert result.ttft_ms[k] == pytest.approx(1000 * expected_ttft, rel=1e-9)
        # batch of one: the mean context over its decode is isl + (osl - 1) / 2
        expected_itl = profile.decode_itl_s(1, isl[k] + (osl[k] - 1) / 2, cap_watts)
        assert result.itl_ms[k] == pytest.approx(1000 * expected_itl, rel=1e-6)


def test_caps_slow_prefill_as_the_profile_says() -> None:
    profile = ClosedFormProfile()
    trace = _sparse_trace([2000] * 5, [2] * 5)
    zero_kv = {"kv_transfer_base_s": 0.0, "kv_transfer_s_per_token": 0.0}
    tdp = simulate(trace, profile, ScriptedPlanner(), _engine(), _settings(**zero_kv), 1e6)
    capped = simulate(trace, profile, ScriptedPlanner(), _engine(),
                      _settings(initial_prefill_cap_watts=350.0, **zero_kv), 1e6)
    ratio = capped.ttft_ms / tdp.ttft_ms
    assert ratio == pytest.approx(np.full(5, profile.slowdown(Role.PREFILL, 350.0)), rel=1e-9)
    assert ratio[0] == pytest.approx(1.3)


def test_cap_change_mid_batch_rescales_remaining_prefill() -> None:
    profile = ClosedFormProfile(prefill_a_s=0.0, prefill_b_s=1e-3)  # 8 s for one 8000-token prompt at TDP
    trace = _sparse_trace([8000], [2])
    planner = ScriptedPlanner(script={0.0: (2, 2, 350.0, 700.0)})  # cap cut issued at t=0, in force at t=1
    settings = _settings(kv_transfer_base_s=0.0, kv_transfer_s_per_token=0.0)
    result = simulate(trace, profile, planner, _engine(), settings, 1e6)
    expected_s = 1.0 + 7.0 * profile.slowdown(Role.PREFILL, 350.0)
    assert result.ttft_ms[0] == pytest.approx(1000 * expected_s)


def test_decode_batching_shares_iterations() -> None:
    profile = ClosedFormProfile()
    # two requests arrive together: prefilled in one batch, decoded in one batch of two on one replica
    trace = Trace("pair", np.array([0.0, 0.0]), np.array([1000, 1000]), np.array([101, 201]))
    settings = _settings(initial_decode_replicas=1, kv_transfer_base_s=0.0, kv_transfer_s_per_token=0.0)
    result = simulate(trace, profile, ScriptedPlanner(), _engine(), settings, 1e6)
    itl_pair = profile.decode_itl_s(2, 1000 + 50, 700.0)
    assert result.itl_ms[0] == pytest.approx(1000 * itl_pair, rel=1e-9)
    # the second request ran 100 iterations in a pair, then 100 alone
    itl_alone = profile.decode_itl_s(1, 1000 + 100 + 50, 700.0)
    assert result.itl_ms[1] == pytest.approx(1000 * (100 * itl_pair + 100 * itl_alone) / 200, rel=1e-9)


def test_kv_capacity_bounds_the_decode_batch() -> None:
    profile = ClosedFormProfile(kv_tokens=2000.0)  # room for one 1000-token context, two 900-token ones
    trace = Trace("kv", np.array([0.0, 0.0]), np.array([1500, 1500]), np.array([11, 11]))
    settings = _settings(initial_decode_replicas=1, kv_transfer_base_s=0.0, kv_transfer_s_per_token=0.0)
    result = simulate(trace, profile, ScriptedPlanner(), _engine(), settings, 1e6)
    # the second waits for the first to finish decoding: its TTFT includes the first's decode
    first_decode_s = 10 * profile.decode_itl_s(1, 1505, 700.0)
    assert result.ttft_ms[1] - result.ttft_ms[0] == pytest.approx(1000 * first_decode_s, rel=1e-6)


def test_replica_start_holds_gpus_at_cap_before_serving() -> None:
    trace = _sparse_trace([500] * 40, [5] * 40, gap_s=10.0)
    planner = ScriptedPlanner(script={20.0: (4, 2, 700.0, 700.0)})
    settings = _settings(replica_start_s=120.0)
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), settings, 1e6)
    s = result.series
    at = {round(float(t), 6): k for k, t in enumerate(s.time_s)}
    assert s.prefill_replicas[at[15.0]] == 2
    assert s.prefill_replicas[at[20.0]] == 4
    assert s.provisioned_watts[at[20.0]] == pytest.approx(6 * 4 * 700.0)
    ready = [o.prefill.ready_replicas for o in planner.observations]
    starting = [o.prefill.starting_replicas for o in planner.observations]
    times = [o.time_s for o in planner.observations]
    assert ready[times.index(135.0)] == 2 and starting[times.index(135.0)] == 2
    assert ready[times.index(140.0)] == 4 and starting[times.index(140.0)] == 0


def test_cap_cut_applies_after_latency_and_later_steps_wait_for_the_next_tick() -> None:
    """As the live actuator: a scale-up written in the same tick as a cap cut could start before the
    agents apply the cut, so it waits for the next tick's re-plan."""
    trace = _sparse_trace([500] * 20, [5] * 20, gap_s=10.0)
    planner = ScriptedPlanner(script={50.0: (3, 2, 400.0, 700.0)})  # cap down, then scale up
    budget = 2 * 4 * 700.0 + 2 * 4 * 700.0
    settings = _settings(cap_apply_s=1.0)
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), settings, budget)
    s = result.series
    k = int(np.searchsorted(s.time_s, 51.0))
    assert s.time_s[k] == pytest.approx(51.0)
    assert s.prefill_cap_watts[k] == 400.0 and s.prefill_replicas[k] == 2
    assert s.prefill_cap_watts[k - 1] == 700.0 and s.prefill_replicas[k - 1] == 2
    n = int(np.searchsorted(s.time_s, 55.0))
    assert s.time_s[n] == pytest.approx(55.0) and s.prefill_replicas[n] == 3
    assert result.seconds_over_budget == 0.0
    assert result.peak_provisioned_watts == pytest.approx(budget)


def test_seconds_over_budget_are_measured() -> None:
    trace = _sparse_trace([500] * 20, [5] * 20, gap_s=10.0)
    planner = ScriptedPlanner(script={50.0: (3, 2, 700.0, 700.0)})  # one replica too many from t=50
    budget = 4 * 4 * 700.0
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), _settings(), budget)
    assert result.seconds_over_budget == pytest.approx(result.simulated_s - 50.0)
    assert result.seconds_over_budget_after_cut == 0.0


def test_budget_cut_grace_is_reported_separately() -> None:
    trace = _sparse_trace([500] * 20, [5] * 20, gap_s=10.0)
    planner = ScriptedPlanner(script={100.0: (2, 2, 350.0, 350.0)})  # obeys the cut at the tick that sees it
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), _settings(cap_apply_s=1.0),
                      lambda t: 16 * 700.0 if t < 100.0 else 16 * 350.0)
    assert result.seconds_over_budget == pytest.approx(1.0)
    assert result.seconds_over_budget_after_cut == pytest.approx(1.0)


def test_initial_caps_are_lowered_to_start_within_budget() -> None:
    trace = _sparse_trace([500] * 3, [5] * 3)
    result = simulate(trace, ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 8000.0)
    assert result.series.provisioned_watts[0] <= 8000.0
    assert result.seconds_over_budget == 0.0


def test_draining_replica_finishes_in_flight_requests_then_releases() -> None:
    profile = ClosedFormProfile()
    trace = Trace("long", np.array([0.0, 0.0]), np.array([500, 500]), np.array([2000, 2000]))
    planner = ScriptedPlanner(script={5.0: (2, 1, 700.0, 700.0)})
    settings = _settings(initial_decode_replicas=2)
    result = simulate(trace, profile, planner, _engine(), settings, 1e6)
    assert result.completed == 2
    draining = [o.decode.draining_replicas for o in planner.observations]
    assert max(draining) == 1
    assert result.series.decode_replicas[-1] == 1
    # each request kept its own replica (batch of one) although one replica was draining
    assert result.itl_ms[0] == pytest.approx(result.itl_ms[1], rel=1e-6)


def test_observation_windows_follow_the_traffic() -> None:
    trace = _poisson_trace(6000, 20.0, seed=3)
    planner = ScriptedPlanner()
    engine = _engine(adjustment_interval_s=60.0, cap_interval_s=5.0)
    simulate(trace, ClosedFormProfile(), planner, engine, _settings(initial_prefill_replicas=3), 1e6, oracle=True)
    first = planner.observations[0]
    assert first.time_s == 0.0 and first.request_rate_per_s is None and first.ttft_ms is None
    mid = next(o for o in planner.observations if o.time_s == 120.0)
    in_window = (trace.arrival_s >= 60.0) & (trace.arrival_s < 120.0)
    assert mid.window_s == 60.0
    assert mid.request_rate_per_s == pytest.approx(in_window.sum() / 60.0, rel=0.01)
    assert mid.isl_tokens == pytest.approx(trace.isl_tokens[in_window].mean(), rel=0.01)
    assert mid.ttft_ms is not None and mid.itl_ms is not None and mid.osl_tokens is not None
    assert mid.prefill.measured_draw_watts is not None and mid.measured_power_watts is not None
    oracle = planner.oracle_loads[planner.observations.index(mid)]
    ahead = (trace.arrival_s >= 120.0) & (trace.arrival_s < 180.0)
    assert oracle is not None
    assert oracle.request_rate_per_s == pytest.approx(ahead.sum() / 60.0)
    assert oracle.osl_tokens == pytest.approx(trace.osl_tokens[ahead].mean())


def test_progress_reaches_one_and_is_monotone() -> None:
    seen: list[float] = []
    simulate(_poisson_trace(300, 10.0), ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 1e6,
             progress=seen.append)
    assert seen[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(seen))


def test_empty_trace() -> None:
    trace = Trace("empty", np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    result = simulate(trace, ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 1e6)
    assert result.requests == 0 and result.completed == 0 and result.simulated_s == 0.0
    assert math.isfinite(result.energy_j)


def test_initial_replicas_are_sized_for_the_opening_load_when_not_given() -> None:
    profile = ClosedFormProfile()
    engine = _engine()
    heavy = _poisson_trace(3000, 40.0)
    light = _poisson_trace(300, 0.5)
    unset = SimSettings()
    sized = simulate(heavy, profile, ScriptedPlanner(), engine, unset, 1e6)
    small = simulate(light, profile, ScriptedPlanner(), engine, unset, 1e6)
    assert sized.series.prefill_replicas[0] > small.series.prefill_replicas[0] >= 1
    assert sized.series.decode_replicas[0] >= small.series.decode_replicas[0] >= 1
    given = simulate(heavy, profile, ScriptedPlanner(), engine, _settings(), 1e6)
    assert (given.series.prefill_replicas[0], given.series.decode_replicas[0]) == (2, 2)
    # bounded by the budget at the lowest caps
    tight = simulate(heavy, profile, ScriptedPlanner(), engine, unset, 4 * 4 * 200.0)
    held_gpus = 4 * (tight.series.prefill_replicas[0] + tight.series.decode_replicas[0])
    assert held_gpus * 200.0 <= 4 * 4 * 200.0
    assert tight.seconds_over_budget == 0.0


def test_scale_up_is_bounded_by_the_gpu_pool() -> None:
    trace = _sparse_trace([500] * 10, [5] * 10, gap_s=10.0)
    planner = ScriptedPlanner(script={20.0: (5, 2, 700.0, 700.0)})
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), _settings(gpu_pool=20), 1e6)
    assert int(result.series.prefill_replicas.max()) == 3  # 2 + 2 replicas of 4 GPUs hold 16; room for one more


class _DrainThenAdd(ScriptedPlanner):
    """At t=10 removes a decode replica; at every later tick asks for it back with wait_for_drain."""

    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision:
        decision = super().tick(obs, oracle_load)
        if obs.time_s == 10.0:
            return replace(decision, steps=(Step(StepKind.SCALE, Role.DECODE, 1, 0.0),))
        if obs.time_s > 10.0:
            return replace(decision, steps=(Step(StepKind.SCALE, Role.DECODE, 2, 0.0, wait_for_drain=True),))
        return decision


def test_wait_for_drain_steps_wait_until_draining_replicas_release() -> None:
    # two long requests: one per decode replica, so the removed replica drains for a while
    trace = Trace("long", np.array([0.0, 0.0, 200.0]), np.array([500, 500, 500]), np.array([3000, 3000, 2]))
    planner = _DrainThenAdd()
    result = simulate(trace, ClosedFormProfile(), planner, _engine(), _settings(replica_start_s=0.0), 1e6)
    obs = planner.observations
    draining = [o for o in obs if o.decode.draining_replicas > 0]
    assert draining, "the removed replica should drain for several ticks"
    assert all(o.decode.desired_replicas == 1 for o in draining)  # the scale-up waited
    after = [o for o in obs if o.time_s > draining[-1].time_s + 5.0]
    assert after and after[0].decode.desired_replicas == 2
    assert result.completed == 3
