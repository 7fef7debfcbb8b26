"""`profile export` then loading the file gives the same model: every built-in, including decode beyond the
measured batch range (``decode.fit.quadratic_max_batch``), so a user who starts from an exported built-in
plans with exactly the numbers the built-in would give."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from powerplanner.cli import main
from powerplanner.errors import ProfileError, UserError
from powerplanner.model.capped import CappedProfile
from powerplanner.model.latency import DecodeLatency
from powerplanner.model.loaders import load_profile_path
from powerplanner.model.profile_format import document_from_profile, profile_from_document
from powerplanner.model.profiles import builtin_profile_names, load_profile
from powerplanner.model.roles import Role
from tests.support.repo import DOCS, yaml_blocks

BATCHES = (1.0, 8.0, 63.0, 64.0, 65.0, 100.0, 128.0, 352.0, 512.0)
CONTEXTS = (128.0, 1024.0, 4096.0)
ISLS = (1.0, 512.0, 3000.0, 16384.0)
UTILIZATIONS = (0.0, 0.3, 1.0)
REL = 1e-9


def _capped(profile: object) -> CappedProfile:
    assert isinstance(profile, CappedProfile)
    return profile


def _caps(profile: CappedProfile) -> tuple[float, ...]:
    low, high = profile.gpu.min_limit_watts, profile.gpu.max_limit_watts
    return (low, 333.0, (low + high) / 2, high)


def _export(name: str, target: Path, capsys: pytest.CaptureFixture[str]) -> CappedProfile:
    """Write ``name`` through the real CLI (``powerplanner profile export``) and load the file back."""
    assert main(["profile", "export", name, "-o", str(target)]) == 0
    capsys.readouterr()
    return _capped(load_profile_path(str(target)))


@pytest.mark.parametrize("name", builtin_profile_names())
def test_export_then_load_predicts_the_same(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = _capped(load_profile(name))
    loaded = _export(name, tmp_path / f"{name}.yaml", capsys)
    assert loaded.gpu == original.gpu
    assert (loaded.prefill_tp, loaded.decode_tp) == (original.prefill_tp, original.decode_tp)
    for cap in _caps(original):
        for isl in ISLS:
            assert loaded.prefill_time_s(isl, cap) == pytest.approx(original.prefill_time_s(isl, cap), rel=REL)
        for context in CONTEXTS:
            for batch in BATCHES:
                assert loaded.decode_itl_s(batch, context, cap) == pytest.approx(
                    original.decode_itl_s(batch, context, cap), rel=REL), (cap, context, batch)
            assert loaded.max_batch(context) == original.max_batch(context)
            assert loaded.best_decode_batch(context, cap) == original.best_decode_batch(context, cap)
            assert loaded.decode_throughput_tokens_per_s_per_gpu(context, cap) == pytest.approx(
                original.decode_throughput_tokens_per_s_per_gpu(context, cap), rel=REL)
        for role in Role:
            for utilization in UTILIZATIONS:
                assert loaded.draw_watts(role, cap, utilization) == pytest.approx(
                    original.draw_watts(role, cap, utilization), rel=REL)


@pytest.mark.parametrize("name", builtin_profile_names())
def test_export_writes_the_decode_limit_only_when_there_is_one(name: str) -> None:
    original = _capped(load_profile(name))
    assert isinstance(original.decode, DecodeLatency)
    fit = document_from_profile(original)["decode"]["fit"]
    if math.isinf(original.decode.quadratic_max_batch):
        assert "quadratic_max_batch" not in fit
    else:
        assert fit["quadratic_max_batch"] == original.decode.quadratic_max_batch


def _fit_doc(tmp_path: Path) -> tuple[dict[str, object], Path]:
    doc = document_from_profile(_capped(load_profile("llama2-70b-h100-tp4")))
    return doc, tmp_path / "p.yaml"


def test_file_without_the_field_keeps_the_pure_quadratic(tmp_path: Path) -> None:
    """A file written before the field existed loads exactly as it did then: no limit."""
    doc, path = _fit_doc(tmp_path)
    fit = doc["decode"]["fit"]  # type: ignore[index]
    del fit["quadratic_max_batch"]
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    loaded = _capped(load_profile_path(str(path)))
    assert isinstance(loaded.decode, DecodeLatency)
    assert loaded.decode.quadratic_max_batch == math.inf
    base, per_seq, per_kv, per_sq = (fit[k] for k in ("base_s", "per_seq_s", "per_kv_token_s", "per_seq_sq_s"))
    assert loaded.decode.itl_s(128, 1024) == pytest.approx(base + 128 * (per_seq + per_kv * 1024) + per_sq * 128**2)


def test_explicit_infinity_means_no_limit(tmp_path: Path) -> None:
    doc, path = _fit_doc(tmp_path)
    doc["decode"]["fit"]["quadratic_max_batch"] = math.inf  # type: ignore[index]
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")  # YAML writes it as .inf
    loaded = _capped(load_profile_path(str(path)))
    assert isinstance(loaded.decode, DecodeLatency)
    assert loaded.decode.quadratic_max_batch == math.inf


@pytest.mark.parametrize("bad", [0, -1, "abc", 0.5, True, [64], ".nan"])
def test_bad_limit_is_one_clear_line(bad: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, path = _fit_doc(tmp_path)
    doc["decode"]["fit"]["quadratic_max_batch"] = bad  # type: ignore[index]
    text = yaml.safe_dump(doc).replace("'.nan'", ".nan")  # a real YAML NaN, not the string
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile_path(str(path))
    assert isinstance(info.value, UserError)
    assert len(info.value.lines) == 1, info.value.lines
    line = info.value.lines[0]
    assert line.startswith(f"{path}: decode.fit.quadratic_max_batch: ")
    assert "largest decode batch" in line and "leave it out" in line
    rc = main(["profile", "validate", str(path)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert [e for e in err.splitlines() if e.strip()] == [f"error: {line}"]


def test_limit_that_would_make_throughput_fall_is_rejected(tmp_path: Path) -> None:
    """The value is valid alone but too large for these coefficients: DecodeLatency's own check, one line."""
    doc, path = _fit_doc(tmp_path)
    doc["decode"]["fit"]["quadratic_max_batch"] = 1000  # type: ignore[index]
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ProfileError, match="lower quadratic_max_batch or refit") as info:
        load_profile_path(str(path))
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith(f"{path}: ")


def test_docs_example_matches_the_builtin_beyond_the_measured_batches() -> None:
    """docs/profile-format.md's first example says it is the exported built-in: true above batch 64 as well."""
    example = profile_from_document(yaml.safe_load(yaml_blocks(DOCS / "profile-format.md")[0]), "docs example")
    builtin = load_profile("llama2-70b-h100-tp4")
    for batch in (64.0, 65.0, 128.0, 352.0):
        assert example.decode_itl_s(batch, 1024, 700.0) == pytest.approx(builtin.decode_itl_s(batch, 1024, 700.0),
                                                                          rel=REL)
