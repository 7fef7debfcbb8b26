"""The plant spec: parsing (round trips, garbage), presets, and building a plant from the planner's profile."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import ConfigError
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.capped import CappedProfile
from powerplanner.model.plant import (
    CAP_KEYS,
    LATENCY_KEYS,
    PlantOverride,
    PlantSpec,
    build_plant,
    format_plant,
    parse_plant,
    plant_presets,
)
from powerplanner.model.roles import Role


def _profile() -> CappedProfile:
    return builtin_profiles()["llama2-70b-h100-tp4"]


_overrides = st.builds(
    lambda role, i, value: PlantOverride(role, (*CAP_KEYS, *LATENCY_KEYS[role])[i % (len(CAP_KEYS) + len(
        LATENCY_KEYS[role]))], value),
    st.sampled_from(list(Role)), st.integers(0, 100), st.floats(allow_nan=False, allow_infinity=False),
)
_specs = st.builds(PlantSpec, st.lists(st.sampled_from(sorted(plant_presets())), max_size=2).map(tuple),
                   st.lists(_overrides, max_size=5).map(tuple),
                   st.none() | st.floats(0.0, 1.0, exclude_max=True), st.none() | st.integers(0, 2**63))


@given(_specs)
@settings(max_examples=200, deadline=None)
def test_format_then_parse_is_the_identity(spec: PlantSpec) -> None:
    assert parse_plant(format_plant(spec)) == spec


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_garbage_is_a_spec_or_one_line_per_bad_item(text: str) -> None:
    items = [i.strip() for i in text.split(",") if i.strip() and i.strip() != "profile"]
    try:
        spec = parse_plant(text)
    except ConfigError as exc:
        assert 1 <= len(exc.lines) <= len(items)
        assert all(line.startswith("plant: ") for line in exc.lines)
        assert all("\n" not in line for line in exc.lines)
        return
    assert len(spec.presets) + len(spec.overrides) == len(items)


def test_every_bad_item_gets_its_own_line_naming_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_plant("prefill.compute_shares=1,decode.compute_share=abc,gpu.x=1,prefill-compute-bound,nope,"
                    "variation=1.5,seed=-1,gpu-variation")
    lines = err.value.lines
    assert len(lines) == 3 + 1 + 2  # the presets are fine; 'nope' is neither a preset nor an override
    assert "unknown key 'prefill.compute_shares'" in lines[0] and "prefill.compute_share," in lines[0]
    assert "'abc' is not a finite number" in lines[1]
    assert "unknown key 'gpu.x'" in lines[2]
    assert "'nope' is neither a preset (prefill-compute-bound, decode-draw-by-tp, prefill-draw-by-batch, " \
        "gpu-variation)" in lines[3]
    assert "variation = '1.5' must be a fraction in [0, 1)" in lines[4]
    assert "seed = '-1' must be an integer >= 0" in lines[5]


@pytest.mark.parametrize("text", ["", " ", "profile", ",,"])
def test_empty_spec_is_the_planners_profile(text: str) -> None:
    spec = parse_plant(text)
    assert spec.is_profile and spec.text == "profile"
    profile = _profile()
    assert build_plant(profile, spec) is profile


def test_preset_then_override_later_items_win() -> None:
    spec = parse_plant("prefill-compute-bound,prefill.compute_share=0.9,decode.natural_draw_watts=300")
    assert {(o.role, o.key): o.value for o in spec.resolved()} == {
        (Role.PREFILL, "compute_share"): 0.9, (Role.DECODE, "natural_draw_watts"): 300.0}


def test_every_preset_builds_on_every_builtin_profile_and_names_its_source() -> None:
    for preset in plant_presets().values():
        assert preset.source
        for profile in builtin_profiles().values():
            spec = parse_plant(preset.name)
            assert not spec.is_profile
            plant = build_plant(profile, spec)
            if spec.resolved():
                assert plant is not profile and plant.name.endswith(f"[plant {preset.name}]")
            else:  # only a per-GPU spread: the engine applies it, the constants stay the profile's
                assert plant is profile and spec.gpu_variation()[0] > 0


def test_gpu_variation_explicit_items_win_over_the_preset() -> None:
    assert parse_plant("gpu-variation").gpu_variation() == (0.05, 0)
    assert parse_plant("gpu-variation,variation=0.02,seed=7").gpu_variation() == (0.02, 7)
    assert parse_plant("prefill-compute-bound").gpu_variation() == (0.0, 0)
    data = parse_plant("gpu-variation,seed=3").to_json("p")
    assert data["differs_from_profile"] is True and data["overrides"] == {}
    assert (data["gpu_variation"], data["gpu_variation_seed"]) == (0.05, 3)


def test_plant_replaces_only_the_named_constants() -> None:
    profile = _profile()
    plant = build_plant(profile, parse_plant("prefill-compute-bound,decode.natural_draw_watts=300,decode.base_s=0.05"))
    assert isinstance(plant, CappedProfile)
    assert plant.prefill_caps.compute_share == 1.0 and profile.prefill_caps.compute_share == pytest.approx(0.7342)
    assert plant.decode_caps.natural_draw_watts == 300.0 and profile.decode_caps.natural_draw_watts == 380.0
    assert plant.decode.base_s == 0.05  # type: ignore[attr-defined]
    assert plant.prefill == profile.prefill and plant.gpu == profile.gpu
    assert (plant.prefill_tp, plant.decode_tp) == (profile.prefill_tp, profile.decode_tp)
    # what the simulator reads changes: prefill is slower at 350 W, busy decode draws less uncapped
    assert plant.prefill_time_s(2048, 350.0) > profile.prefill_time_s(2048, 350.0)
    assert plant.draw_watts(Role.DECODE, 700.0, 1.0) == 300.0 < profile.draw_watts(Role.DECODE, 700.0, 1.0)


def test_constants_the_cap_model_rejects_fail_with_the_plant_named() -> None:
    with pytest.raises(ConfigError) as err:
        build_plant(_profile(), parse_plant("prefill.compute_share=1.5,decode.natural_draw_watts=100"))
    assert err.value.lines[0].startswith("plant prefill.compute_share=1.5,decode.natural_draw_watts=100.0: ")
    assert any("compute_share must lie in [0, 1]" in line for line in err.value.lines)
    assert any("natural_draw_watts must exceed" in line for line in err.value.lines)
