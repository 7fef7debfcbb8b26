"""Scenarios: built-ins, YAML files, overrides and one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from powerplanner.errors import ConfigError, TraceError
from powerplanner.sim.scenario_file import load_scenario
from powerplanner.sim.scenarios import builtin_scenario_names

TRACES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "traces"


def write(tmp_path: Path, text: str, name: str = "scn.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_builtin_default_scenario_is_deterministic() -> None:
    assert "default" in builtin_scenario_names()
    scenario = load_scenario("default")
    assert scenario.budget_watts is not None and scenario.budget_watts > 0
    a, b = scenario.load_trace(), scenario.load_trace()
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    cfg = scenario.config(scenario.budget_watts)
    assert cfg.budget.watts == scenario.budget_watts
    assert cfg.sla.ttft_ms == scenario.sla.ttft_ms
    assert cfg.profile.name == scenario.profile


def test_synthetic_scenario_file(tmp_path: Path) -> None:
    p = write(tmp_path, """
name: my-burst
trace:
  synthetic:
    duration_s: 300
    mean_rate_per_s: 4
    isl: {lognormal: {mean: 1000, p99: 4000}}
    osl: {fixed: 100}
    shape:
      - {kind: diurnal, period_s: 300, amplitude: 0.3}
      - {kind: burst, starts_s: [100], width_s: 30, factor: 2}
rate_scale: 2
budget: {fraction_of_dynamo_sla_peak: 0.7}
sla: {ttft_ms: 800, itl_ms: 40}
policies: [ours, dynamo-power]
planner: {adjustment_interval_s: 30, cap_interval_s: 5}
sim: {replica_start_s: 60}
seed: 3
""")
    scenario = load_scenario(str(p))
    assert scenario.name == "my-burst"
    assert scenario.budget_fraction == 0.7 and scenario.budget_watts is None
    assert scenario.policies == ("ours", "dynamo-power")
    assert scenario.sim == {"replica_start_s": 60}
    trace = scenario.load_trace()
    assert 300 * 8 * 0.7 < len(trace) < 300 * 8 * 1.5
    assert set(trace.osl_tokens.tolist()) == {100}
    assert scenario.config(1000.0).planner.adjustment_interval_s == 30


def test_path_trace_is_relative_to_the_file_and_overrides_apply(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                    + "".join(f"2023-11-16 18:00:{i:02d}.0000000,100,10\n" for i in range(50)))
    scenario = load_scenario(str(write(tmp_path, "trace: {path: t.csv}\nbudget: {watts: 5000}\nduration_s: 20\n")))
    trace = scenario.load_trace()
    assert len(trace) == 20
    scaled = scenario.with_overrides(rate_scale=3, budget_watts=7000, seed=1)
    assert len(scaled.load_trace()) == 60
    assert scaled.budget_watts == 7000 and scaled.budget_fraction is None
    replaced = scaled.with_overrides(trace_path=str(tmp_path / "t.csv"))
    assert replaced.rate_scale == 1.0 and replaced.duration_s is None and len(replaced.load_trace()) == 50
    other = scenario.with_overrides(trace_path=str(tmp_path / "missing.csv"))
    with pytest.raises(TraceError, match="not found"):
        other.load_trace()


@pytest.mark.skipif(not (TRACES / "AzureLLMInferenceTrace_code.csv").exists(), reason="no shared traces")
def test_scenario_on_the_real_code_trace(tmp_path: Path) -> None:
    path = TRACES / "AzureLLMInferenceTrace_code.csv"
    scenario = load_scenario(str(write(tmp_path, f"trace: {{path: {path}}}\nduration_s: 600\nrate_scale: 2\n")))
    trace = scenario.load_trace()
    assert trace.duration_s <= 610


BAD = [
    ("trace: {builtin: nope}\n", "unknown built-in trace"),
    ("trace: {builtin: default, path: x.csv}\n", "exactly one of builtin, path, synthetic"),
    ("trace: {builtin: default}\nbudget: {watts: -5}\n", "budget.watts"),
    ("trace: {builtin: default}\nbudget: {watts: 5, fraction_of_dynamo_sla_peak: 0.5}\n", "exactly one of watts"),
    ("trace: {builtin: default}\nrate_scal: 2\n", "rate_scal: unknown field"),
    ("trace: {builtin: default}\nplanner: {adjustment_interval: 3}\n", "planner.adjustment_interval: unknown field"),
    ("trace: {builtin: default}\nsla: {ttft_ms: 0}\n", "sla.ttft_ms"),
    ("budget: {watts: 5}\n", "trace: required field is missing"),
    ("- a list\n", "holds a YAML mapping"),
    ("trace: {builtin: default\n", "invalid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_scenario_files_give_one_line_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(str(p))
    assert len(info.value.lines) == 1, info.value.lines
    assert expected in info.value.lines[0]
    assert str(p) in info.value.lines[0]


def test_unknown_scenario_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(ConfigError, match="scenario file not found"):
        load_scenario(str(tmp_path / "absent.yaml"))


def test_an_unknown_field_points_to_the_page_that_lists_the_fields(tmp_path: Path) -> None:
    """A scenario's own fields are listed in docs/simulator.md; its planner overrides in docs/configuration.md."""
    with pytest.raises(ConfigError) as info:
        load_scenario(str(write(tmp_path, "trace: {builtin: default}\nrate_scal: 2\n")))
    assert "see docs/simulator.md" in info.value.lines[0]
    with pytest.raises(ConfigError) as info:
        load_scenario(str(write(tmp_path, "trace: {builtin: default}\nplanner: {adjustment_interval: 3}\n")))
    assert "see docs/configuration.md" in info.value.lines[0]


