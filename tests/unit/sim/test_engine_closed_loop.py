"""The engine with the real profile and the real planners in the loop: the issue's acceptance properties."""

from __future__ import annotations

import numpy as np
import pytest

from powerplanner.config import Config, config_from_mapping
from powerplanner.core_settings import build_planner, engine_settings
from powerplanner.model.profile import PowerProfile
from powerplanner.model.profiles import load_profile
from powerplanner.planning.registry import policy_names
from powerplanner.sim.engine import simulate
from powerplanner.sim.settings import SimSettings
from powerplanner.sim.types import SimResult, Trace


@pytest.fixture(scope="module")
def profile() -> PowerProfile:
    return load_profile(name="llama2-70b-h100-tp4")


def _trace(rate_per_s: float, duration_s: float, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    n = int(rate_per_s * duration_s)
    arrival = np.sort(rng.uniform(0.0, duration_s, n))
    arrival -= arrival[0]
    isl = rng.lognormal(np.log(900.0), 0.5, n).astype(np.int64) + 1
    osl = rng.lognormal(np.log(120.0), 0.6, n).astype(np.int64) + 1
    return Trace("light", arrival, isl, osl)


def _run(profile: PowerProfile, policy: str, trace: Trace, budget: float | object, config: Config,
         replicas: tuple[int, int] = (1, 1)) -> SimResult:
    planner = build_planner(config, profile, policy)
    settings = SimSettings(initial_prefill_replicas=replicas[0], initial_decode_replicas=replicas[1])
    return simulate(trace, profile, planner, engine_settings(config), settings, budget,  # type: ignore[arg-type]
                    oracle=planner.receives_oracle_load)


def test_ours_meets_the_sla_with_a_huge_budget(profile: PowerProfile) -> None:
    config = config_from_mapping({"budget": {"watts": 1e6}})
    result = _run(profile, "ours", _trace(2.0, 900.0), 1e6, config)
    assert result.completed == result.requests
    # Dynamo's SLA is on window averages of TTFT and ITL
    assert float(np.mean(result.ttft_ms)) <= config.sla.ttft_ms
    assert float(np.mean(result.itl_ms)) <= config.sla.itl_ms
    assert result.seconds_over_budget == 0.0


@pytest.mark.parametrize("policy", [p for p in policy_names() if p not in ("static", "dynamo-sla", "dynamo-1.6")])
def test_power_aware_policies_never_exceed_a_binding_budget(profile: PowerProfile, policy: str) -> None:
    budget = 9000.0  # two TP4 replicas at TDP fit (5.6 kW), four do not
    config = config_from_mapping({"budget": {"watts": budget}})
    result = _run(profile, policy, _trace(6.0, 600.0, seed=1), budget, config)
    assert result.seconds_over_budget == 0.0
    assert float(result.series.provisioned_watts.max()) <= budget + 1e-6
    assert result.peak_provisioned_watts <= budget + 1e-6
    assert result.completed + (result.requests - result.completed) == result.requests


def test_ours_honours_a_budget_cut_within_the_grace(profile: PowerProfile) -> None:
    config = config_from_mapping({"budget": {"watts": 30000.0}})

    def budget(t: float) -> float:
        return 30000.0 if t < 300.0 else 7000.0

    result = _run(profile, "ours", _trace(6.0, 600.0, seed=2), budget, config, replicas=(2, 2))
    series = result.series
    after = series.time_s >= 300.0 + config.planner.cap_interval_s
    assert float(series.provisioned_watts[after].max()) <= 7000.0 + 1e-6
    assert result.seconds_over_budget == pytest.approx(result.seconds_over_budget_after_cut)
