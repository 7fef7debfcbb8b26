"""The runner, metrics and report with a stub simulator (the real engine has its own tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from powerplanner.errors import TraceError
from powerplanner.sim.metrics import METRIC_NAMES, SlaTargets, summarize
from powerplanner.sim.report import PLOT_FILES, rich_table, summary_markdown, write_report
from powerplanner.sim.runner import PolicyJob, ProgressFn, compare, run_jobs
from powerplanner.sim.scenarios import Scenario, SyntheticSpec, TraceSpec
from powerplanner.sim.traces import FixedLengths, LognormalLengths
from powerplanner.sim.types import SimResult, TimeSeries

SLA = SlaTargets(ttft_ms=500.0, itl_ms=50.0)


def make_result(policy: str, ttft_ms: list[float], itl_ms: list[float], requests: int,
                peak_watts: float = 1000.0, budget_watts: float = 2000.0) -> SimResult:
    t = np.arange(0.0, 100.0, 5.0)
    series = TimeSeries(
        time_s=t,
        budget_watts=np.full_like(t, budget_watts),
        provisioned_watts=np.full_like(t, peak_watts),
        drawn_watts=np.full_like(t, peak_watts / 2),
        prefill_replicas=np.ones(t.size, dtype=np.int64),
        decode_replicas=np.full(t.size, 2, dtype=np.int64),
        prefill_cap_watts=np.full_like(t, 700.0),
        decode_cap_watts=np.full_like(t, 400.0),
    )
    return SimResult(
        policy=policy, simulated_s=100.0, requests=requests, completed=len(ttft_ms),
        ttft_ms=np.asarray(ttft_ms, dtype=np.float64), itl_ms=np.asarray(itl_ms, dtype=np.float64),
        output_tokens=1000, energy_j=3.6e6, gpu_seconds=7200.0, peak_provisioned_watts=peak_watts,
        peak_drawn_watts=peak_watts / 2, seconds_over_budget=0.0, series=series, reasons={"sla_sized": 3},
    )


def stub_run(job: PolicyJob, progress: ProgressFn | None) -> SimResult:
    """Deterministic stand-in for the simulator: latency grows with the policy name, peak with the budget."""
    n = len(job.trace)
    if progress is not None:
        progress(0.5)
        progress(1.0)
    base = 100.0 * (1 + len(job.policy) % 3)
    peak = 5000.0 if job.budget_watts > 1e11 else min(job.budget_watts, 5000.0)
    caps = dict(job.static_caps_watts or {})
    res = make_result(job.key, [base] * (n - 1), [20.0 + caps.get("decode", 0) / 100] * (n - 1), n, peak_watts=peak)
    return res


def failing_run(job: PolicyJob, progress: ProgressFn | None) -> SimResult:
    raise TraceError("first problem; fix it", "second problem; fix that too")


def small_scenario(**kw: object) -> Scenario:
    spec = TraceSpec(synthetic=SyntheticSpec(120.0, 2.0, LognormalLengths(300, 1200), FixedLengths(20)))
    return Scenario(name="tiny", trace=spec, **kw)  # type: ignore[arg-type]


# --- metrics ---------------------------------------------------------------------------------------------


def test_unfinished_requests_count_as_misses() -> None:
    result = make_result("p", ttft_ms=[100, 600, 100, 100], itl_ms=[10, 10, 80, float("nan")], requests=5)
    m = summarize(result, SLA)
    assert m.requests == 5 and m.completed == 4
    assert m.ttft_attainment == pytest.approx(3 / 5)
    assert m.itl_attainment == pytest.approx(3 / 5)  # the NaN ITL (one output token) meets the target
    assert m.slo_attainment == pytest.approx(2 / 5)
    assert m.energy_kwh == pytest.approx(1.0)
    assert m.energy_per_output_token_j == pytest.approx(3600.0)
    assert m.gpu_hours == pytest.approx(2.0)
    assert m.itl_p50_ms == pytest.approx(10.0)


def test_metrics_json_has_the_schema_and_no_nan() -> None:
    m = summarize(make_result("p", [], [], requests=3), SLA)
    data = m.to_json()
    assert list(data) == list(METRIC_NAMES)
    assert data["ttft_p50_ms"] is None and data["slo_attainment"] == 0.0
    json.dumps(data, allow_nan=False)


# --- runner ----------------------------------------------------------------------------------------------


def test_parallel_and_serial_runs_agree() -> None:
    scenario = small_scenario(budget_watts=3000.0)
    trace = scenario.load_trace()
    jobs = [PolicyJob(p, trace, scenario, 3000.0) for p in ("ours", "static", "oracle")]
    serial = run_jobs(jobs, workers=1, run_one=stub_run)
    parallel = run_jobs(jobs, workers=2, show_progress=True, run_one=stub_run)
    assert list(serial) == list(parallel) == ["ours", "static", "oracle"]
    for key in serial:
        np.testing.assert_array_equal(serial[key].ttft_ms, parallel[key].ttft_ms)


def test_user_errors_in_workers_keep_their_class_and_lines() -> None:
    scenario = small_scenario(budget_watts=3000.0)
    trace = scenario.load_trace()
    jobs = [PolicyJob(p, trace, scenario, 3000.0) for p in ("ours", "static")]
    with pytest.raises(TraceError) as info:
        run_jobs(jobs, workers=2, run_one=failing_run)
    assert info.value.lines == ("first problem; fix it", "second problem; fix that too")


def test_budget_fraction_runs_dynamo_sla_unconstrained_first() -> None:
    scenario = small_scenario(budget_fraction=0.7)
    extra = PolicyJob("dynamo-power", scenario.load_trace(), scenario, 0.0, {"decode": 500.0},
                      label="dynamo-power@best")
    result = compare(scenario, ["ours", "dynamo-power"], workers=1, run_one=stub_run, extra_jobs=[extra])
    assert result.budget_watts == pytest.approx(0.7 * 5000.0)
    assert "dynamo-sla peak" in result.budget_note
    assert list(result.metrics) == ["ours", "dynamo-power", "dynamo-power@best"]
    assert result.results["dynamo-power@best"].itl_ms[0] == pytest.approx(25.0)  # its static caps reached the job
    data = result.to_json()
    assert list(data) == ["scenario", "plant", "budget_watts", "gpu_pool", "prices", "simulated_s", "wall_s",
                          "policies"]
    assert list(data["policies"]["ours"]) == list(METRIC_NAMES)


def test_report_directory_holds_summary_results_and_plots(tmp_path: Path) -> None:
    scenario = small_scenario(budget_watts=3000.0)
    result = compare(scenario, ["ours", "static"], workers=1, run_one=stub_run)
    out = write_report(result, tmp_path / "report")
    files = {p.name for p in out.iterdir()}
    assert {"summary.md", "results.json", *PLOT_FILES} <= files
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(result.to_json()))
    summary = (out / "summary.md").read_text()
    assert "| ours |" in summary and "power.png" in summary
    assert rich_table(result).row_count == 2
    assert "sla_sized 3" in summary_markdown(result, [])
