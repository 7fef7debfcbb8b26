"""Loading profiles from files: our YAML format and Dynamo's profiler output (npz directory and JSON twins)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.config import ProfileConfig
from powerplanner.core_settings import profile_from_config
from powerplanner.errors import ProfileError
from powerplanner.model.capped import CappedProfile
from powerplanner.model.loaders import load_profile_path
from powerplanner.model.profile import PowerProfile
from powerplanner.model.profile_format import document_from_profile
from powerplanner.model.profiles import builtin_profile_names, load_profile
from powerplanner.model.roles import Role
from tests.support import dynamo_data


def _capped(profile: PowerProfile) -> CappedProfile:
    assert isinstance(profile, CappedProfile)
    return profile


@pytest.fixture(scope="module")
def npz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dynamo_data.write_npz_dir(tmp_path_factory.mktemp("dynamo"))


def test_dynamo_npz_dir_reproduces_the_source(npz_dir: Path) -> None:
    ref = dynamo_data.reference()
    got = load_profile(path=str(npz_dir), gpu="H200-SXM")
    assert isinstance(got, PowerProfile)
    assert got.gpus_per_replica(Role.PREFILL) == 1 and got.gpus_per_replica(Role.DECODE) == 1
    for isl in (100.0, 750.0, 3000.0, 16000.0):
        for cap in (200.0, 350.0, 700.0):
            assert got.prefill_time_s(isl, cap) == pytest.approx(ref.prefill_time_s(isl, cap), rel=0.02)
    for batch, ctx in ((1, 500.0), (64, 1024.0), (100, 3000.0), (200, 6000.0)):
        assert got.decode_itl_s(batch, ctx, 700.0) == pytest.approx(ref.decode_itl_s(batch, ctx, 700.0), rel=0.01)
    assert got.max_batch(1024.0) == ref.max_batch(1024.0)
    assert got.decode_throughput_tokens_per_s_per_gpu(1024.0, 700.0, 0.010) == pytest.approx(
        ref.decode_throughput_tokens_per_s_per_gpu(1024.0, 700.0, 0.010), rel=0.02)
    # beyond the longest measured prompt, prefill time keeps growing (a batch can exceed any single prompt)
    assert got.prefill_time_s(40_000.0, 700.0) > got.prefill_time_s(16_000.0, 700.0)


def test_dynamo_json_twins_and_single_file(npz_dir: Path, tmp_path: Path) -> None:
    json_dir = dynamo_data.write_json_dir(tmp_path / "json")
    from_json = load_profile_path(str(json_dir), gpu="h200")
    from_npz = load_profile_path(str(npz_dir), gpu="h200")
    from_file = load_profile_path(str(npz_dir / "selected_prefill_interpolation" / "raw_data.npz"), gpu="h200")
    from_json_file = load_profile_path(str(json_dir / "decode_raw_data.json"), gpu="h200")
    for p in (from_json, from_file, from_json_file):
        assert p.prefill_time_s(3000, 500) == pytest.approx(from_npz.prefill_time_s(3000, 500))
        assert p.decode_itl_s(32, 2000, 300) == pytest.approx(from_npz.decode_itl_s(32, 2000, 300))


@pytest.mark.parametrize(("half", "key"), [("prefill", "prefill_thpt_per_gpu"), ("decode", "z_thpt_per_gpu")])
def test_dynamo_json_with_a_null_array_names_it(tmp_path: Path, half: str, key: str) -> None:
    """A null throughput is missing, not NaN: Dynamo's TP is inferred from it (hypothesis found the traceback)."""
    json_dir = dynamo_data.write_json_dir(tmp_path)
    path = json_dir / f"{half}_raw_data.json"
    data = json.loads(path.read_text())
    data[key] = None
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile_path(str(json_dir), gpu="H200-SXM")
    assert info.value.lines == (f"{path}: missing {key}; is this Dynamo's {half} raw_data?",)


def test_dynamo_tp_is_recovered_from_per_gpu_throughput(tmp_path: Path) -> None:
    prefill, decode = dynamo_data.arrays()
    prefill["prefill_thpt_per_gpu"] = prefill["prefill_thpt_per_gpu"] / 4
    decode["z_thpt_per_gpu"] = decode["z_thpt_per_gpu"] / 2
    got = load_profile_path(str(dynamo_data.write_npz_dir(tmp_path, prefill, decode)), gpu="H200-SXM")
    assert (got.prefill_tp, got.decode_tp) == (4, 2)


def test_dynamo_profile_gets_the_gpu_cap_model(npz_dir: Path) -> None:
    h100 = load_profile_path(str(npz_dir), gpu="H100-SXM")
    h200 = load_profile_path(str(npz_dir), gpu="H200-SXM")
    assert h100.natural_draw_watts(Role.DECODE) == 380.0
    assert h200.natural_draw_watts(Role.DECODE) == 250.0


