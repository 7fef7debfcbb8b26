"""Property tests of the engine's conservation laws under random traces and random actuation scripts."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.model.profiles import load_profile
from powerplanner.sim.engine import simulate
from powerplanner.sim.settings import SimSettings
from powerplanner.sim.types import Trace
from tests.support.profiles import ClosedFormProfile
from tests.support.scripted_planner import ScriptedPlanner

_ENGINE = engine_settings(config_from_mapping({"budget": {"watts": 1e6}}))

_actions = st.dictionaries(
    keys=st.sampled_from([0.0, 15.0, 30.0, 45.0, 70.0, 100.0]),
    values=st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([200.0, 350.0, 500.0, 700.0]),
                     st.sampled_from([200.0, 300.0, 380.0, 700.0])),
    max_size=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 300),
    rate=st.floats(0.5, 40.0),
    script=_actions,
    start_s=st.sampled_from([0.0, 20.0]),
    kv_zero=st.booleans(),
)
def test_conservation_under_random_actuation(seed: int, n: int, rate: float, script: dict[float, tuple[int, int,
                                             float, float]], start_s: float, kv_zero: bool) -> None:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    arrival -= arrival[0]
    trace = Trace("random", arrival, rng.integers(1, 5000, n), rng.integers(1, 500, n))
    extra = {"kv_transfer_base_s": 0.0, "kv_transfer_s_per_token": 0.0} if kv_zero else {}
    sim_settings = SimSettings(initial_prefill_replicas=1, initial_decode_replicas=1, replica_start_s=start_s,
                               drain_limit_s=300.0, **extra)  # type: ignore[arg-type]
    planner = ScriptedPlanner(script=dict(script))
    result = simulate(trace, ClosedFormProfile(), planner, _ENGINE, sim_settings, 1e6)

    # every request completes or is reported unfinished; per-request arrays line up
    assert 0 <= result.completed <= result.requests == n
    assert len(result.ttft_ms) == len(result.itl_ms) == len(result.request_index) == result.completed
    assert np.all(result.ttft_ms >= 0) and np.all(result.itl_ms >= 0)
    assert result.output_tokens == int(trace.osl_tokens[result.request_index].sum())
    if result.completed < n:
        assert result.simulated_s >= trace.duration_s + 300.0 - 1e-9
    # energy is the integral of the drawn power series and lies between idle and provisioned power
    s = result.series
    assert np.all(np.diff(s.time_s) >= 0)
    integral = float(np.sum(s.drawn_watts[1:] * np.diff(s.time_s)))
    assert abs(integral - result.energy_j) <= 1e-6 * max(1.0, result.energy_j)
    assert result.energy_j >= ClosedFormProfile().idle_watts() * result.gpu_seconds * (1 - 1e-9) - 1e-6
    assert result.energy_j <= float(np.sum(s.provisioned_watts[:-1] * np.diff(s.time_s))) * (1 + 1e-9) + 1e-6
    assert np.all(s.prefill_replicas >= 0) and np.all(s.decode_replicas >= 0)
    assert result.seconds_over_budget == 0.0


def test_real_profile_low_load_latencies_and_cap_slowdown() -> None:
    profile = load_profile(name="llama2-70b-h100-tp4")
    isl, osl = [300, 1500, 4000], [50, 200, 10]
    trace = Trace("sparse", np.array([0.0, 100.0, 200.0]), np.array(isl), np.array(osl))
    for cap in (700.0, 450.0, 250.0):
        sim_settings = SimSettings(initial_prefill_replicas=1, initial_decode_replicas=1, kv_transfer_base_s=0.0,
                                   kv_transfer_s_per_token=0.0, initial_prefill_cap_watts=cap,
                                   initial_decode_cap_watts=cap)
        result = simulate(trace, profile, ScriptedPlanner(), _ENGINE, sim_settings, 1e6)
        for k in range(3):
            assert abs(result.ttft_ms[k] - 1000 * profile.prefill_time_s(isl[k], cap)) < 1e-6
            expected_itl = profile.decode_itl_s(1, isl[k] + (osl[k] - 1) / 2, cap)
            assert abs(result.itl_ms[k] / (1000 * expected_itl) - 1) < 1e-6
    assert profile.prefill_time_s(2000, 350.0) > profile.prefill_time_s(2000, 700.0)