def _years_trace(tmp_path: Path) -> Path:
    path = tmp_path / "years.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 100, "output_length": 10}\n'
                    '{"timestamp": 5000, "input_length": 100, "output_length": 10}\n'
                    '{"timestamp": 94672800000, "input_length": 100, "output_length": 10}\n')
    return path


def test_a_trace_years_long_is_refused_and_the_suggested_options_fix_it(tmp_path: Path) -> None:
    scenario = load_scenario("default").with_overrides(trace_path=str(_years_trace(tmp_path)))
    with pytest.raises(TraceError, match=r"3\.0 years apart"):
        scenario.load_trace()
    compressed = scenario.with_overrides(compress_gaps_s=60).load_trace()
    assert compressed.duration_s == pytest.approx(65.0) and len(compressed) == 3
    cut = scenario.with_overrides(duration_s=3600).load_trace()
    assert len(cut) == 2


def test_a_new_trace_drops_the_scenarios_gap_compression(tmp_path: Path) -> None:
    scenario = load_scenario(str(write(tmp_path, "trace: {builtin: default}\ncompress_gaps_s: 30\n")))
    assert scenario.compress_gaps_s == 30
    assert scenario.with_overrides(trace_path=str(_years_trace(tmp_path))).compress_gaps_s is None


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"duration_s": 1e9}, "duration must be more than 0 and at most 691200 s"),
    ({"duration_s": 0.0}, "duration must be more than 0"),
    ({"compress_gaps_s": -1.0}, "gap compression must be a positive number"),
    ({"compress_gaps_s": float("nan")}, "gap compression must be a positive number"),
])
def test_bad_duration_and_gap_overrides_are_one_line(overrides: dict[str, float], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("default").with_overrides(**overrides)  # type: ignore[arg-type]
    assert len(info.value.lines) == 1 and expected in info.value.lines[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("trace: {builtin: default}\nduration_s: 1e9\n", "duration_s: Input should be less than or equal to 691200"),
    ("trace: {builtin: default}\nrate_scale: true\n", "rate_scale: must be a number, not true/false"),
    ("trace: {builtin: default}\nsim: {decode_max_batch: true}\n", "decode_max_batch must be a number, not true/false"),
    ("trace: {builtin: default}\nsim: {drain_limit_s: 1e9}\n", "drain_limit_s must be at most"),
    ("trace: {builtin: default}\nplanner: {cap_interval_s: 1e-9}\n", "planner.cap_interval_s"),
])
def test_scenario_bounds_and_booleans(tmp_path: Path, text: str, expected: str) -> None:
    from powerplanner.sim.runner import sim_settings

    with pytest.raises(ConfigError) as info:
        sim_settings(load_scenario(str(write(tmp_path, text))))
    assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines


def test_long_context_scenario_has_the_documented_lengths() -> None:
    """The built-in long-context scenario: Mooncake conversation means (12,035 prompt, 343 output tokens), a
    long prompt tail cut at 120k, the 8B H200 profile, a budget from dynamo-sla's peak, TTFT 2 s."""
    from powerplanner.sim.scenarios import long_context_scenario

    assert "long-context" in builtin_scenario_names()
    scenario = load_scenario("long-context")
    assert scenario.profile == "llama3.1-8b-h200-tp1" and scenario.budget_fraction == 0.7
    assert (scenario.sla.ttft_ms, scenario.sla.itl_ms) == (2000.0, 50.0)
    trace = long_context_scenario(duration_s=600.0).load_trace()
    isl = trace.isl_tokens.astype(np.float64)
    assert 11_000 < isl.mean() < 13_000
    assert np.percentile(isl, 99) > 50_000 and isl.max() <= 120_000
    assert 300 < trace.osl_tokens.mean() < 390
    assert 50 < len(trace) / trace.duration_s < 80  # the first 10 minutes of 80 req/s from a diurnal trough
    assert len(long_context_scenario(duration_s=600.0).load_trace()) == len(trace)  # seeded: deterministic
