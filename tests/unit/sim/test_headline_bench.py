"""bench/headline.py's wiring: what passes in each search, which knob each policy turns, the JSON it prints (a
tiny scenario: ``--quick`` itself takes minutes, too slow for the suite)."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import pytest

from powerplanner.sim.metrics import SlaTargets
from powerplanner.sim.scenarios import Scenario, SyntheticSpec, TraceSpec
from powerplanner.sim.traces import FixedLengths, LognormalLengths
from tests.support.repo import REPO_ROOT, load_script

SPEC_KEYS = {"scenario", "plant", "budget_watts", "gpu_pool", "capacity_rate_scale", "capacity_ratio",
             "energy_at_slo_j_per_token", "energy_ratio", "cost_per_mtok", "seconds_over_budget"}


@pytest.fixture
def headline(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "bench"))  # its shared module, as when run as a script
    return load_script("bench/headline.py")


class FakeRunner:
    """Answers probes from known thresholds instead of simulating."""

    def __init__(self, headline: ModuleType, answer: Any) -> None:
        self.headline, self.answer, self.runs, self.probes = headline, answer, 0, []

    def batch(self, probes: list[Any]) -> list[Any]:
        self.runs += len(probes)
        self.probes += probes
        return [self.answer(arm, rate, budget, overrides) for arm, rate, budget, overrides in probes]


def test_capacity_is_the_largest_rate_at_slo_and_within_the_budget(headline: ModuleType) -> None:
    Outcome, Arm = headline.Outcome, headline.Arm

    def answer(arm: Any, rate: float, budget: float, overrides: dict[str, float]) -> Any:
        assert budget == 1000.0 and overrides == {}
        if arm.label == "ours":
            return Outcome(0.95 if rate <= 7.0 else 0.5, 0.0, 2.0, 5.0)
        if arm.label == "static":  # meets the SLO everywhere but goes over the budget above rate 3
            return Outcome(0.99, 0.0 if rate <= 3.0 else 40.0, 2.0, 5.0)
        return Outcome(0.89, 0.0, 2.0, 5.0)  # never 90%

    runner = FakeRunner(headline, answer)
    arms = [Arm("ours", "ours"), Arm("static", "static"), Arm("dynamo-sla", "dynamo-sla")]
    cap = headline.capacity(runner, arms, 4.0, 1000.0, 0.02)
    assert 7.0 / 1.02 <= cap["scale"]["ours"] <= 7.0
    assert 3.0 / 1.02 <= cap["scale"]["static"] <= 3.0
    assert cap["scale"]["dynamo-sla"] is None
    assert cap["over_s"] == {"ours": 0.0, "static": 40.0, "dynamo-sla": 0.0}
    assert min(rate for _, rate, _, _ in runner.probes) >= 4.0 / 16 and max(r for _, r, _, _ in runner.probes) <= 16


def test_energy_turns_ours_target_utilisation_and_the_baselines_headroom(headline: ModuleType) -> None:
    Outcome, Arm = headline.Outcome, headline.Arm

    def answer(arm: Any, rate: float, budget: float, overrides: dict[str, float]) -> Any:
        assert rate == 4.0 and budget == 7000.0
        if arm.policy == "ours":
            (key, t), = overrides.items()
            assert key == "target_utilization"
            return Outcome(0.95 if t <= 0.6 else 0.8, 0.0, 3.0 / t, 10.0 / t)
        (key, h), = overrides.items()
        assert key == "baseline_replica_headroom"
        return Outcome(0.95 if h >= 2.0 else 0.8, 0.0, 2.0 * h, 4.0 * h)

    runner = FakeRunner(headline, answer)
    eng = headline.energy_at_slo(runner, [Arm("ours", "ours"), Arm("dynamo-sla", "dynamo-sla")], 4.0, 7000.0, 0.02)
    t, h = eng["knob"]["ours"], eng["knob"]["dynamo-sla"]
    assert 0.6 / 1.02 <= t <= 0.6 and 2.0 <= h <= 2.0 * 1.02
    assert eng["j_per_token"] == {"ours": 3.0 / t, "dynamo-sla": 2.0 * h}  # the figures at the chosen knob
    assert eng["cost_per_mtok"] == {"ours": 10.0 / t, "dynamo-sla": 4.0 * h}


def _tiny() -> Scenario:
    syn = SyntheticSpec(120.0, 1.0, LognormalLengths(300, 1200), FixedLengths(20))
    return Scenario(name="tiny", trace=TraceSpec(synthetic=syn), sla=SlaTargets(1000.0, 60.0),
                    planner={"adjustment_interval_s": 30.0, "cap_interval_s": 5.0},
                    sim={"replica_start_s": 30.0, "drain_limit_s": 300.0})


def test_a_tiny_scenario_gives_the_documented_json(headline: ModuleType) -> None:
    limits = load_script("bench/trace_scenarios.py").Limits(budget_watts=8 * 700.0, gpu_pool=12, note="test")
    mode = headline.Mode(duration_s=None, tol=0.5, grid=2, plants=1)
    run = headline.run_case(_tiny(), "profile", 1.0, limits, mode, workers=1)
    assert set(run) >= SPEC_KEYS
    json.dumps(run, allow_nan=False)  # null, never NaN
    policies = set(run["capacity_rate_scale"])
    assert {"ours", "dynamo-power", "dynamo-1.6", "dynamo-sla", "dynamo-power@best"} <= policies
    assert "oracle" not in policies
    for figure, per in (("capacity_ratio", "capacity_rate_scale"), ("energy_ratio", "energy_at_slo_j_per_token")):
        assert set(run[figure]) == policies - {"ours"}
        for name, value in run[figure].items():
            ours, other = run[per]["ours"], run[per][name]
            assert value == (None if ours is None or not other else pytest.approx(ours / other))
    assert run["seconds_over_budget"]["ours"] == 0.0
    assert (run["budget_watts"], run["gpu_pool"], run["slack_budget_watts"]) == (5600.0, 12, 12 * 700.0)
    for name, j in run["energy_at_slo_j_per_token"].items():
        assert (j is None) == (run["knob_at_slo"][name] is None)
        assert j is None or (math.isfinite(j) and run["slo_at_knob"][name] >= 0.9)
    assert "dynamo-power@best caps" in headline.table(run)


def test_a_bad_plant_is_one_line_and_exit_2(headline: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert headline.main(["--plant", "prefill.no_such_key=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_key" in err and "\n" not in err
