"""Worked examples pinning the Dynamo baselines to Dynamo's SLA planner rules, on the built-in TP4 profile.

Source: ai-dynamo/dynamo, ``components/src/dynamo/planner/utils/planner_core.py`` and
``utils/perf_interpolation.py`` (the interpolator-based SLA planner):

- ``expect_ttft = prefill_interpolator.interpolate_ttft(isl)``: the profiled TTFT of ONE prefill at the observed
  ISL, no queueing; ``p_correction_factor = observed_ttft / expect_ttft``; the prefill load is multiplied by
  ``min(1, p_correction_factor)``.
- ``expect_itl = decode_interpolator.interpolate_itl(concurrency=num_req / num_d * request_duration /
  adjustment_interval, context_length=isl + osl / 2)`` (concurrency -> KV usage = concurrency x context /
  max_kv_tokens, clipped to the profiled grid); ``d_correction_factor = observed_itl / expect_itl``; decode is
  sized at ``find_best_throughput_per_gpu(itl=itl_target / d_correction_factor, context_length=isl + osl/2)``,
  which falls back to the grid's lowest-load point when no load meets that ITL.

Our observation has no request-duration metric; the duration is TTFT + OSL x ITL (what the frontend's
request-duration histogram measures for a streamed request).
"""

from __future__ import annotations

import math

import pytest

from powerplanner.config import config_from_mapping
from powerplanner.core_settings import planner_settings
from powerplanner.model.capped import CappedProfile
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from powerplanner.model.values import LoadForecast, Observation, RoleState
from powerplanner.planning.baselines import _DYNAMO_RULES
from powerplanner.planning.policy import Toolkit
from powerplanner.planning.sizing import Corrections, dynamo_corrections, dynamo_replicas

TDP = 700.0


def _obs(rate: float, ttft_ms: float = 400.0, itl_ms: float = 40.0, decode_ready: int = 3) -> Observation:
    return Observation(
        time_s=60.0, window_s=60.0, request_rate_per_s=rate, isl_tokens=2000.0, osl_tokens=200.0,
        ttft_ms=ttft_ms, itl_ms=itl_ms, prefill=RoleState(2, applied_cap_watts=TDP),
        decode=RoleState(decode_ready, applied_cap_watts=TDP), budget_watts=1e6,
    )


def test_correction_factors_worked_example() -> None:
    profile = load_profile("llama2-70b-h100-tp4")
    c = dynamo_corrections(profile, _obs(10.0), TDP, Corrections())
    # expected TTFT: one 2000-token prefill on TP4 at TDP = 16.0 ms + 2000 x 89.57 us + 2000^2 x 0.8147 ns = 198.4 ms
    single_prefill_s = profile.prefill_time_s(2000.0, TDP)
    assert single_prefill_s == pytest.approx(0.1984, abs=5e-4)
    assert c.prefill == pytest.approx(0.400 / single_prefill_s, rel=1e-9)  # 2.016: queueing makes it > 1
    # concurrency per decode replica = 10 req/s x (0.4 s + 200 x 0.04 s) / 3 = 28; context 2000 + 200/2 = 2100
    expected_itl_s = profile.decode_itl_s(28.0, 2100.0, TDP)
    assert expected_itl_s == pytest.approx(0.03744, abs=5e-5)
    assert c.decode == pytest.approx(0.040 / expected_itl_s, rel=1e-9)  # 1.068


def test_ttft_expectation_has_no_queueing() -> None:
    """The expectation is one prefill whatever the load: the factor does not move with the request rate
    (a queueing-aware expectation would shrink it towards 0 near saturation and, through min(1, c), shrink
    the prefill load exactly when prefill is overloaded)."""
    profile = load_profile("llama2-70b-h100-tp4")
    low = dynamo_corrections(profile, _obs(2.0), TDP, Corrections())
    high = dynamo_corrections(profile, _obs(18.0), TDP, Corrections())
    assert low.prefill == high.prefill == pytest.approx(0.400 / profile.prefill_time_s(2000.0, TDP), rel=1e-9)


def test_dynamo_sizing_worked_example() -> None:
    profile = load_profile("llama2-70b-h100-tp4")
    config = config_from_mapping({"budget": {"watts": 1e6}, "sla": {"ttft_ms": 500.0, "itl_ms": 50.0}})
    kit = Toolkit(planner_settings(config), profile, None)
    corrections = Corrections(prefill=2.016, decode=1.068)
    forecast = LoadForecast(10.0, 2000.0, 200.0)
    tdp = (TDP,)
    p, d = kit.capacities(forecast, corrections, _DYNAMO_RULES, {Role.PREFILL: tdp, Role.DECODE: tdp})
    # prefill: load x min(1, 2.016) = 20,000 tokens/s, unchanged by the (> 1) correction
    assert p.demand_tokens_per_s == pytest.approx(20_000.0)
    per_gpu_p = profile.prefill_throughput_tokens_per_s_per_gpu(2000.0, TDP, 0.5)
    assert p.sla_tokens_per_s_per_gpu[0] == pytest.approx(per_gpu_p, rel=0.02)  # 1% memo buckets
    assert dynamo_replicas(p, 1) == math.ceil(20_000.0 / (per_gpu_p * 4) - 1e-9)
    # decode: ITL target 50 ms / 1.068 = 46.8 ms at context 2100 -> the largest batch within it
    assert isinstance(profile, CappedProfile)
    batch = profile.best_decode_batch(2100.0, TDP, 0.050 / 1.068)
    per_gpu_d = batch / profile.decode_itl_s(batch, 2100.0, TDP) / 4
    assert d.demand_tokens_per_s == pytest.approx(2_000.0)
    assert d.sla_tokens_per_s_per_gpu[0] == pytest.approx(per_gpu_d, rel=0.02)
    assert dynamo_replicas(d, 1) == math.ceil(2_000.0 / (per_gpu_d * 4) - 1e-9)


def test_unreachable_itl_falls_back_to_the_lowest_load_point() -> None:
    """find_best_throughput_per_gpu returns the first grid column (lowest KV load) when no load meets the
    corrected ITL: decode is then sized at the throughput of a batch of one, not at the raw maximum."""
    profile = load_profile("llama2-70b-h100-tp4")
    config = config_from_mapping({"budget": {"watts": 1e6}, "sla": {"ttft_ms": 500.0, "itl_ms": 50.0}})
    kit = Toolkit(planner_settings(config), profile, None)
    tdp = (TDP,)
    corrections = Corrections(prefill=1.0, decode=2.0)  # corrected ITL 25 ms < batch-1 ITL (29.6 ms at 2100)
    _, d = kit.capacities(LoadForecast(10.0, 2000.0, 200.0), corrections, _DYNAMO_RULES,
                          {Role.PREFILL: tdp, Role.DECODE: tdp})
    assert not d.sla_reachable
    batch_one = 1.0 / profile.decode_itl_s(1.0, 2100.0, TDP) / 4
    assert d.sla_tokens_per_s_per_gpu[0] == pytest.approx(batch_one, rel=0.02)
    assert d.sla_tokens_per_s_per_gpu[0] < d.max_tokens_per_s_per_gpu[0] / 10
