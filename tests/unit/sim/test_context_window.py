"""The engine and the profile's new dimensions: requests beyond the context window are refused and counted (as
vLLM rejects prompt + max_tokens over max_model_len), and a draw that follows the batch changes energy only."""

from __future__ import annotations

import numpy as np
import pytest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.plant import build_plant, parse_plant
from powerplanner.sim.engine import simulate
from powerplanner.sim.metrics import SlaTargets, summarize
from powerplanner.sim.settings import EngineSettings, SimSettings
from powerplanner.sim.types import Trace
from tests.support.profiles import ClosedFormProfile
from tests.support.scripted_planner import ScriptedPlanner

SLA = SlaTargets(ttft_ms=10_000.0, itl_ms=1_000.0)  # loose: only a refusal can miss


def _engine() -> EngineSettings:
    return engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": {}}))


def _settings() -> SimSettings:
    return SimSettings(initial_prefill_replicas=1, initial_decode_replicas=1)


def _trace(isl: list[int], osl: list[int], gap_s: float = 5.0) -> Trace:
    return Trace("t", np.arange(len(isl), dtype=np.float64) * gap_s, np.asarray(isl, dtype=np.int64),
                 np.asarray(osl, dtype=np.int64))


def test_a_request_beyond_llama2_70bs_window_is_refused_and_counted_apart() -> None:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    # 4,200 tokens (refused), exactly 4,096 (served: the window holds it), a short one, a 5,000-token prompt
    trace = _trace([4000, 3996, 500, 5000], [200, 100, 50, 10])
    result = simulate(trace, profile, ScriptedPlanner(), _engine(), _settings(), 1e6)
    assert result.refused == 2
    assert result.completed == 2
    assert result.request_index.tolist() == [1, 2]
    assert set(result.unfinished_by_stage.values()) == {0}
    assert result.simulated_s < trace.duration_s + 60.0  # the run ends when the served requests are done
    assert result.output_tokens == 150
    metrics = summarize(result, SLA)
    assert metrics.refused == 2 and metrics.to_json()["refused"] == 2
    # refused requests are left out of the attainments (the same under every policy): 2 of the 2 servable met both
    assert metrics.slo_attainment == pytest.approx(1.0)
    assert metrics.ttft_attainment == pytest.approx(1.0)


def test_the_planner_never_sees_refused_requests_as_load() -> None:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    planner = ScriptedPlanner()
    isl = [9000, 100] * 30  # a refused prompt beside every served one, one each second for a minute
    simulate(_trace(isl, [10] * len(isl), gap_s=1.0), profile, planner, _engine(), _settings(), 1e6)
    seen = [o.isl_tokens for o in planner.observations if o.isl_tokens is not None]
    assert seen and max(seen) == 100.0  # the 9,000-token prompts were refused at the door, never measured


def test_a_profile_without_a_window_refuses_nothing() -> None:
    trace = _trace([20_000, 100], [500, 10], gap_s=100.0)
    result = simulate(trace, ClosedFormProfile(), ScriptedPlanner(), _engine(), _settings(), 1e6)
    assert result.refused == 0 and result.completed == 2


@pytest.mark.parametrize("plant_spec", ["prefill-draw-by-batch", "decode.draw_half_batch=8"])
def test_a_draw_that_follows_the_batch_changes_energy_not_latency_at_tdp(plant_spec: str) -> None:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    plant = build_plant(profile, parse_plant(plant_spec))
    rng = np.random.default_rng(3)
    n = 400
    trace = Trace("p", np.cumsum(rng.exponential(0.25, n)), rng.integers(50, 2000, n), rng.integers(2, 200, n))
    flat = simulate(trace, profile, ScriptedPlanner(), _engine(), _settings(), 1e6)
    varied = simulate(trace, profile, ScriptedPlanner(), _engine(), _settings(), 1e6, plant=plant)
    # Caps at TDP never bind (natural draw <= TDP), so a lighter batch is exactly as fast, and draws less.
    assert np.array_equal(flat.ttft_ms, varied.ttft_ms) and np.array_equal(flat.itl_ms, varied.itl_ms)
    assert varied.energy_j < flat.energy_j
    assert varied.peak_drawn_watts <= flat.peak_drawn_watts
