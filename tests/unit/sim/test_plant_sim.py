"""A plant apart from the planner's profile: the simulated GPUs follow the plant, the planner its own profile."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import engine_settings
from powerplanner.errors import ConfigError
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.plant import build_plant, parse_plant
from powerplanner.model.roles import Role
from powerplanner.sim.engine import simulate
from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.runner import PolicyJob, run_job
from powerplanner.sim.scenarios import Scenario, SyntheticSpec, TraceSpec
from powerplanner.sim.settings import SimSettings
from powerplanner.sim.traces import LognormalLengths
from powerplanner.sim.types import SimResult, Trace
from tests.support.scripted_planner import ScriptedPlanner

PLANT = "prefill-compute-bound,decode.natural_draw_watts=300"


def _trace(n: int = 600, rate_per_s: float = 4.0) -> Trace:
    rng = np.random.default_rng(3)
    arrival = np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    arrival -= arrival[0]
    return Trace("poisson", arrival, rng.integers(200, 3000, n), rng.integers(20, 300, n))


def _run(plant_spec: str | None) -> tuple[SimResult, ScriptedPlanner]:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    plant = build_plant(profile, parse_plant(plant_spec)) if plant_spec is not None else None
    planner = ScriptedPlanner()
    engine = engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": {"cap_interval_s": 5.0}}))
    settings = SimSettings(initial_prefill_replicas=2, initial_decode_replicas=2, initial_prefill_cap_watts=350.0,
                           initial_decode_cap_watts=350.0)
    return simulate(_trace(), profile, planner, engine, settings, 1e6, plant=plant), planner


def test_the_simulated_gpus_follow_the_plant() -> None:
    same, _ = _run(None)
    as_profile, _ = _run("profile")
    plant, planner = _run(PLANT)
    assert as_profile.energy_j == same.energy_j and np.array_equal(as_profile.ttft_ms, same.ttft_ms)
    # prefill fully compute-bound is slower at a 350 W cap; decode drawing 300 W uncapped draws less
    assert float(np.median(plant.ttft_ms)) > float(np.median(same.ttft_ms)) * 1.05
    assert plant.energy_j < same.energy_j
    # what the planner measures is the plant's draw (the observation carries it), never the profile's belief
    decode_draw = [o.decode.measured_draw_watts for o in planner.observations if o.decode.measured_draw_watts]
    assert decode_draw and max(decode_draw) <= 2 * 4 * 300.0 + 1e-6


def _scenario(plant: str) -> Scenario:
    syn = SyntheticSpec(120.0, 2.0, LognormalLengths(800, 3000), LognormalLengths(120, 400))
    return Scenario(name="tiny", trace=TraceSpec(synthetic=syn), sla=SlaTargets(1000.0, 60.0), budget_watts=30000.0,
                    planner={"adjustment_interval_s": 30.0, "cap_interval_s": 5.0}, plant=plant,
                    sim={"replica_start_s": 30.0, "drain_limit_s": 300.0})


def test_the_planner_plans_with_its_profile_and_the_engine_runs_the_plant(monkeypatch: pytest.MonkeyPatch) -> None:
    import powerplanner.core_settings as core_settings
    import powerplanner.sim.engine as engine_module

    seen: dict[str, Any] = {}
    real_build, real_simulate = core_settings.build_planner, engine_module.simulate

    def build_planner(config: Any, profile: Any, *args: Any) -> Any:
        seen["planner_profile"] = profile
        return real_build(config, profile, *args)

    def spy(trace: Trace, profile: Any, planner: Any, *args: Any, **kw: Any) -> SimResult:
        seen["engine_profile"], seen["plant"] = profile, kw["plant"]
        return real_simulate(trace, profile, planner, *args, **kw)

    monkeypatch.setattr(core_settings, "build_planner", build_planner)
    monkeypatch.setattr(engine_module, "simulate", spy)
    scenario = _scenario(PLANT)
    result = run_job(PolicyJob("ours", scenario.load_trace(), scenario, 30000.0))
    assert result.completed > 0
    belief, plant = seen["planner_profile"], seen["plant"]
    assert seen["engine_profile"] is belief
    assert belief.prefill_caps.compute_share == pytest.approx(0.7342)
    assert belief.natural_draw_watts(Role.DECODE) == 380.0
    assert plant.prefill_caps.compute_share == 1.0 and plant.natural_draw_watts(Role.DECODE) == 300.0
    assert plant.name == "llama2-70b-h100-tp4 [plant prefill-compute-bound,decode.natural_draw_watts=300.0]"


def _varied(variation: float, seed: int) -> SimResult:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    engine = engine_settings(config_from_mapping({"budget": {"watts": 1e6}, "planner": {"cap_interval_s": 5.0}}))
    settings = SimSettings(initial_prefill_replicas=2, initial_decode_replicas=2, gpu_time_variation=variation,
                           gpu_variation_seed=seed)
    return simulate(_trace(), profile, ScriptedPlanner(), engine, settings, 1e6)


def test_per_gpu_variation_is_seeded_and_a_tp_replica_runs_at_its_slowest_gpu() -> None:
    plain, none = _varied(0.0, 0), _varied(0.0, 5)
    assert np.array_equal(plain.ttft_ms, none.ttft_ms) and plain.energy_j == none.energy_j  # no spread: no seed
    a, again, other = _varied(0.05, 1), _varied(0.05, 1), _varied(0.05, 2)
    assert np.array_equal(a.ttft_ms, again.ttft_ms) and np.array_equal(a.itl_ms, again.itl_ms)
    assert not np.array_equal(a.itl_ms, other.itl_ms)
    # the slowest of 4 GPUs drawn from [0.95, 1.05] is slower than nominal in expectation: decode is slower
    assert float(np.mean(a.itl_ms)) > float(np.mean(plain.itl_ms))
    assert float(np.mean(a.itl_ms)) < float(np.mean(plain.itl_ms)) * 1.05 + 1e-9


@pytest.mark.parametrize("variation", [-0.1, 1.0, float("nan")])
def test_a_spread_outside_zero_to_one_is_refused(variation: float) -> None:
    with pytest.raises(ConfigError, match="gpu_time_variation must lie in"):
        SimSettings(gpu_time_variation=variation)
