"""GPU pools, cost, comparability and the budget a replayed trace gets (sim/limits.py, scenarios, report, CLI)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from powerplanner.cli import main
from powerplanner.errors import ConfigError
from powerplanner.sim.limits import resolve_limits
from powerplanner.sim.metrics import SlaTargets, summarize
from powerplanner.sim.report import not_comparable_lines, summary_markdown
from powerplanner.sim.runner import PolicyJob, ProgressFn, compare, policy_names
from powerplanner.sim.scenarios import (
    POOL_FRACTION_OF_DYNAMO_PEAK,
    TRACE_BUDGET_FRACTION,
    Scenario,
    SyntheticSpec,
    TraceSpec,
    builtin_scenarios,
)
from powerplanner.sim.traces import FixedLengths, LognormalLengths
from powerplanner.sim.types import SimResult
from tests.unit.sim.test_runner import make_result

SLA = SlaTargets(ttft_ms=500.0, itl_ms=50.0)


def tiny(**kw: object) -> Scenario:
    spec = TraceSpec(synthetic=SyntheticSpec(120.0, 2.0, LognormalLengths(300, 1200), FixedLengths(20)))
    return Scenario(name="tiny", trace=spec, **kw)  # type: ignore[arg-type]


class Recorder:
    """A stub simulator that records each job and reports 13 GPUs and 5 kW at the unconstrained probe."""

    def __init__(self) -> None:
        self.jobs: list[PolicyJob] = []

    def __call__(self, job: PolicyJob, progress: ProgressFn | None) -> SimResult:
        self.jobs.append(job)
        n = len(job.trace)
        unconstrained = job.budget_watts > 1e11
        result = make_result(job.key, [100.0] * n, [20.0] * n, n, peak_watts=5000.0 if unconstrained else 1000.0)
        over = 30.0 if job.policy == "dynamo-sla" and not unconstrained else 0.0
        return dataclasses.replace(result, peak_gpus=13 if unconstrained else 8, seconds_over_budget=over)


def test_every_builtin_scenario_states_a_pool() -> None:
    for scenario in builtin_scenarios().values():
        assert scenario.gpu_pool is not None or scenario.gpu_pool_fraction is not None, scenario.name


def test_pool_fraction_is_of_dynamo_sla_unconstrained_peak_and_every_policy_gets_it() -> None:
    run = Recorder()
    result = compare(tiny(budget_watts=3000.0, gpu_pool_fraction=0.5), ["ours", "static", "dynamo-sla"],
                     workers=1, run_one=run)
    probe, *jobs = run.jobs
    assert probe.policy == "dynamo-sla" and probe.budget_watts > 1e11 and probe.gpu_pool is None
    assert result.gpu_pool == 7  # ceil(0.5 x 13)
    assert {j.gpu_pool for j in jobs} == {7} and {j.budget_watts for j in jobs} == {3000.0}
    assert "13" in result.pool_note
    assert result.to_json()["gpu_pool"] == 7


def test_no_probe_without_a_fraction_and_planner_pool_holds() -> None:
    run = Recorder()
    limits = resolve_limits(tiny(budget_watts=3000.0, planner={"gpu_pool": 12}), tiny().load_trace(), run_one=run)
    assert run.jobs == []
    assert (limits.gpu_pool, limits.pool_note) == (12, "planner.gpu_pool")
    assert resolve_limits(tiny(budget_watts=3000.0), tiny().load_trace(), run_one=run).gpu_pool is None


@pytest.mark.parametrize("kw, match", [
    ({"gpu_pool": 4, "gpu_pool_fraction": 1.0}, "not both"),
    ({"gpu_pool": 0}, "at least 1 GPU"),
    ({"gpu_pool_fraction": -1.0}, "positive"),
    ({"gpu_pool_fraction": float("nan")}, "positive"),
])
def test_bad_pools_are_one_clear_line(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny(**kw)


def test_a_new_trace_derives_budget_and_pool_from_it_unless_given(tmp_path: Path) -> None:
    default = builtin_scenarios()["default"]
    replayed = default.with_overrides(trace_path=str(tmp_path / "t.csv"))
    assert (replayed.budget_watts, replayed.budget_fraction) == (None, TRACE_BUDGET_FRACTION)
    assert (replayed.gpu_pool, replayed.gpu_pool_fraction) == (None, POOL_FRACTION_OF_DYNAMO_PEAK)
    given = default.with_overrides(trace_path=str(tmp_path / "t.csv"), budget_watts=20000.0, gpu_pool=16)
    assert (given.budget_watts, given.budget_fraction, given.gpu_pool, given.gpu_pool_fraction) == (
        20000.0, None, 16, None)


def test_over_budget_is_not_comparable_in_json_and_summary() -> None:
    result = compare(tiny(budget_watts=3000.0), ["ours", "dynamo-sla"], workers=1, run_one=Recorder())
    data = result.to_json()["policies"]
    assert data["ours"]["comparable"] is True and data["ours"]["not_comparable_reason"] is None
    assert data["dynamo-sla"]["comparable"] is False
    assert "30 s" in data["dynamo-sla"]["not_comparable_reason"]
    assert [line.split(":")[0] for line in not_comparable_lines(result)] == ["* dynamo-sla"]
    assert "| dynamo-sla* |" in summary_markdown(result, [])


def test_over_budget_only_within_the_grace_after_a_cut_stays_comparable() -> None:
    result = dataclasses.replace(make_result("p", [100.0], [10.0], 1), seconds_over_budget=5.0,
                                 seconds_over_budget_after_cut=5.0)
    assert summarize(result, SLA).comparable


def test_cost_per_mtok_and_peak_gpus_in_metrics() -> None:
    result = dataclasses.replace(make_result("p", [100.0], [10.0], 1), peak_gpus=9)
    m = summarize(result, SLA)  # 2 GPU-h and 1 kWh for 1,000 output tokens at the default prices
    assert m.peak_gpus == 9
    from powerplanner.sim.cost import Prices

    p = Prices()
    assert m.cost_per_mtok_usd == pytest.approx((2 * p.gpu_hour_usd + p.energy_usd_per_kwh) * 1000)


def test_every_policy_stays_inside_the_pool_in_the_real_simulator() -> None:
    """The pool binds every policy: ours and oracle through the optimiser, the Dynamo baselines and proportional
    through Dynamo's GPU ceiling clamp, static through its start inside the pool, all through the simulated
    cluster, which starts only the replicas that fit."""
    scenario = dataclasses.replace(builtin_scenarios()["default"], duration_s=400.0, gpu_pool=24,
                                   gpu_pool_fraction=None)
    result = compare(scenario, policy_names(), workers=1)
    assert result.gpu_pool == 24
    peaks = {name: r.peak_gpus for name, r in result.results.items()}
    assert all(0 < peak <= 24 for peak in peaks.values()), peaks
    assert max(peaks.values()) == 24  # the pool binds someone at this load, so the check is not vacuous
    assert all(np.isfinite(m.cost_per_mtok_usd or np.nan) for m in result.metrics.values())


TRACE_ROWS = "".join(f"2023-11-16 18:{15 + i // 60:02d}:{i % 60:02d}.0000000,{600 + 37 * (i % 7)},{60 + i % 50}\n"
                     for i in range(0, 600, 1))


def test_simulate_trace_derives_its_budget_and_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + TRACE_ROWS)
    code = main(["simulate", "--trace", str(trace), "--rate-scale", "20", "--policies", "ours,dynamo-sla", "--json",
                 "--report-dir", str(tmp_path / "r"), "--workers", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert data["budget_watts"] != 30000.0  # not the default scenario's
    assert data["gpu_pool"] is not None and data["gpu_pool"] >= 1
    assert data["policies"]["ours"]["peak_gpus"] <= data["gpu_pool"]
    assert data["policies"]["ours"]["seconds_over_budget"] == 0.0
    code = main(["simulate", "--trace", str(trace), "--rate-scale", "20", "--policies", "ours", "--json",
                 "--budget-watts", "12345", "--report-dir", str(tmp_path / "r2"), "--workers", "1"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["budget_watts"] == 12345.0


def test_default_table_fits_120_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--report-dir", str(tmp_path / "r"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert any(line.lstrip().startswith("ours ") for line in lines)  # the table was printed
    assert len(lines) > len(policy_names()) + 3
    too_long = [line for line in lines if len(line) > 120]
    assert not too_long, too_long


TINY_FILE = """
name: tiny
trace:
  synthetic: {duration_s: 120, mean_rate_per_s: 2, isl: {fixed: 500}, osl: {fixed: 50}}
budget: {watts: 30000}
planner: {adjustment_interval_s: 30, cap_interval_s: 5}
"""


def test_pool_from_the_scenario_file_or_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_FILE + "gpu_pool: {gpus: 12}\n")
    args = ["simulate", "--scenario", str(path), "--policies", "ours", "--json", "--workers", "1"]
    assert main([*args, "--report-dir", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_pool"] == 12
    assert main([*args, "--report-dir", str(tmp_path / "b"), "--gpu-pool", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_pool"] == 8
    path.write_text(TINY_FILE + "gpu_pool: {gpus: 12, fraction_of_dynamo_sla_peak: 1.0}\n")
    assert main([*args, "--report-dir", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err
    assert "gpu_pool" in err and "exactly one" in err and "Traceback" not in err