@pytest.mark.parametrize("name", builtin_profile_names())
def test_our_format_round_trips(name: str, tmp_path: Path) -> None:
    original = _capped(load_profile(name))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document_from_profile(original)))
    loaded = load_profile_path(str(path))
    assert loaded.name == original.name and loaded.gpu == original.gpu
    assert loaded.prefill_caps == original.prefill_caps and loaded.decode_caps == original.decode_caps
    for cap in (200.0, 333.0, 700.0):
        assert loaded.prefill_time_s(2048, cap) == original.prefill_time_s(2048, cap)
        assert loaded.decode_itl_s(16, 2048, cap) == original.decode_itl_s(16, 2048, cap)
    assert loaded.max_batch(2048) == original.max_batch(2048)


def test_our_format_with_tables_and_narrowed_limits(npz_dir: Path, tmp_path: Path) -> None:
    dyn = load_profile_path(str(npz_dir), gpu="H200-SXM")
    doc = document_from_profile(dyn)
    doc["gpu"] = {"name": "H200-SXM", "min_limit_watts": 300, "max_limit_watts": 600}
    doc["decode"]["power"] = {"natural_draw_watts": 200.0}  # partial override, rest from the GPU default
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(doc))
    got = load_profile_path(str(path))
    assert got.cap_levels(Role.PREFILL, 4) == (300.0, 400.0, 500.0, 600.0)
    assert got.natural_draw_watts(Role.DECODE) == 200.0
    assert got.decode_caps.uncore_watts == dyn.decode_caps.uncore_watts
    assert got.prefill_time_s(3000, 500) == pytest.approx(dyn.prefill_time_s(3000, 500))
    with pytest.raises(ProfileError, match="outside"):
        got.prefill_time_s(3000, 650)


def test_memory_arithmetic_kv(tmp_path: Path) -> None:
    doc = document_from_profile(_capped(load_profile("llama2-70b-h100-tp4")))
    doc["decode"]["kv"] = {"weights_gb": 138.0, "kv_bytes_per_token": 327680, "memory_utilization": 0.9}
    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_profile_path(str(path)).max_batch(2048) == load_profile("llama2-70b-h100-tp4").max_batch(2048)
    doc["decode"]["tp"] = 1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ProfileError, match="no memory for the KV cache") as info:
        load_profile_path(str(path))
    assert len(info.value.lines) == 1


def test_profile_from_config(npz_dir: Path) -> None:
    assert profile_from_config(ProfileConfig()).name == "llama2-70b-h100-tp4"
    assert profile_from_config(ProfileConfig(name="llama3.1-8b-h200-tp1")).gpu.name == "H200-SXM"
    cfg = ProfileConfig(path=str(npz_dir), gpu="H200-SXM")  # path wins over the default name
    assert profile_from_config(cfg).name.startswith("dynamo:")


def test_builtin_with_wrong_gpu_rejected() -> None:
    with pytest.raises(ProfileError, match="is for H100-SXM"):
        load_profile("llama2-70b-h100-tp4", gpu="H200")
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("llama-9000")


@settings(max_examples=40, deadline=None)
@given(low=st.floats(0.0, 1.0), high=st.floats(0.0, 1.0), context=st.floats(200, 6000))
def test_dynamo_profile_keeps_the_physics(npz_dir: Path, low: float, high: float, context: float) -> None:
    profile = load_profile_path(str(npz_dir), gpu="H200-SXM")
    natural = profile.natural_draw_watts(Role.DECODE)
    a = profile.decode_throughput_tokens_per_s_per_gpu(context, natural + low * (700 - natural))
    b = profile.decode_throughput_tokens_per_s_per_gpu(context, natural + high * (700 - natural))
    assert abs(a - b) <= 0.03 * max(a, b)
    lo_cap, hi_cap = sorted((200 + low * 500, 200 + high * 500))
    assert profile.prefill_time_s(context, lo_cap) >= profile.prefill_time_s(context, hi_cap)
    caps = profile.cap_levels(Role.PREFILL, 26)
    energy = [profile.energy_per_token_j(Role.PREFILL, c) for c in caps]
    assert 0 < int(np.argmin(energy)) < len(caps) - 1


def test_a_context_length_no_model_serves_is_one_line_and_grouping_never_loses_a_context() -> None:
    """Hypothesis found a Dynamo JSON with a context of ~1e308 tokens: rounding overflowed and the table builder
    raised IndexError. The loader now names the field; the builder groups by the rounded value it keys on."""
    import numpy as np

    from powerplanner.model.tables import MAX_CONTEXT_TOKENS, DecodeTable, decode_table_problems

    usage, itl = np.array([0.1, 0.5]), np.array([10.0, 20.0])
    problems = decode_table_problems(usage, np.array([1024.0, 1e308]), itl, None, 100_000, "p.json")
    assert problems == [f"p.json: y_context_length has values above {MAX_CONTEXT_TOKENS:,} tokens, which no model "
                        "serves; fix y_context_length (token counts, not bytes)"]
    table = DecodeTable.from_points(usage, np.array([1024.0, 1e308]), itl / 1000, 100_000)
    assert len(table.curves) == 2 and all(x.size == 1 for x, _ in table.curves)
