"""`powerplanner simulate` end to end with the real engine, planner and profile, on short traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerplanner.cli import main
from powerplanner.sim.metrics import METRIC_NAMES

TINY = """
name: tiny
trace:
  synthetic:
    duration_s: 180
    mean_rate_per_s: 3
    isl: {lognormal: {mean: 800, p99: 3000}}
    osl: {lognormal: {mean: 120, p99: 400}}
budget: {watts: 30000}
sla: {ttft_ms: 1000, itl_ms: 60}
planner: {adjustment_interval_s: 30, cap_interval_s: 5}
sim: {initial_prefill_replicas: 1, initial_decode_replicas: 1, replica_start_s: 30, drain_limit_s: 300}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def test_json_prints_exactly_results_json(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    code = main(["simulate", "--scenario", str(tiny), "--policies", "ours,dynamo-sla", "--json",
                 "--report-dir", str(report), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert list(data) == ["scenario", "plant", "budget_watts", "gpu_pool", "prices", "simulated_s", "wall_s",
                          "policies"]
    assert data["gpu_pool"] is None  # the tiny scenario states none
    assert data["prices"]["gpu_hour_usd"] > 0 and "EIA" in data["prices"]["source"]
    assert data["scenario"] == "tiny"
    assert data["plant"] == {"spec": "profile", "differs_from_profile": False, "profile": "llama2-70b-h100-tp4",
                             "overrides": {}, "gpu_variation": 0.0, "gpu_variation_seed": 0}
    assert data["budget_watts"] == 30000
    assert data["simulated_s"] >= 170
    assert list(data["policies"]) == ["ours", "dynamo-sla"]
    for metrics in data["policies"].values():
        assert list(metrics) == list(METRIC_NAMES)
        assert 0 <= metrics["slo_attainment"] <= 1
        assert metrics["requests"] > 300
    assert json.loads((report / "results.json").read_text()) == data
    assert (report / "summary.md").exists() and (report / "power.png").exists()
    assert "report written to" in captured.err


def test_table_output_and_overrides(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scenario", str(tiny), "--policies", "ours", "--rate-scale", "0.5",
                 "--budget-watts", "20000", "--seed", "4", "--report-dir", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ours" in captured.out and "budget 20,000 W" in captured.out
    assert "report written to" in captured.out
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["budget_watts"] == 20000


def test_default_scenario_smoke_two_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--policies", "ours,dynamo-power", "--json", "--report-dir", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["scenario"] == "default"
    ours = data["policies"]["ours"]
    # The built-in trace holds prompts beyond llama2-70b's 4,096-token window: refused, every other one served.
    assert ours["refused"] > 0
    assert ours["completed"] + ours["refused"] == ours["requests"]
    assert data["policies"]["dynamo-power"]["refused"] == ours["refused"]
    assert ours["seconds_over_budget"] == 0
    assert "built-in profiles whose window fits it: llama3.1-8b-h200-tp1" in captured.err


def test_plant_from_the_command_line_or_the_scenario_file_is_named_in_the_report(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_file = tmp_path / "planted.yaml"
    in_file.write_text(TINY + "plant: prefill-compute-bound\n")
    for scenario, extra in ((tiny, ["--plant", "prefill-compute-bound"]), (in_file, [])):
        report = tmp_path / f"r-{scenario.stem}"
        code = main(["simulate", "--scenario", str(scenario), "--policies", "static", "--report-dir", str(report),
                     "--workers", "1", *extra])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        named = "plant prefill-compute-bound (differs from the planner's profile)"
        printed = " ".join(captured.out.split())  # the headline wraps at the terminal's width (120 columns)
        assert named in printed and named in (report / "summary.md").read_text()
        data = json.loads((report / "results.json").read_text())
        assert data["plant"]["differs_from_profile"] is True
        assert data["plant"]["overrides"] == {"prefill.compute_share": 1.0}


def _bad_csv(tmp_path: Path) -> str:
    p = tmp_path / "bad.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,0,5\n")
    return str(p)


def _bad_scenario(tmp_path: Path) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text("trace: {builtin: default}\nsim: {replica_start: 5}\n")
    return str(p)


def _planted(tmp_path: Path, line: str) -> str:
    p = tmp_path / "planted.yaml"
    p.write_text(TINY + line)
    return str(p)


BAD_ARGS = [
    (lambda tmp: ["--policies", "ours,nope"], "unknown policy 'nope'"),
    (lambda tmp: ["--policies", ","], "no policy chosen"),
    (lambda tmp: ["--scenario", "nope"], "unknown scenario 'nope'"),
    (lambda tmp: ["--trace", str(tmp / "missing.csv")], "trace file not found"),
    (lambda tmp: ["--trace", _bad_csv(tmp)], "line 2: ContextTokens must be a positive integer"),
    (lambda tmp: ["--rate-scale", "0"], "rate_scale must be a positive number"),
    (lambda tmp: ["--budget-watts", "-5"], "budget watts must be positive"),
    (lambda tmp: ["--scenario", _bad_scenario(tmp)], "sim.replica_start: unknown simulator setting"),
    (lambda tmp: ["--plant", "prefill.compute_shares=1"], "plant: unknown key 'prefill.compute_shares'; valid keys: "),
    (lambda tmp: ["--plant", "decode.compute_share=1.5"], "decode.compute_share=1.5: cap model for decode: "
                                                          "compute_share must lie in [0, 1]"),
    (lambda tmp: ["--scenario", _planted(tmp, "plant: fast-gpus\n")], "plant: 'fast-gpus' is neither a preset"),
    (lambda tmp: ["--report-dir", str(tmp / "file.txt" / "sub"), "--policies", "static",
                  "--scenario", str(tmp / "tiny.yaml")], "cannot write the report"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_ARGS)
def test_bad_inputs_exit_non_zero_with_one_clear_line(
    args: object, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.txt").write_text("not a directory")
    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = ["simulate", "--report-dir", str(tmp_path / "r"), *args(tmp_path)]  # type: ignore[operator]
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors and expected in errors[0], captured.err
    if "plant" in expected:
        assert len(captured.err.strip().splitlines()) == 1, captured.err  # one line, before any simulation


def test_bad_option_value_is_a_usage_error_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--rate-scale", "fast"])
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err + captured.out
    assert "rate-scale" in captured.err
