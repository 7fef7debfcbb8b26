"""`powerplanner profile ...` through the real CLI entry point: good paths, and every bad input giving one
clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from powerplanner.cli import main
from powerplanner.model.capped import CappedProfile
from powerplanner.model.profile_format import document_from_profile
from powerplanner.model.profiles import builtin_profile_names, load_profile
from tests.support import dynamo_data


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_clear_error(rc: int, err: str, *needles: str) -> None:
    assert rc != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_list_shows_every_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["profile", "list"], capsys)
    assert rc == 0
    for name in builtin_profile_names():
        assert name in out


def test_show_builtin_and_targets(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["profile", "show", "llama2-70b-h100-tp4", "--levels", "6", "--ttft-ms", "500",
                       "--itl-ms", "60"], capsys)
    assert rc == 0
    for word in ("prefill", "decode", "tok/s/GPU", "mJ/token", "draw W", "700"):
        assert word in out


def test_show_dynamo_dir_needs_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = dynamo_data.write_npz_dir(tmp_path / "dyn")
    rc, out, _ = _run(["profile", "show", str(root), "--gpu", "H200-SXM", "--cap", "250", "--cap", "700"], capsys)
    assert rc == 0 and "H200-SXM" in out
    rc, _, err = _run(["profile", "show", str(root)], capsys)
    _assert_one_clear_error(rc, err, "no power data", "--gpu")


def test_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "p.png"
    rc, _, _ = _run(["profile", "plot", "llama3.1-8b-h200-tp1", "-o", str(target)], capsys)
    assert rc == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine.yaml"
    assert _run(["profile", "export", "llama2-70b-h100-tp8", "-o", str(target)], capsys)[0] == 0
    rc, out, _ = _run(["profile", "validate", str(target)], capsys)
    assert rc == 0 and out.startswith("ok: llama2-70b-h100-tp8")


def test_validate_dynamo_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = dynamo_data.write_json_dir(tmp_path / "j")
    rc, out, _ = _run(["profile", "validate", str(root), "--gpu", "h200"], capsys)
    assert rc == 0 and "ok:" in out


# --- bad input ------------------------------------------------------------------------------------------


def test_truncated_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = dynamo_data.write_npz_dir(tmp_path / "dyn")
    npz = root / "selected_prefill_interpolation" / "raw_data.npz"
    npz.write_bytes(npz.read_bytes()[: len(npz.read_bytes()) // 2])
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "raw_data.npz", "truncated or corrupt")


def test_npz_with_truncated_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A well-formed zip whose array member is cut short (a partial copy of the profiler's output)."""
    root = dynamo_data.write_npz_dir(tmp_path / "dyn")
    npz = root / "selected_decode_interpolation" / "raw_data.npz"
    with zipfile.ZipFile(npz) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["z_itl.npy"] = members["z_itl.npy"][:-16]
    with zipfile.ZipFile(npz, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "raw_data.npz", "truncated or corrupt")


@pytest.mark.parametrize("bad", [-5.0, float("nan")])
def test_negative_or_nan_throughput(bad: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefill, decode = dynamo_data.arrays()
    prefill["prefill_thpt_per_gpu"] = prefill["prefill_thpt_per_gpu"].copy()
    prefill["prefill_thpt_per_gpu"][2] = bad
    root = dynamo_data.write_npz_dir(tmp_path / "dyn", prefill, decode)
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "prefill_thpt_per_gpu", "NaN" if bad != bad else "non-positive")


def test_negative_decode_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefill, decode = dynamo_data.arrays()
    decode["z_thpt_per_gpu"] = -decode["z_thpt_per_gpu"]
    root = dynamo_data.write_npz_dir(tmp_path / "dyn", prefill, decode)
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "z_thpt_per_gpu", "must be > 0")


def test_non_monotone_isl_axis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefill, decode = dynamo_data.arrays()
    order = np.array([0, 1, 3, 2, 4, 5, 6])
    prefill = {k: v[order] for k, v in prefill.items()}
    root = dynamo_data.write_npz_dir(tmp_path / "dyn", prefill, decode)
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "prefill_isl is not strictly increasing", "sort")


def test_unknown_gpu_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = dynamo_data.write_npz_dir(tmp_path / "dyn")
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "B300"], capsys)
    _assert_one_clear_error(rc, err, "unknown GPU 'B300'", "H100-SXM")


def _our_doc() -> dict[str, Any]:
    profile = load_profile("llama2-70b-h100-tp4")
    assert isinstance(profile, CappedProfile)
    return document_from_profile(profile)


def test_unknown_gpu_in_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _our_doc()
    doc["gpu"] = "TPU-v5"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "gpu", "unknown GPU 'TPU-v5'")


def test_out_of_range_cap_option(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["profile", "show", "llama2-70b-h100-tp4", "--cap", "900"], capsys)
    _assert_one_clear_error(rc, err, "cap 900 W is outside", "[200, 700]")


def test_out_of_range_cap_in_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _our_doc()
    doc["gpu"] = {"name": "H100-SXM", "max_limit_watts": 800}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "gpu.max_limit_watts", "800 W is outside")


def test_wrong_type_in_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _our_doc()
    doc["prefill"]["tp"] = "four"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "prefill.tp", "integer", "'four'")


def test_nan_in_our_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dyn = load_profile(path=str(dynamo_data.write_npz_dir(tmp_path / "d")), gpu="H200-SXM")
    assert isinstance(dyn, CappedProfile)
    doc = document_from_profile(dyn)
    doc["prefill"]["table"]["time_ms"][1] = float("nan")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "prefill.table", "time_ms contains NaN")


def test_several_problems_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _our_doc()
    doc["prefill"]["tp"] = 0
    doc["decode"]["fit"]["base_s"] = -1
    doc["colour"] = "blue"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    assert rc != 0 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 3
    assert any("prefill.tp" in line for line in lines)
    assert any("decode.fit.base_s" in line for line in lines)
    assert any("colour: unknown field" in line for line in lines)


def test_invalid_yaml_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("format: [unclosed\n")
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "invalid YAML", "line")


def test_missing_path_and_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["profile", "validate", str(tmp_path / "nope.yaml")], capsys)
    _assert_one_clear_error(rc, err, "neither a built-in profile")
    rc, _, err = _run(["profile", "show", "llama-9000"], capsys)
    _assert_one_clear_error(rc, err, "neither a built-in profile", "llama2-70b-h100-tp4")


def test_dynamo_dir_missing_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = dynamo_data.write_npz_dir(tmp_path / "dyn")
    (root / "selected_decode_interpolation" / "raw_data.npz").unlink()
    rc, _, err = _run(["profile", "validate", str(root), "--gpu", "H200-SXM"], capsys)
    _assert_one_clear_error(rc, err, "selected_decode_interpolation", "not found")


def test_profile_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["profile"], capsys)
    assert rc == 0 and "validate" in out and "Traceback" not in err


def test_gpu_of_wrong_type_in_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _our_doc()
    doc["gpu"] = 5
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc, _, err = _run(["profile", "validate", str(path)], capsys)
    _assert_one_clear_error(rc, err, "gpu: must be a GPU name")
