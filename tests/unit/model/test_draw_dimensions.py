"""The measured dimensions of the draw (docs/profile-format.md, "Draw by TP and load"): per-GPU draw by TP, by
decode batch and by prefill batch tokens; the presets fitted on Splitwise's A100 runs; the context window."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import ConfigError, ProfileError
from powerplanner.model.builtin import builtin_profiles, default_cap_model
from powerplanner.model.capmodel import CapModel
from powerplanner.model.capped import CappedProfile
from powerplanner.model.gpu import gpu_by_name
from powerplanner.model.plant import build_plant, parse_plant
from powerplanner.model.profile_format import document_from_profile, profile_from_document
from powerplanner.model.profiles import profiles_fitting
from powerplanner.model.roles import Role

H100 = "H100-SXM"


def _caps(role: Role, **dims: float) -> CapModel:
    return dataclasses.replace(default_cap_model(H100, role), **dims)


def _a100_profile(tp: int) -> CappedProfile:
    """The llama2-70b latency at ``tp`` on the A100 (the GPU of the measurements), with its default cap models."""
    base = builtin_profiles()[f"llama2-70b-h100-tp{tp}"]
    gpu = gpu_by_name("A100-SXM4")
    return dataclasses.replace(base, gpu=gpu, prefill_caps=default_cap_model(gpu, Role.PREFILL),
                               decode_caps=default_cap_model(gpu, Role.DECODE))


def test_builtins_are_flat_in_tp_and_load_as_before() -> None:
    for profile in builtin_profiles().values():
        for role in Role:
            caps = profile.cap_model(role)
            assert not profile.draw_varies_with_load(role)
            assert caps is (profile.prefill_caps if role is Role.PREFILL else profile.decode_caps)  # at_tp: itself
            for cap in caps.cap_levels(7):
                for load in (1.0, 64.0, 8192.0):
                    assert profile.busy_draw_at_load_watts(role, cap, load) == profile.draw_watts(role, cap, 1.0)


@settings(max_examples=150, deadline=None)
@given(exponent=st.floats(0.01, 1.0), ref=st.sampled_from([1, 2, 4, 8]), tp=st.sampled_from([1, 2, 4, 8, 16]))
def test_tp_scales_the_draw_above_idle_as_a_power_law(exponent: float, ref: int, tp: int) -> None:
    caps = _caps(Role.DECODE, draw_tp_exponent=exponent, draw_reference_tp=float(ref))
    at = caps.at_tp(tp)
    scale = (tp / ref) ** -exponent
    assert at.idle_watts == caps.idle_watts
    assert at.natural_draw_watts - at.idle_watts == pytest.approx(scale * (caps.natural_draw_watts - caps.idle_watts))
    assert at.uncore_watts == pytest.approx(scale * caps.uncore_watts)  # uncore and core alike: always valid
    assert at.problems() == []
    assert at.at_tp(tp) is at  # stated at its own TP now
    if tp > ref:
        assert at.natural_draw_watts < caps.natural_draw_watts


@settings(max_examples=200, deadline=None)
@given(half=st.floats(0.1, 500.0), low=st.floats(0.0, 10_000.0), high=st.floats(0.0, 10_000.0),
       cap_fraction=st.floats(0.0, 1.0))
def test_a_lighter_prefill_batch_draws_less_and_is_slowed_less_by_a_cap(
    half: float, low: float, high: float, cap_fraction: float
) -> None:
    caps = _caps(Role.PREFILL, draw_half_tokens_per_gpu=half)
    low, high = min(low, high), max(low, high)
    cap = caps.min_limit_watts + cap_fraction * (caps.max_limit_watts - caps.min_limit_watts)
    a_low, a_high = caps.activity(low), caps.activity(high)
    assert 0 < a_low <= a_high <= 1
    assert a_low == pytest.approx(max(1e-3, low / (low + half)))  # floored: a busy GPU draws above idle
    draw_low, draw_high = caps.draw_watts(cap, 1.0, a_low), caps.draw_watts(cap, 1.0, a_high)
    assert caps.idle_watts < draw_low <= draw_high + 1e-9 <= min(cap, caps.natural_draw_watts) + 1e-9
    assert 1.0 <= caps.slowdown(cap, a_low) <= caps.slowdown(cap, a_high) + 1e-12
    point = caps.operating_point(cap, a_low)
    assert point.busy_draw_watts == pytest.approx(draw_low)
    assert caps.busy_draw_at_clock_watts(point.clock, a_low) <= cap + 1e-6 or point.duty < 1


def test_decode_draw_follows_the_batch_and_the_itl_search_sees_it() -> None:
    base = builtin_profiles()["llama2-70b-h100-tp4"]
    profile = dataclasses.replace(base, decode_caps=_caps(Role.DECODE, draw_half_batch=8.0))
    assert profile.draw_varies_with_load(Role.DECODE) and not profile.draw_varies_with_load(Role.PREFILL)
    draws = [profile.busy_draw_at_load_watts(Role.DECODE, 700.0, b) for b in (1, 8, 64, 256)]
    assert draws == sorted(draws) and draws[-1] < 380.0
    assert draws[1] == pytest.approx(75.0 + 0.5 * (380.0 - 75.0))  # half the above-idle draw at batch 8
    # at a binding cap a batch of 1 draws little, so it is slowed less than a full one
    assert profile.decode_itl_s(1, 1024, 250.0) / base.decode_itl_s(1, 1024, 250.0) < 1.0
    assert profile.decode_itl_s(256, 1024, 250.0) / base.decode_itl_s(256, 1024, 250.0) == pytest.approx(1.0, 0.01)
    assert profile.best_decode_batch(1024, 250.0, 0.05) >= base.best_decode_batch(1024, 250.0, 0.05)


def test_a_load_dimension_on_the_wrong_role_is_refused_naming_the_fix() -> None:
    with pytest.raises(ProfileError) as err:
        _caps(Role.DECODE, draw_half_tokens_per_gpu=19.0)
    assert "draw_half_tokens_per_gpu applies to prefill only; move it to prefill.power" in err.value.lines[0]
    with pytest.raises(ProfileError) as err:
        _caps(Role.PREFILL, draw_tp_exponent=-0.5, draw_reference_tp=0.5)
    assert any("draw_reference_tp must be >= 1" in line for line in err.value.lines)
    assert any("draw_tp_exponent must be >= 0" in line for line in err.value.lines)


@pytest.mark.parametrize(("tp", "low_watts", "high_watts"), [(2, 272.0, 293.0), (4, 223.0, 237.0), (8, 164.0, 174.0)])
def test_decode_draw_by_tp_reproduces_the_a100_measurements(tp: int, low_watts: float, high_watts: float) -> None:
    plant = build_plant(_a100_profile(tp), parse_plant("decode-draw-by-tp"))
    natural = plant.natural_draw_watts(Role.DECODE)
    assert low_watts * 0.95 <= natural <= high_watts * 1.05  # within 5% of the measured range (a 2-parameter fit)


def test_decode_draw_by_tp_is_scaled_to_the_gpus_tdp() -> None:
    naturals = {tp: build_plant(builtin_profiles()[f"llama2-70b-h100-tp{tp}"], parse_plant("decode-draw-by-tp"))
                .natural_draw_watts(Role.DECODE) for tp in (2, 4, 8)}
    assert naturals[4] == pytest.approx(75.0 + 0.4665 * (700.0 - 75.0))
    assert naturals[2] > naturals[4] > naturals[8]
    assert naturals[2] / naturals[8] == pytest.approx((75 + 0.4665 * 625 * 2**0.525) / (75 + 0.4665 * 625 / 2**0.525))


@pytest.mark.parametrize(("tp", "tokens", "measured_fraction"),
                         [(8, 128, 0.460), (8, 256, 0.658), (4, 128, 0.642), (4, 256, 0.813), (8, 2048, 0.989),
                          (4, 2048, 1.0), (2, 4096, 1.0)])
def test_prefill_draw_by_batch_follows_the_a100_peaks(tp: int, tokens: int, measured_fraction: float) -> None:
    plant = build_plant(_a100_profile(tp), parse_plant("prefill-draw-by-batch"))
    assert isinstance(plant, CappedProfile)
    fraction = plant.busy_draw_at_load_watts(Role.PREFILL, 400.0, tokens) / 400.0
    assert fraction == pytest.approx(measured_fraction, abs=0.12)  # the fit's rms is 0.063 of TDP
    assert plant.draw_watts(Role.PREFILL, 400.0, 1.0) == 400.0  # load-blind callers get the saturated envelope


def test_plant_keys_for_the_new_dimensions() -> None:
    profile = builtin_profiles()["llama2-70b-h100-tp4"]
    plant = build_plant(profile, parse_plant("decode.draw_half_batch=4,decode.natural_draw_fraction=0.5,"
                                             "prefill.draw_tp_exponent=0.2,prefill.draw_reference_tp=2"))
    assert isinstance(plant, CappedProfile)
    assert plant.decode_caps.natural_draw_watts == pytest.approx(75.0 + 0.5 * 625.0)
    assert plant.decode_caps.draw_half_batch == 4.0
    assert plant.natural_draw_watts(Role.PREFILL) == pytest.approx(75.0 + 625.0 * 2**-0.2)
    with pytest.raises(ConfigError) as err:
        parse_plant("prefill.draw_half_batch=4")
    assert "unknown key 'prefill.draw_half_batch'" in err.value.lines[0]
    assert "decode.draw_half_batch" in err.value.lines[0] and "prefill.draw_half_tokens_per_gpu" in err.value.lines[0]


def test_the_dimensions_and_the_window_round_trip_through_our_format() -> None:
    base = builtin_profiles()["llama2-70b-h100-tp8"]
    profile = dataclasses.replace(
        base, prefill_caps=_caps(Role.PREFILL, draw_half_tokens_per_gpu=19.0),
        decode_caps=_caps(Role.DECODE, draw_tp_exponent=0.525, draw_reference_tp=4.0, draw_half_batch=0.1))
    doc = document_from_profile(profile)
    assert doc["context_window_tokens"] == 4096
    assert doc["decode"]["power"]["draw_tp_exponent"] == 0.525 and doc["decode"]["power"]["draw_reference_tp"] == 4.0
    assert doc["prefill"]["power"]["draw_half_tokens_per_gpu"] == 19.0
    assert "draw_half_batch" not in doc["prefill"]["power"]  # flat dimensions are left out
    again = profile_from_document(doc, "mem")
    assert again.prefill_caps == profile.prefill_caps and again.decode_caps == profile.decode_caps
    assert again.context_window_tokens == 4096
    assert again.natural_draw_watts(Role.DECODE) == pytest.approx(profile.natural_draw_watts(Role.DECODE))
    assert document_from_profile(again) == doc
    flat = document_from_profile(base)
    assert not any(k.startswith("draw_") for role in ("prefill", "decode") for k in flat[role]["power"])


def test_a_document_without_the_new_fields_loads_flat_and_windowless() -> None:
    doc = document_from_profile(builtin_profiles()["llama2-70b-h100-tp4"])
    del doc["context_window_tokens"]
    profile = profile_from_document(doc, "old.yaml")
    assert profile.context_window_tokens is None
    assert not profile.draw_varies_with_load(Role.PREFILL) and not profile.draw_varies_with_load(Role.DECODE)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("context_window_tokens", 0, "context_window_tokens"),
    ("decode.power.draw_tp_exponent", -1, "draw_tp_exponent"),
    ("decode.power.draw_reference_tp", 0.5, "draw_reference_tp"),
    ("prefill.power.draw_half_tokens_per_gpu", math.nan, "draw_half_tokens_per_gpu"),
])
def test_bad_dimension_values_get_one_line_naming_the_field(field: str, value: float, message: str) -> None:
    doc = document_from_profile(builtin_profiles()["llama2-70b-h100-tp4"])
    *path, last = field.split(".")
    node = doc
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ProfileError) as err:
        profile_from_document(doc, "bad.yaml")
    assert len(err.value.lines) == 1 and message in err.value.lines[0] and "bad.yaml" in err.value.lines[0]


def test_every_builtin_states_its_context_window() -> None:
    windows = {name: p.context_window_tokens for name, p in builtin_profiles().items()}
    assert windows == {"llama2-70b-h100-tp2": 4096, "llama2-70b-h100-tp4": 4096, "llama2-70b-h100-tp8": 4096,
                       "llama3.1-8b-h200-tp1": 131072}
    assert profiles_fitting(4096) == sorted(windows)
    assert profiles_fitting(4097) == ["llama3.1-8b-h200-tp1"]
    assert profiles_fitting(200_000) == []
