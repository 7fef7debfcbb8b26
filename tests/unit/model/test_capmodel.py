"""Properties of the cap model and the capped profiles (docs/profile-format.md, "The model behind every profile")."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import default_cap_model
from powerplanner.model.capped import CappedProfile
from powerplanner.model.profile import PowerProfile
from powerplanner.model.profiles import builtin_profile_names, load_profile
from powerplanner.model.roles import ROLES, Role

NAMES = builtin_profile_names()
profile_names = st.sampled_from(NAMES)


def _profile(name: str) -> CappedProfile:
    profile = load_profile(name)
    assert isinstance(profile, CappedProfile)
    return profile


def test_builtins_implement_the_protocol() -> None:
    assert NAMES == ["llama2-70b-h100-tp2", "llama2-70b-h100-tp4", "llama2-70b-h100-tp8", "llama3.1-8b-h200-tp1"]
    for name in NAMES:
        assert isinstance(load_profile(name), PowerProfile)


def test_default_profile_is_llama2_70b_tp4() -> None:
    assert load_profile().name == "llama2-70b-h100-tp4"


@settings(max_examples=60, deadline=None)
@given(name=profile_names, low=st.floats(0.0, 1.0), high=st.floats(0.0, 1.0), context=st.floats(128, 8192))
def test_decode_throughput_flat_above_natural_draw(name: str, low: float, high: float, context: float) -> None:
    profile = _profile(name)
    natural = profile.natural_draw_watts(Role.DECODE)
    top = profile.gpu.max_limit_watts
    cap_a, cap_b = natural + low * (top - natural), natural + high * (top - natural)
    a = profile.decode_throughput_tokens_per_s_per_gpu(context, cap_a)
    b = profile.decode_throughput_tokens_per_s_per_gpu(context, cap_b)
    assert a > 0
    assert abs(a - b) <= 0.03 * max(a, b)


@settings(max_examples=60, deadline=None)
@given(name=profile_names, x=st.floats(0.0, 1.0), y=st.floats(0.0, 1.0), tokens=st.floats(16, 32768))
def test_prefill_slows_as_cap_falls(name: str, x: float, y: float, tokens: float) -> None:
    profile = _profile(name)
    gpu = profile.gpu
    low_frac, high_frac = sorted((x, y))
    low = gpu.min_limit_watts + low_frac * (gpu.max_limit_watts - gpu.min_limit_watts)
    high = gpu.min_limit_watts + high_frac * (gpu.max_limit_watts - gpu.min_limit_watts)
    assert profile.prefill_time_s(tokens, low) >= profile.prefill_time_s(tokens, high)
    if high < profile.natural_draw_watts(Role.PREFILL) and high - low > 1.0:
        assert profile.prefill_time_s(tokens, low) > profile.prefill_time_s(tokens, high)


@pytest.mark.parametrize("name", NAMES)
def test_prefill_energy_per_token_has_interior_minimum(name: str) -> None:
    profile = _profile(name)
    caps = profile.cap_levels(Role.PREFILL, 51)
    energy = [profile.energy_per_token_j(Role.PREFILL, c) for c in caps]
    best = min(range(len(caps)), key=lambda i: energy[i])
    assert 0 < best < len(caps) - 1
    assert energy[0] > energy[best] * 1.05 and energy[-1] > energy[best] * 1.05


@settings(max_examples=60, deadline=None)
@given(name=profile_names, cap=st.one_of(st.floats(-1e4, 199.999), st.floats(700.001, 1e5), st.just(math.nan)))
def test_caps_outside_range_rejected(name: str, cap: float) -> None:
    profile = _profile(name)
    with pytest.raises(ProfileError, match="outside"):
        profile.prefill_time_s(1024, cap)
    with pytest.raises(ProfileError, match="outside"):
        profile.decode_itl_s(8, 1024, cap)
    with pytest.raises(ProfileError, match="outside"):
        profile.draw_watts(Role.DECODE, cap, 0.5)


@settings(max_examples=100, deadline=None)
@given(name=profile_names, cap_frac=st.floats(0.0, 1.0), util=st.floats(0.0, 1.0))
def test_draw_never_above_cap_and_idle_at_zero(name: str, cap_frac: float, util: float) -> None:
    profile = _profile(name)
    gpu = profile.gpu
    cap = gpu.min_limit_watts + cap_frac * (gpu.max_limit_watts - gpu.min_limit_watts)
    for role in ROLES:
        draw = profile.draw_watts(role, cap, util)
        assert profile.idle_watts() - 1e-9 <= draw <= cap + 1e-9
        assert draw <= profile.natural_draw_watts(role) + 1e-9
        assert profile.draw_watts(role, cap, 0.0) == pytest.approx(profile.idle_watts())


def test_cap_levels_evenly_spaced() -> None:
    profile = _profile("llama2-70b-h100-tp4")
    assert profile.cap_levels(Role.PREFILL, 6) == (200.0, 300.0, 400.0, 500.0, 600.0, 700.0)
    assert profile.cap_levels(Role.DECODE, 1) == (700.0,)
    with pytest.raises(ProfileError):
        profile.cap_levels(Role.DECODE, 0)


def test_decode_steep_only_near_minimum() -> None:
    decode = default_cap_model("H100-SXM", Role.DECODE)
    assert decode.slowdown(350.0) < 1.02
    assert decode.slowdown(300.0) < 1.06
    assert decode.slowdown(200.0) > 1.3


def test_ttft_grows_with_load_and_saturates() -> None:
    profile = _profile("llama2-70b-h100-tp4")
    service = profile.prefill_time_s(2048, 700.0)
    assert profile.ttft_s(2048, 0.0, 700.0) == pytest.approx(service)
    assert profile.ttft_s(2048, 0.5 / service, 700.0) > service
    assert profile.ttft_s(2048, 1.0 / service, 700.0) == math.inf
    # the throughput quoted at a TTFT target is a load at which TTFT meets the target
    target = 3 * service
    per_gpu = profile.prefill_throughput_tokens_per_s_per_gpu(2048, 700.0, target)
    rate = per_gpu * profile.gpus_per_replica(Role.PREFILL) / 2048
    assert profile.ttft_s(2048, rate, 700.0) == pytest.approx(target, rel=1e-6)
    assert profile.prefill_throughput_tokens_per_s_per_gpu(2048, 700.0, 0.5 * service) == 0.0


def test_decode_throughput_respects_itl_target_and_kv() -> None:
    profile = _profile("llama2-70b-h100-tp4")
    target = 0.040
    batch = profile.best_decode_batch(2048, 700.0, target)
    assert 1 <= batch <= profile.max_batch(2048)
    assert profile.decode_itl_s(batch, 2048, 700.0) <= target
    assert profile.decode_throughput_tokens_per_s_per_gpu(2048, 700.0, 0.001) == 0.0
    assert profile.max_batch(10**9) == 1


def test_dynamo_figures_reproduced_for_llama31_8b() -> None:
    profile = _profile("llama3.1-8b-h200-tp1")
    assert profile.prefill_throughput_tokens_per_s_per_gpu(3000, 700.0) == pytest.approx(40_000, rel=0.05)
    assert profile.ttft_s(3000, 0.0, 700.0) <= 0.080
    assert profile.decode_throughput_tokens_per_s_per_gpu(1024, 700.0, 0.010) == pytest.approx(10_000, rel=0.05)


def test_utilization_bounds() -> None:
    profile = _profile("llama2-70b-h100-tp4")
    assert profile.draw_watts(Role.PREFILL, 700.0, 1.0 + 1e-12) == 700.0
    with pytest.raises(ProfileError, match="utilization"):
        profile.draw_watts(Role.PREFILL, 700.0, 1.5)
    with pytest.raises(ProfileError, match="utilization"):
        profile.draw_watts(Role.PREFILL, 700.0, math.nan)


@settings(max_examples=150, deadline=None)
@given(
    natural=st.floats(150.0, 900.0), uncore_frac=st.floats(0.0, 0.9), share=st.floats(0.0, 1.0),
    floor=st.floats(0.2, 1.0), min_frac=st.floats(0.1, 1.0), a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0),
)
def test_any_valid_cap_model_is_monotone_and_within_cap(
    natural: float, uncore_frac: float, share: float, floor: float, min_frac: float, a: float, b: float
) -> None:
    """User profiles may carry any valid constants: slowdown never rises with the cap, draw never exceeds it."""
    from powerplanner.model.capmodel import CapModel

    idle = 75.0
    model = CapModel(Role.PREFILL, min_limit_watts=200.0, max_limit_watts=700.0, idle_watts=idle,
                     natural_draw_watts=natural, uncore_watts=uncore_frac * (natural - idle) * 0.99,
                     compute_share=share, floor_clock=floor, min_clock=floor * min_frac)
    low, high = sorted((200.0 + 500.0 * a, 200.0 + 500.0 * b))
    assert model.slowdown(low) >= model.slowdown(high) - 1e-9 >= 1.0 - 1e-9
    point = model.operating_point(low)
    assert point.busy_draw_watts <= low + 1e-9
    assert 0 < point.duty <= 1 and 0 < point.clock <= 1
    assert model.draw_watts(high, 1.0) <= high + 1e-9
